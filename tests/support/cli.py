"""Run the `gorchester` command in-process, as a test would see the installed command run."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess

from cli.main import main


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """`gorchester ARGV...`: its exit code and what it printed, without paying a process start-up."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["gorchester", *argv], code, out.getvalue(), err.getvalue())


def as_from_a_terminal() -> None:
    """A child's SIGINT at its default, which Python turns into KeyboardInterrupt, as when run from a terminal
    (Popen's preexec_fn). A test run started in the background by a shell without job control (CI's may be)
    inherits SIGINT ignored, and Python then leaves it ignored: Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
