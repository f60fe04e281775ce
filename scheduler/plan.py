"""The scheduler's plan: what one reconcile pass decided, as data the loop carries out.

Task writes are the scheduler's assignments (fenced by its lease: it alone writes them); service
writes only apply if the record is still the one read; jobs and events go out only for the writes
that applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.backoff import Backoff
from shared.defaults import DEFAULT_UPDATE_DEADLINE
from shared.dispatch import Decision
from shared.event_kinds import EventKind
from shared.records import ServiceRecord, TaskRecord
from shared.settings import Settings


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Write:
    """One task's assignment written; its jobs and events go out once it is."""

    task: str
    record: TaskRecord | None  # None drops the task (its status and stop request with it)
    jobs: list[Decision] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class ServiceWrite:
    """A service record change (update progress, rollback), written only if it is still `expected`."""

    expected: ServiceRecord
    record: ServiceRecord
    events: list[Event] = field(default_factory=list)


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    services: list[ServiceWrite] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)  # deleted services with nothing left
    wake_at: float | None = None  # when time alone will change the answer (back-off, timeouts)

    def wake(self, when: float) -> None:
        self.wake_at = when if self.wake_at is None else min(self.wake_at, when)


@dataclass(frozen=True)
class Policy:
    backoff: Backoff
    assigned_timeout: float
    heartbeat_misses: float
    update_deadline: float = DEFAULT_UPDATE_DEADLINE

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            backoff=Backoff(settings.restart_backoff_base, settings.restart_backoff_max, settings.restart_reset_after),
            assigned_timeout=settings.assigned_timeout,
            heartbeat_misses=settings.heartbeat_misses,
            update_deadline=settings.update_deadline,
        )
