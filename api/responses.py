"""Every JSON object the API answers with, defined once: the views build these (mypy checks they build
exactly them) and api/openapi.py documents them (pydantic's JSON schema of each, closed: no property
beyond those named). TypedDicts are plain dicts at runtime, so the list views cost what dicts cost.

A service view is its spec's fields (ServiceSpec as `model_dump` gives them) plus ServiceState's, in
one object: api/openapi.py merges the two schemas into `Service`. Pass-through data other processes
store (a node's usage, the autoscaler's decisions) is validated against its type here on the way out,
so an answer never carries what the document does not name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Required, TypeVar

from pydantic import Field, GetPydanticSchema, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from shared.config import FailureAction, UpdateOrder
from shared.records import Availability, Health, NodeStatus, PublishedPort, ServiceOutcome, TaskState, UpdateState
from shared.storage.history import Cause

# A list of `PublishedPort.model_dump()` dicts, documented as the model serializes.
Ports = Annotated[
    list[dict[str, Any]], GetPydanticSchema(lambda _, handler: handler.generate_schema(list[PublishedPort]))
]
Time = Annotated[str | None, Field(description="ISO 8601 UTC with milliseconds; null: never")]


# -- services ------------------------------------------------------------------------------------


class ServiceStatus(TypedDict):
    desired_replicas: Annotated[int | None, Field(description="null when the stored record cannot be read")]
    running_replicas: Annotated[int, Field(description="slots with a running container (or a previous one)")]
    healthy_replicas: Annotated[int, Field(description="wanted slots ready, or still served by their previous one")]
    pending_replicas: int
    failed_replicas: int
    health: Annotated[
        Literal["healthy", "degraded", "unhealthy", "failed"],
        Field(description="failed: the scheduler cannot handle it (reason says why)"),
    ]
    reason: Annotated[str | None, Field(description="why it failed: its record is unreadable, or scheduling it raised")]
    last_updated: Time


class UpdateView(TypedDict):
    """The last rolling update: its state, why it was rolled back or paused, and how far it got."""

    state: UpdateState
    reason: Annotated[str | None, Field(description="why it was rolled back or paused; which replicas failed")]
    version: int
    updated_replicas: Annotated[int, Field(description="wanted slots ready on the new template")]
    total: int
    started_at: Time
    finished_at: Time
    next_batch_at: Annotated[Time, Field(description="the next batch starts no earlier (update_config.delay)")]


class RebalanceView(TypedDict):
    """The last rebalance a user asked for (`gorchester rebalance`)."""

    requested_at: Time
    finished_at: Annotated[Time, Field(description="null: replicas are being moved")]
    reason: Annotated[str | None, Field(description="why it stopped short of an even spread")]


class ServiceState(TypedDict):
    """What a service view adds to its spec's fields (the `Service` schema is both)."""

    version: int
    created_at: Time
    updated_at: Time
    deleting: bool
    status: ServiceStatus
    update: UpdateView | None
    rebalance: RebalanceView | None


class UnreadableService(TypedDict):
    """A service whose stored record cannot be read: its spec is unknown (status.reason says why); it can
    be replaced or deleted."""

    service_name: str
    image: None
    replicas: None
    version: None
    created_at: None
    updated_at: None
    deleting: bool
    status: ServiceStatus
    update: None
    rebalance: None


# A service view: its ServiceSpec's fields as `model_dump(mode="json")` gives them, then ServiceState's
# (documented as one object, `Service`); or, when its record cannot be read, an UnreadableService.
ServiceView = dict[str, Any]
AnyService = ServiceView | UnreadableService


class MetricDecision(TypedDict):
    target: float
    utilisation: float | None
    ratio: float | None
    desired: int | None
    measured: int
    missing: int
    unready: int


class AutoscaleDecision(TypedDict):
    time: Time
    current_replicas: int
    desired_replicas: int
    recommendation: int | None
    scale: bool
    direction: Literal["up", "down", "none"]
    reason: str
    metrics: dict[str, MetricDecision]


# `from` is a keyword, so these two are declared by call.
_Moved = TypedDict("_Moved", {"from": int, "to": int})


class AutoscaleAction(AutoscaleDecision, _Moved):
    """The decision that scaled, with the replicas before and after."""


class AutoscaleStatus(TypedDict):
    current_replicas: int
    desired_replicas: int
    last_decision: AutoscaleDecision | None
    last_scaled: AutoscaleAction | None


class Autoscaled(TypedDict):
    """What `GET /v1/services/{name}` adds to a service view."""

    autoscale: Annotated[AutoscaleStatus | None, Field(description="null for a service without scale_policy")]


Outcome = Literal["current", "updating", "paused", "completed", "rolled_back", "superseded", "replaced"]


class VersionView(TypedDict):
    """One version of a service's template in its rollout history."""

    version: int
    at: Time
    cause: Annotated[Cause, Field(description="created; updated by a user; rolled_back by the scheduler; undo")]
    reason: Annotated[str | None, Field(description="why it was rolled back; which version an undo went back to")]
    changed: Annotated[list[str], Field(description="the spec's fields it changed (dotted paths)")]
    outcome: Annotated[Outcome, Field(
        description="its rolling update's state (updating, paused, completed, rolled_back); superseded: changed "
        "again before that update ended; replaced: a later version replaced it; current: it runs"
    )]
    outcome_reason: Annotated[str | None, Field(description="why it was rolled back or paused")]
    spec: Annotated[
        dict[str, Any], Field(description="the spec it rolled out (env values hidden from the read-only token)")
    ]


class HistoryView(TypedDict):
    service: str
    kept: Annotated[int, Field(description="how many versions are kept (older ones are dropped)")]
    versions: Annotated[list[VersionView], Field(description="newest first")]


class PlannedChange(TypedDict):
    field: Annotated[str, Field(description="the spec's field, a dotted path (a list changes as a whole)")]
    before: Annotated[Any, Field(description="null: absent")]
    after: Any


class PlannedPlacement(TypedDict):
    task: str
    node: str
    why: Annotated[str, Field(description="scheduled, rescheduled, restarted or updated, as its event will say")]
    start_first: Annotated[bool, Field(description="its old container keeps serving until it is ready")]
    from_node: Annotated[str | None, Field(description="where it runs now; null: nowhere")]


class PlannedWait(TypedDict):
    """A replica that would wait for a node, and each node's verdict on it (this plan's placements counted)."""

    task: str
    reason: str
    nodes: Annotated[list[NodeVerdict], Field(description="at most 100, those that would take it first, then by id")]
    nodes_total: int
    nodes_fitting: int


class RolloutPlan(TypedDict):
    """How a changed template would be rolled out: the service's update_config, defaults filled in."""

    parallelism: int
    delay: int
    failure_action: FailureAction
    monitor: int
    order: UpdateOrder
    replaced: Annotated[list[str], Field(description="the replicas on the old template it replaces")]


class ServicePlan(TypedDict):
    service: str
    outcome: Annotated[ServiceOutcome, Field(description="what the apply would do to it")]
    version_before: int | None
    version: Annotated[int | None, Field(description="its version after the apply; null: deleted")]
    replicas_before: int | None
    replicas: int | None
    changes: Annotated[list[PlannedChange], Field(description="the spec's fields it changes")]
    update: Annotated[Literal["none", "in_place", "rolling"], Field(
        description="rolling: the template changes and replicas are replaced; in_place: the spec changes and "
        "running replicas stay; none: nothing runs differently"
    )]
    rollout: RolloutPlan | None
    placements: Annotated[list[PlannedPlacement], Field(
        description="where the next scheduler pass would place replicas (a rolling update: its first batch)"
    )]
    stops: Annotated[list[str], Field(description="replicas the next pass would stop")]
    pending: Annotated[list[PlannedWait], Field(description="replicas that would wait for a node, and why, per node")]
    moves: Annotated[list[str], Field(
        description="a rebalance: every replica it would move, one at a time, start-first (placements: the first)"
    )]


class PlanResult(TypedDict):
    check_index: Annotated[str, Field(
        description="the services as this plan saw them: POST /v1/apply?check_index= applies only if still so"
    )]
    services: list[ServicePlan]


class ApplyResult(TypedDict):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]
    versions: Annotated[dict[str, int], Field(
        description="each named service's version as this apply left it; a rolling update it started rolls out "
        "that version (the service's update.version)"
    )]


class EndpointView(TypedDict):
    task: str
    slot: int
    gen: int
    node: str | None
    node_address: str | None
    ports: Ports
    network: str
    address: Annotated[str | None, Field(description="the container's address on the service network")]
    health: Health


class ReplicaUsage(TypedDict):
    task: str
    node: str | None
    state: TaskState
    cpu_percent: float | None
    cpu_millicores: float | None
    memory_percent: float | None
    memory_bytes: int | None
    sampled_at: Time
    fresh: Annotated[bool, Field(description="a sample of its current container within two intervals")]


class UsageAverage(TypedDict):
    cpu_percent: float | None
    cpu_millicores: float | None
    memory_percent: float | None
    memory_bytes: int | None
    replicas_sampled: int


class ServiceUsage(TypedDict):
    service: str
    replicas: list[ReplicaUsage]
    average: UsageAverage
    sampled_at: Time
    interval_seconds: float
    autoscale: AutoscaleStatus | None


# -- nodes, tasks, events ------------------------------------------------------------------------


class NodeResources(TypedDict):
    cpu_millicores: int
    memory_bytes: int


class UsedResources(TypedDict):
    cpu_millicores: float
    memory_bytes: int


class NodeUsage(TypedDict, total=False):
    """What the node's agent measured last; empty before its first sample."""

    capacity: NodeResources
    allocated: NodeResources
    used: UsedResources
    cpu_percent: float | None
    memory_percent: float | None
    containers: int
    sampled_at: Annotated[float, Field(description="Unix seconds")]


class NodeView(TypedDict):
    id: str
    address: str
    status: NodeStatus
    reason: Annotated[str | None, Field(description="why it is not ready or down: no heartbeat, or no engine")]
    availability: Availability
    capacity: NodeResources
    allocated: Annotated[NodeResources, Field(description="what the tasks holding it reserve")]
    usage: NodeUsage
    labels: dict[str, str]
    last_heartbeat: Time
    tasks: Annotated[int, Field(description="tasks holding resources on it")]


class NodeRemoved(TypedDict):
    id: str
    was: NodeView | None  # the node as it was; null when its record could not be read


class PreviousView(TypedDict):
    """The container a slot ran before its current gen, still serving until the new one is ready."""

    node: str
    gen: int
    container_id: str | None
    ports: Ports


class TaskView(TypedDict):
    id: str
    service: str
    slot: int
    node: str | None
    container_id: str | None
    state: TaskState
    reason: Annotated[str | None, Field(description="why it is not running (null while running)")]
    ports: Ports
    started_at: Time
    restarts: int
    exit_code: int | None
    gen: int
    health: Health
    health_output: str | None
    address: Annotated[str | None, Field(description="the container's address on the service network")]
    previous: PreviousView | None


class NodeVerdict(TypedDict):
    node: str
    fits: bool
    reason: Annotated[str | None, Field(description="why it cannot take the task, with its figures; null if it can")]


class PlacementView(TypedDict):
    """Why a task waits: each node's verdict on what it asks, as the nodes stand now, bounded."""

    task: str
    state: TaskState
    reason: Annotated[str | None, Field(description="why it is pending, as the scheduler stored it; null if it is not")]
    nodes: Annotated[
        list[NodeVerdict],
        Field(description="at most `limit` nodes, those that take the task first, then by id; "
              "empty unless the task is pending"),
    ]
    nodes_total: Annotated[int, Field(description="the nodes judged (0 unless the task is pending)")]
    nodes_fitting: Annotated[int, Field(description="of those, how many take the task now (a pass will place it)")]
    truncated: Annotated[bool, Field(description="more nodes were judged than listed")]


class EventView(TypedDict):
    id: str
    type: str
    time: Time
    message: str
    data: dict[str, Any]


# -- health and errors ---------------------------------------------------------------------------


class RedisReplication(TypedDict):
    master: Annotated[str, Field(description="HOST:PORT of the Redis master this API writes to now")]
    replicas_in_sync: Annotated[
        int | None, Field(description="replicas online and at most 1 s behind; null when this Redis user may not INFO")
    ]


class HealthOk(TypedDict):
    status: Literal["ok"]
    cluster: str
    redis: RedisReplication


class HealthUnavailable(TypedDict):
    status: Literal["unavailable"]
    reason: str


class ProblemDetails(TypedDict, total=False):
    message: str
    reason: str
    errors: Annotated[list[str], Field(description="every invalid field or parameter, with its rule")]


class Problem(ProblemDetails):
    """Every error: a machine-readable `error` and a message or reason (400 and 422: every `errors` line)."""

    error: Required[str]


T = TypeVar("T")


def stored(adapter: TypeAdapter[T], value: Any) -> T | None:
    """`value`, which another process stored, as the documented type (unknown keys dropped); None if it
    does not fit."""
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None
