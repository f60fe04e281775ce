"""What the cluster stores about services, nodes and tasks, and the pure rules over it.

A *task* is one replica slot of a service (`web.1`, `web.2`, ...). Its `gen` (generation) rises
with every scheduler decision about it (placed, moved, restarted, stopped); node agents only write
a task while its gen is the one their job was for, so a stale job can never undo a newer decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.config import ServiceSpec, format_errors
from shared.defaults import DEFAULT_HEARTBEAT_INTERVAL

# Bounds of what a stored record may hold: a value beyond them (written by hand, by an older version
# or by a bug) makes the record unreadable, so it is reported as such instead of breaking arithmetic
# (placement divides capacities; back-off doubles streaks) in whoever reads it.
MAX_COUNT = 2**53  # gens, revs, restarts: the integers JSON carries exactly everywhere
MAX_CPU_MILLICORES = 10**9  # a node of a million cores
MAX_MEMORY_BYTES = 2**60  # an exbibyte
MAX_INTERVAL = 86_400.0  # seconds
ERROR_LIMIT = 500  # characters of an error kept as a reason

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Millicores = Annotated[int, Field(ge=0, le=MAX_CPU_MILLICORES)]
Bytes = Annotated[int, Field(ge=0, le=MAX_MEMORY_BYTES)]


class Stored(BaseModel):
    """A record as kept in Redis: infinities and NaN are refused (they compare false with everything)."""

    model_config = ConfigDict(allow_inf_nan=False)


class TaskState(StrEnum):
    PENDING = "pending"  # no node fits (reason says why)
    ASSIGNED = "assigned"  # placed; a start job is on the node's queue
    STARTING = "starting"  # the agent is creating/starting the container
    RUNNING = "running"
    FAILED = "failed"  # the container exited non-zero, or could not be created
    STOPPED = "stopped"  # exited 0, or stopped on request
    SHUTDOWN = "shutdown"  # desired gone; a stop job removes the container, then the record


class Health(StrEnum):
    """What the node's health checks say about a running replica (TaskState stays `running`)."""

    NONE = "none"  # the service has no health check
    STARTING = "starting"  # no check has passed yet
    HEALTHY = "healthy"  # the last check passed, or fewer than `retries` failed in a row since
    UNHEALTHY = "unhealthy"  # `retries` checks failed in a row (the replica is then replaced)


class UpdateState(StrEnum):
    UPDATING = "updating"
    PAUSED = "paused"  # by its failure_action, or by a user; `gorchester rollout resume` goes on
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


ACTIVE_STATES = frozenset({TaskState.ASSIGNED, TaskState.STARTING, TaskState.RUNNING})
TERMINAL_STATES = frozenset({TaskState.FAILED, TaskState.STOPPED})


class NodeStatus(StrEnum):
    READY = "ready"
    NOT_READY = "not_ready"  # its engine does not answer: no new replicas; its own stay, for the heartbeat window
    DRAINING = "draining"
    DOWN = "down"  # no heartbeat (or no engine) for the heartbeat window: its replicas move


class Availability(StrEnum):
    ACTIVE = "active"
    DRAIN = "drain"


class ServiceOutcome(StrEnum):
    """What a user's write did to a service (the API's answers, `gorchester apply`'s summary)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


class PublishedPort(Stored):
    host_ip: str
    host_port: int = Field(ge=0, le=65535)
    container_port: int = Field(ge=0, le=65535)
    protocol: str = "tcp"


class UpdateStatus(Stored):
    """A rolling update of a service's template: from `previous_spec` to `spec`, and how it ended."""

    state: UpdateState = UpdateState.UPDATING
    version: Count  # the service version being rolled out
    started_at: float
    finished_at: float | None = None
    reason: str | None = None  # why it was rolled back or paused, or which replicas failed (failure_action continue)
    # The next batch starts no earlier (update_config.delay after the previous batch was done).
    next_batch_at: float | None = None


class Rebalance(Stored):
    """A user's `gorchester rebalance`: the scheduler moves replicas one at a time, start-first, from the
    nodes holding most of them to those holding fewest, until no move makes the spread more even."""

    requested_at: float
    finished_at: float | None = None  # None: moving
    reason: str | None = None  # why it stopped short of an even spread


class ServiceRecord(Stored):
    """A service as stored: the user's spec plus what the control plane keeps about it."""

    spec: ServiceSpec
    version: Count = 1  # rises on every change of the spec
    created_at: float
    updated_at: float
    deleting: bool = False  # deleted by the user; the record goes once its tasks are gone
    previous_spec: ServiceSpec | None = None  # the spec before the last template change (rollback target)
    update: UpdateStatus | None = None  # the last rolling update, if the template ever changed
    rebalance: Rebalance | None = None  # the last rebalance a user asked for

    @property
    def rebalancing(self) -> bool:
        return self.rebalance is not None and self.rebalance.finished_at is None

    @property
    def name(self) -> str:
        return self.spec.service_name

    def template_hash(self) -> str:
        return template_hash(self.spec)

    @property
    def updating(self) -> bool:
        """A rolling update is under way (or paused)."""
        return self.update is not None and self.update.state in (UpdateState.UPDATING, UpdateState.PAUSED)

    @property
    def replacing(self) -> bool:
        """Replicas may still be replaced one by one: an update under way, or a rollback (which does
        not record its end)."""
        return self.update is not None and self.update.state is not UpdateState.COMPLETED

    def with_spec(self, spec: ServiceSpec, now: float) -> ServiceRecord:
        """The record after a user's change of spec; a changed template starts a rolling update.

        The rollback target is the last spec that was fully rolled out: a change in the middle of
        an update keeps the previous one.
        """
        version = self.version + 1
        fields: dict[str, Any] = {"spec": spec, "version": version, "updated_at": now}
        if template_hash(spec) != self.template_hash():
            fields["previous_spec"] = self.previous_spec if self.updating and self.previous_spec else self.spec
            fields["update"] = UpdateStatus(version=version, started_at=now)
        return self.model_copy(update=fields)

    def desired(self, own: list[TaskRecord]) -> int:
        """The replicas it wants: its declared count; a global service's pinned slots, its tasks (`own`)
        not being shut down."""
        if self.spec.is_global:
            return sum(1 for task in own if task.state is not TaskState.SHUTDOWN)
        return self.spec.count

    def allowed_nodes(self, nodes: Iterable[NodeRecord]) -> set[str] | None:
        """The ids of the nodes its placement constraints allow (None: it has none, so every node)."""
        placement = self.spec.placement
        if placement is None or not placement.constraints:
            return None
        rules = placement.parsed()
        return {node.id for node in nodes if all(rule.holds(node.id, node.address, node.labels) for rule in rules)}

    def spec_for(self, template: str) -> ServiceSpec:
        """The spec a task of this template hash runs (the previous one during an update)."""
        if self.previous_spec is not None and template != self.template_hash() \
                and template_hash(self.previous_spec) == template:
            return self.previous_spec
        return self.spec


_TEMPLATES: dict[int, tuple[ServiceSpec, str]] = {}  # id(spec) -> (spec, digest); specs are frozen


def template_hash(spec: ServiceSpec) -> str:
    """A short digest of what containers are made from; replicas alone never change it.

    Remembered per spec object (a pass asks once per replica it places: 10,000 JSON dumps otherwise);
    the cache holds the spec itself, so its id cannot be reused while cached.
    """
    cached = _TEMPLATES.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    canonical = json.dumps(spec.template(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    if len(_TEMPLATES) >= 4096:
        _TEMPLATES.clear()
    _TEMPLATES[id(spec)] = (spec, digest)
    return digest


class PreviousContainer(Stored):
    """The container a slot ran before its current gen, kept running until the new one is ready
    (start-first replacement); the scheduler sends its STOP then."""

    node: str
    gen: Count
    container_id: str | None = None
    address: str | None = None
    ports: list[PublishedPort] = Field(default_factory=list)
    cpu_millicores: Millicores = 0
    memory_bytes: Bytes = 0


class TaskRecord(Stored):
    id: str
    service: str
    slot: int = Field(ge=1, le=MAX_COUNT)
    gen: Count = 0
    rev: int = Field(default=0, ge=-1, le=MAX_COUNT)  # rises on every write of the scheduler; -1: not stored yet
    node: str | None = None
    state: TaskState = TaskState.PENDING
    reason: str | None = None
    template: str = ""  # template_hash of the spec it runs
    cpu_millicores: Millicores = 0
    memory_bytes: Bytes = 0
    host_ports: list[str] = Field(default_factory=list)  # "80/tcp" entries it publishes on its node
    container_id: str | None = None
    ports: list[PublishedPort] = Field(default_factory=list)
    created_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    restarts: Count = 0
    crash_streak: Count = 0  # restarts since the replica last ran cleanly; drives the back-off
    stop_requested: bool = False  # a user asked for the stop (matters to unless-stopped)
    halt_sent_at: float | None = None  # when the scheduler last sent that stop to the node (it resends a lost one)
    updated_at: float = 0.0
    health: Health = Health.NONE
    health_output: str | None = None  # what the check said at the last change of health
    address: str | None = None  # the container's address on its service network
    previous: PreviousContainer | None = None  # still running until this gen is ready (start-first)
    pinned: str | None = None  # a global service's slot: the node it belongs to (placed there or nowhere)
    # Which record of the slot this is: a slot made again (its service deleted and created again, an
    # unreadable record replaced) starts again at gen 1, and its containers must never be taken for
    # the old record's (container names and labels carry it). "" for records made before it existed.
    incarnation: str = ""
    removed: bool = False  # SHUTDOWN, and its agent reported its containers gone: the scheduler drops it

    @model_validator(mode="after")
    def _slot_id(self) -> TaskRecord:
        if self.id != task_id(self.service, self.slot):
            raise ValueError(f"id {self.id!r} is not slot {self.slot} of service {self.service!r}")
        return self

    def holds_node(self) -> bool:
        """Whether the task counts against its node's resources and host ports."""
        return self.node is not None and self.state in (ACTIVE_STATES | {TaskState.SHUTDOWN})

    def ready(self) -> bool:
        """Serving: running, and healthy when its service has a health check."""
        return self.state is TaskState.RUNNING and self.health in (Health.NONE, Health.HEALTHY)


def task_id(service: str, slot: int) -> str:
    return f"{service}.{slot}"


def incarnation_at(now: float) -> str:
    """The incarnation of a slot record made at `now`: the time in microseconds, in hex. Distinct for
    every record of a slot, as a slot is made at most once per scheduler pass."""
    return format(round(now * 1_000_000), "x")


def container_name(cluster: str, task: str, gen: int, incarnation: str = "") -> str:
    return f"{cluster}.{task}.{incarnation}.{gen}" if incarnation else f"{cluster}.{task}.{gen}"


def host_port_keys(spec: ServiceSpec) -> list[str]:
    return [f"{port.host_port}/{port.protocol.value}" for port in spec.ports if port.host_port]


@dataclass(frozen=True)
class EngineHealth:
    """What a node's agent last found of its Docker engine: the error while it does not answer, and
    since when (the heartbeat writes both onto the node record)."""

    error: str | None = None
    since: float | None = None

    def observe(self, error: str | None, now: float) -> EngineHealth:
        """After a look at `now` that found `error` (None: it answered)."""
        if error is None:
            return EngineHealth()
        return EngineHealth(error[:ERROR_LIMIT], self.since if self.error is not None else now)


class NodeRecord(Stored):
    id: str
    address: str
    cpu_millicores: Millicores
    memory_bytes: Bytes
    labels: dict[str, str] = Field(default_factory=dict)
    availability: Availability = Availability.ACTIVE
    heartbeat_interval: float = Field(default=DEFAULT_HEARTBEAT_INTERVAL, gt=0, le=MAX_INTERVAL)
    last_heartbeat: float = 0.0
    registered_at: float = 0.0
    usage: dict[str, Any] = Field(default_factory=dict)
    engine_error: str | None = None  # why its engine does not answer (at most ERROR_LIMIT characters)
    engine_error_since: float | None = None  # when its agent first found the engine not answering
    engine_id: str | None = None  # its Docker engine's ID (`docker info`); nodes sharing an engine share it
    # Fields of older versions (`engine_url`: the API no longer reaches engines) are ignored when read.

    def window(self, misses: float) -> float:
        """How long a node may go without a heartbeat (or its engine) before its replicas move."""
        return self.heartbeat_interval * misses

    def down_at(self, misses: float, heard_since: float = 0.0) -> float:
        """When the node is down unless a heartbeat (or its engine) comes back first.

        `heard_since`: since when the control plane has heard Redis without a break (the leading
        scheduler's, shared/keys.py `heard_since`; 0: all along). Silence counts only from then: while
        Redis did not answer nobody could beat, so a node is not blamed for it, nor for an engine
        error it could not report the end of (as Kubernetes' node lifecycle controller evicts nothing
        in a full disruption)."""
        beat = max(self.last_heartbeat, heard_since) + self.window(misses)
        if self.engine_error is not None and self.engine_error_since is not None:
            return min(beat, max(self.engine_error_since, heard_since) + self.window(misses))
        return beat

    def status(self, now: float, misses: float, heard_since: float = 0.0) -> NodeStatus:
        if now > self.down_at(misses, heard_since):
            return NodeStatus.DOWN
        if self.engine_error is not None:
            return NodeStatus.NOT_READY
        if self.availability is Availability.DRAIN:
            return NodeStatus.DRAINING
        return NodeStatus.READY

    def reason(self, now: float, misses: float, heard_since: float = 0.0) -> str | None:
        """Why the node is not ready (None when it is, or only draining)."""
        if now - max(self.last_heartbeat, heard_since) > self.window(misses):
            return f"no heartbeat for {now - self.last_heartbeat:.1f}s"
        if self.engine_error is not None:
            return f"engine unreachable: {self.engine_error}"
        return None


class AutoscaleState(BaseModel):
    """What the autoscaler remembers about one service between passes (kept in Redis by the leading
    scheduler, shown by the API)."""

    recommendations: list[tuple[float, int]] = Field(default_factory=list)  # (time, replicas), oldest first
    last_scaled_at: float | None = None
    version: int | None = None  # the service version this state has seen (a different one: changed by others)
    last_decision: dict[str, Any] | None = None  # the latest evaluation, acted on or not
    last_action: dict[str, Any] | None = None  # the latest scaling applied


class ServiceFault(Stored):
    """Why the scheduler cannot handle a service (its record unreadable, or its reconciliation
    raised); kept in the `faults` hash, which only the scheduler writes."""

    reason: str
    since: float
    record: str  # record_digest of the stored service it is about: a changed record is looked at afresh


@dataclass(frozen=True)
class Unreadable:
    """A stored record no model accepts (not JSON, the wrong shape, a value out of bounds, stored
    under a key that is not its own), and why."""

    key: str  # the hash field it is stored under: a service name, a task id, a node id
    error: str
    body: str  # as stored

    @property
    def reason(self) -> str:
        """Why the object it is the record of is failed, as shown to users."""
        return f"record cannot be read: {self.error}"


def record_digest(body: str) -> str:
    """A short digest of a stored record's JSON, naming that version of it."""
    return hashlib.blake2b(body.encode(errors="replace"), digest_size=8).hexdigest()


def describe(exc: Exception) -> str:
    """An error as a one-line reason of bounded length (a model's errors as `path: rule` lines)."""
    text = "; ".join(format_errors(exc)) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 3] + "..."
