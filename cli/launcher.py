"""A class owning child processes: start them with logs, start again one that dies, stop them all in order.

Each child gets its own session, so a Ctrl-C at the terminal reaches only the launcher, which then
stops children in the order it chooses; on Linux each child also dies with the launcher, so a
killed launcher leaves nothing behind. While `supervise` is called, a child that exits is started
again with the argv and environment it was first started with, after a back-off
(cli/supervision.py decides when).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cli.supervision import Restarts, exit_reason, plan_restart, restart_line
from shared import process_logs
from shared.settings import LogSettings

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]  # as first started: a restart gets the same, whatever the launcher's env is now
    log_path: Path
    proc: subprocess.Popen
    started_at: float  # time.monotonic()
    restarts: Restarts = Restarts()
    restart_due: float | None = None  # time.monotonic() of the next start, while it waits out its back-off
    restart_after: float = 0.0  # the least wait before a restart, whatever the back-off says

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """The whole process group: an rq worker's work horse goes with its worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def _log(log_path: Path, line: str, env: dict[str, str]) -> None:
    """A line of the launcher's (component `up`) in the child's log, in the format the child writes."""
    text = process_logs.line("up", line, log_format=LogSettings.from_env(env).format)
    with open(log_path, "ab") as log:
        log.write(f"{text}\n".encode())


class Launcher:
    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None, *, restart_after: float = 0.0
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**self.env, **(extra_env or {})}
        child = Child(name, argv, env, log_path, self._popen(argv, env, log_path), time.monotonic(),
                      restart_after=restart_after)
        self.children.append(child)
        return child

    def _popen(self, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
        # Called from the main thread only: the parent-death signal fires when the thread that
        # forked the child ends, not the process.
        _log(log_path, f"starting: {' '.join(argv)}", env)
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def first_exited(self) -> Child | None:
        return next((child for child in self.children if not child.running()), None)

    def supervise(self, now: float) -> list[str]:
        """Notice every child that exited and start again those whose back-off is over (`now` is
        time.monotonic()). Returns one line per exit noticed, also written to the child's log."""
        lines = []
        for child in self.children:
            if child.restart_due is None and not child.running():
                # What the child leaves in its group (an orphaned work horse) goes before a new one starts.
                child.signal(signal.SIGKILL)
                lines.append(self._schedule_restart(child, exit_reason(child.proc.returncode), now))
            if child.restart_due is not None and now >= child.restart_due:
                try:
                    child.proc = self._popen(child.argv, child.env, child.log_path)
                except OSError as exc:  # e.g. fork failing under memory pressure: try again later
                    child.started_at = now
                    lines.append(self._schedule_restart(child, f"could not start ({exc})", now))
                    continue
                child.started_at, child.restart_due = now, None
        return lines

    def _schedule_restart(self, child: Child, reason: str, now: float) -> str:
        restart = plan_restart(child.restarts, child.started_at, now, least=child.restart_after)
        child.restarts, child.restart_due = restart.restarts, restart.due_at
        line = restart_line(child.name, reason, restart, child.log_path)
        _log(child.log_path, line, child.env)
        return line

    def next_restart(self) -> float | None:
        """When the earliest pending restart is due (time.monotonic()), if any is."""
        return min((child.restart_due for child in self.children if child.restart_due is not None), default=None)

    def stop(self, children: list[Child], grace: float) -> None:
        """SIGTERM together, then SIGKILL whatever outlives the grace period."""
        for child in children:
            if child.running():
                child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            if child.restart_due is not None:
                continue  # exited, and its group was killed then: its pid may belong to another by now
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.signal(signal.SIGKILL)
                child.proc.wait()
            child.signal(signal.SIGKILL)  # leftovers in the group, such as an orphaned work horse
        self.children = [child for child in self.children if child not in children]
