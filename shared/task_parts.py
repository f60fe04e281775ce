"""A task as two records with one writer each, as Nomad's DesiredStatus/ClientStatus and Kubernetes'
spec/status: the scheduler's *assignment* and the node agent's *status*, joined into the TaskRecord
everyone reads. A user's stop is a third, the API's *stop request*, which the scheduler folds in.

- The assignment (`gorchester:<c>:assignments`) is what the scheduler decided: the node, the gen,
  what to run with what resources, the container kept meanwhile (start-first), whether the slot is
  pending or being shut down, restarts and back-off. Only the leading scheduler writes it, fenced by
  its lease, so it needs no compare-and-set.
- The status (`gorchester:<c>:statuses`) is what the node's agent found of the assignment's
  container at one (gen, incarnation): state, container, ports, address, health, exit. Only the
  agent of the assigned node writes it, and only while the assignment is still that decision (one
  Lua call checks); a status of another decision is ignored when the two are joined.
- `TRANSITIONS` is the one table of what an agent may report after what; the status writer
  (worker/node.py) refuses anything else and logs both states.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field, model_validator

from shared.parsed import ParsedRecords, Records
from shared.records import (
    Bytes,
    Count,
    Health,
    Millicores,
    PreviousContainer,
    PublishedPort,
    Stored,
    TaskRecord,
    TaskState,
    task_id,
)

# The states the scheduler decides (an assignment holds one of these); the others are reported by agents.
SCHEDULER_STATES = frozenset({TaskState.PENDING, TaskState.ASSIGNED, TaskState.SHUTDOWN, TaskState.FAILED})
REPORTED_STATES = frozenset({TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED, TaskState.STOPPED})

# What an agent may report (a status' state) after the task's state as joined; at one (gen,
# incarnation): a new decision of the scheduler is a new gen. SHUTDOWN -> STOPPED is the report that its
# containers are gone (`removed`), after which the scheduler drops the slot's records.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.ASSIGNED: frozenset({TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED}),
    TaskState.STARTING: frozenset({TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED, TaskState.STOPPED}),
    TaskState.RUNNING: frozenset({TaskState.RUNNING, TaskState.FAILED, TaskState.STOPPED}),
    TaskState.SHUTDOWN: frozenset({TaskState.STOPPED}),
    TaskState.FAILED: frozenset(),
    TaskState.STOPPED: frozenset(),
    TaskState.PENDING: frozenset(),
}


class Assignment(Stored):
    """The scheduler's decision about one replica slot (its fields mean what TaskRecord's do)."""

    id: str
    service: str
    slot: int = Field(ge=1)
    gen: Count = 0
    rev: Count = 0  # rises on every write of the scheduler
    incarnation: str = ""
    node: str | None = None
    state: TaskState = TaskState.PENDING  # one of SCHEDULER_STATES
    reason: str | None = None  # why pending, shut down or failed (an agent's report says its own)
    template: str = ""
    cpu_millicores: Millicores = 0
    memory_bytes: Bytes = 0
    host_ports: list[str] = Field(default_factory=list)
    created_at: float = 0.0
    assigned_at: float | None = None
    restarts: Count = 0
    crash_streak: Count = 0
    stop_requested: bool = False
    halt_sent_at: float | None = None
    updated_at: float = 0.0
    health: Health = Health.NONE  # until the agent reports: STARTING when the service has a health check
    previous: PreviousContainer | None = None
    pinned: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Assignment:
        if self.id != task_id(self.service, self.slot):
            raise ValueError(f"id {self.id!r} is not slot {self.slot} of service {self.service!r}")
        if self.state not in SCHEDULER_STATES:
            raise ValueError(f"state {self.state.value!r} is not one the scheduler decides")
        return self


class TaskStatus(Stored):
    """What a node's agent found of one decision's container (`node`, `gen`, `incarnation`)."""

    id: str
    node: str
    gen: Count
    incarnation: str = ""
    state: TaskState  # one of REPORTED_STATES
    reason: str | None = None
    container_id: str | None = None
    ports: list[PublishedPort] = Field(default_factory=list)
    address: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    health: Health = Health.NONE
    health_output: str | None = None
    removed: bool = False  # a shut-down decision's containers are gone
    updated_at: float = 0.0

    @model_validator(mode="after")
    def _valid(self) -> TaskStatus:
        if self.state not in REPORTED_STATES:
            raise ValueError(f"state {self.state.value!r} is not one an agent reports")
        return self


class StopRequest(Stored):
    """A user's stop of a running task, for the decision it was running at (the API writes it; the
    scheduler folds it into the assignment, which is when it is deleted)."""

    id: str
    gen: Count
    incarnation: str = ""
    at: float


ASSIGNMENT_FIELDS = frozenset(Assignment.model_fields)
STATUS_FIELDS = frozenset(TaskStatus.model_fields) - {"id", "node", "gen", "incarnation", "removed"}


def applies(status: TaskStatus | None, assignment: Assignment) -> bool:
    """Whether `status` is about the assignment's current decision."""
    return (
        status is not None
        and assignment.node is not None
        and (status.node, status.gen, status.incarnation) == (assignment.node, assignment.gen, assignment.incarnation)
    )


def join(assignment: Assignment, status: TaskStatus | None, stop: StopRequest | None) -> TaskRecord:
    """The task as everyone reads it. The status counts only for the assignment's decision; a pending
    or shut-down slot is what the scheduler says (a shut-down one is `removed` once its agent says so)."""
    fields: dict[str, Any] = {**_unreported(), **assignment.__dict__, "removed": False}
    if status is not None and applies(status, assignment):
        if assignment.state is TaskState.SHUTDOWN:
            fields["removed"] = status.removed
        elif assignment.state is TaskState.ASSIGNED:
            reported = status.__dict__
            fields.update((name, reported[name]) for name in STATUS_FIELDS)
            fields["updated_at"] = max(assignment.updated_at, status.updated_at)
    if stop is not None and (stop.gen, stop.incarnation) == (assignment.gen, assignment.incarnation):
        fields["stop_requested"] = True
    return _record(fields)


_TASK_FIELDS = frozenset(TaskRecord.model_fields)
_REPORTED_ONLY = {name: TaskRecord.model_fields[name] for name in sorted(STATUS_FIELDS - ASSIGNMENT_FIELDS)}
_UNREPORTED = {name: field.default for name, field in _REPORTED_ONLY.items() if field.default_factory is None}
_UNREPORTED_MADE = {name: field.default_factory for name, field in _REPORTED_ONLY.items() if field.default_factory}


def _unreported() -> dict[str, Any]:
    """A task's fields its agent reports, as they are before it does (a list default made afresh)."""
    return {**_UNREPORTED, **{name: make() for name, make in _UNREPORTED_MADE.items()}}  # type: ignore[call-arg]


def _record(fields: dict[str, Any]) -> TaskRecord:
    """A TaskRecord of `fields` (every one of its fields, from parts validated as they were parsed), made
    as `model_construct` makes one without its per-field loop: a cold read joins 10,000 of them, and
    that loop was 5 of the 6 us each."""
    assert fields.keys() == _TASK_FIELDS
    record = TaskRecord.__new__(TaskRecord)
    object.__setattr__(record, "__dict__", fields)
    object.__setattr__(record, "__pydantic_fields_set__", set(_TASK_FIELDS))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


def assignment_json(task: TaskRecord) -> str:
    """The scheduler's part of a task it decided about, as stored: a state reported on a node stands as
    ASSIGNED (the agent's status says the rest); FAILED without a node is the scheduler's own (an
    unreadable record replaced). Dumped from the task itself (the fields are Assignment's)."""
    if task.state in REPORTED_STATES and task.node is not None:
        task = task.model_copy(update={"state": TaskState.ASSIGNED})
    return task.model_dump_json(include=_ASSIGNMENT_INCLUDE)


_ASSIGNMENT_INCLUDE = set(ASSIGNMENT_FIELDS)


def status_of(task: TaskRecord, *, removed: bool = False) -> TaskStatus:
    """The agent's part of a task placed on a node, as it reports it (`removed`: a shut-down
    decision's containers are gone)."""
    assert task.node is not None
    fields = {name: getattr(task, name) for name in STATUS_FIELDS}
    return TaskStatus.model_construct(
        id=task.id, node=task.node, gen=task.gen, incarnation=task.incarnation, removed=removed, **fields
    )


def nodes_of(task: TaskRecord | None) -> set[str]:
    """The nodes a task's assignment names: its node and its previous container's."""
    if task is None:
        return set()
    nodes = {task.previous.node} if task.previous is not None else set()
    return nodes | ({task.node} if task.node is not None else set())


class TaskReader:
    """Joins the three hashes as read into TaskRecords, each part parsed on its own and every result
    cached: a part whose stored JSON did not change parses to the same object (shared/parsed.py), so a
    join is redone only when one of its parts is a new object (a pass over 10,000 tasks re-joins only
    what changed)."""

    def __init__(self) -> None:
        self._assignments = ParsedRecords(Assignment, lambda record: record.id)
        self._statuses = ParsedRecords(TaskStatus, lambda record: record.id)
        self._stops = ParsedRecords(StopRequest, lambda record: record.id)
        # task id -> (its parts as parsed, a key naming what was stored of them, the join)
        self._joined: dict[str, tuple[tuple[object, object, object], str, TaskRecord]] = {}
        self._lock = threading.Lock()

    def join(
        self, assignments: dict[str, str], statuses: dict[str, str], stops: dict[str, str], *, whole: bool
    ) -> Records[TaskRecord]:
        """The tasks of `assignments` (task id -> stored JSON) with their statuses and stop requests;
        `whole`: these are every task (the caches keep only them; a read of some only uses them)."""
        read = self._assignments.parse(assignments, whole=whole)
        status = self._statuses.parse(statuses, whole=whole).good
        stop = self._stops.parse(stops, whole=whole).good
        known = self._joined
        fresh: dict[str, tuple[tuple[object, object, object], str, TaskRecord]] = {}
        good: dict[str, TaskRecord] = {}
        bodies: dict[str, str] = {}
        for tid, assignment in read.good.items():
            reported, asked = status.get(tid), stop.get(tid)
            hit = known.get(tid)
            if hit is None or hit[0][0] is not assignment or hit[0][1] is not reported or hit[0][2] is not asked:
                key = "\n".join((assignments[tid], statuses.get(tid, ""), stops.get(tid, "")))
                hit = ((assignment, reported, asked), key, join(assignment, reported, asked))
            fresh[tid] = hit
            bodies[tid] = hit[1]
            good[tid] = hit[2]
        for tid, entry in read.unreadable.items():
            bodies[tid] = entry.body
        if whole:
            with self._lock:
                self._joined = fresh
        return Records(good, read.unreadable, bodies)
