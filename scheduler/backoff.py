"""Restart back-off: first restart at once, then doubling from base, capped; reset after a clean run."""

from __future__ import annotations

from dataclasses import dataclass

from shared import defaults
from shared.config import RestartPolicy
from shared.records import TaskRecord, TaskState


@dataclass(frozen=True)
class Backoff:
    base: float = defaults.DEFAULT_RESTART_BACKOFF_BASE
    cap: float = defaults.DEFAULT_RESTART_BACKOFF_MAX
    reset_after: float = defaults.DEFAULT_RESTART_RESET_AFTER

    def streak(self, task: TaskRecord) -> int:
        """Restarts in a row without a clean run; a long enough run starts the count afresh."""
        ran = (task.finished_at or 0.0) - (task.started_at or 0.0) if task.started_at is not None else 0.0
        return 0 if ran >= self.reset_after else task.crash_streak

    def delay(self, streak: int) -> float:
        """0 before the first restart in a streak, then base, 2 x base, ... up to the cap."""
        # The exponent is bounded: 2 ** streak of a huge streak would take the scheduler forever to compute.
        return 0.0 if streak <= 0 else min(self.base * 2.0 ** min(streak - 1, 64), self.cap)

    def due_at(self, task: TaskRecord) -> float:
        finished = task.finished_at if task.finished_at is not None else task.updated_at
        return finished + self.delay(self.streak(task))


def never_ran(task: TaskRecord) -> bool:
    """Failed before its container ever ran: the engine refused to create or start it (an image
    missing, network or volume trouble). Its gen's start never reported RUNNING, so `started_at` is unset."""
    return task.state is TaskState.FAILED and task.started_at is None


def wants_restart(policy: RestartPolicy, task: TaskRecord) -> bool:
    """The seed's restart policies, applied to a task whose container ended; a task whose container
    never ran is an infrastructure failure, retried whatever the policy (as Kubernetes retries a
    container it could not create): the policy governs what happens when the container itself exits."""
    if task.state not in (TaskState.FAILED, TaskState.STOPPED):
        return False
    if never_ran(task):
        return True
    if policy is RestartPolicy.NO:
        return False
    if policy is RestartPolicy.ON_FAILURE:
        return task.state is TaskState.FAILED
    if policy is RestartPolicy.UNLESS_STOPPED:
        return not task.stop_requested
    return True
