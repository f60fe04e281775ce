"""When `gorchester up` starts a child again that exited: a pure decision over its exits, time passed in.

As systemd's Restart=always with a growing RestartSec: a child that exits while up runs is started
again after a back-off that doubles from RESTART_BACKOFF.base to its cap, and starts afresh once the
child has run RESTART_BACKOFF.reset_after. Unlike systemd's StartLimitBurst, up never gives up on a
child: giving up would leave a cluster without its scheduler or a node, or tear down the user's
containers, and the capped back-off already keeps a crash loop cheap. A child that keeps failing
quickly is named as such in every restart line instead (as Kubernetes' CrashLoopBackOff).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from scheduler.backoff import Backoff

RESTART_BACKOFF = Backoff(base=0.5, cap=30.0, reset_after=60.0)  # seconds
CRASH_LOOP = 5  # quick exits in a row from which a restart line says the child keeps failing


@dataclass(frozen=True)
class Restarts:
    """A child's restarts so far."""

    total: int = 0  # since up started
    quick: int = 0  # in a row, each after a run shorter than the back-off's reset_after


@dataclass(frozen=True)
class Restart:
    """What to do about one exit: start again at `due_at`; `restarts` counts this restart."""

    due_at: float
    delay: float
    restarts: Restarts

    @property
    def crash_loop(self) -> bool:
        return self.restarts.quick >= CRASH_LOOP


def plan_restart(
    before: Restarts, started_at: float, now: float, backoff: Backoff = RESTART_BACKOFF, *, least: float = 0.0
) -> Restart:
    """The restart after an exit noticed at `now` of a child started at `started_at`, at least `least` s later."""
    quick = before.quick + 1 if now - started_at < backoff.reset_after else 1
    delay = max(backoff.delay(quick), least)
    return Restart(now + delay, delay, Restarts(before.total + 1, quick))


def exit_reason(returncode: int) -> str:
    """`exited (status 1)` or `exited (killed by SIGKILL)`, from a Popen returncode."""
    if returncode >= 0:
        return f"exited (status {returncode})"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"exited (killed by {name})"


def restart_line(name: str, reason: str, restart: Restart, log_path: Path,
                 backoff: Backoff = RESTART_BACKOFF) -> str:
    """One line for up's stderr and the child's log, e.g.
    `node-1 exited (killed by SIGKILL); restarting in 1.0s (restart 2)`."""
    line = f"{name} {reason}; restarting in {restart.delay:.1f}s (restart {restart.restarts.total})"
    if restart.crash_loop:
        line += (
            f"; it keeps failing: {restart.restarts.quick} exits in a row, each within "
            f"{backoff.reset_after:g}s of its start; see {log_path}"
        )
    return line
