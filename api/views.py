"""Pure functions from stored records to the JSON the API returns; no Redis, so unit-testable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import TypeAdapter

from api.responses import (
    AnyService,
    EndpointView,
    EventView,
    HistoryView,
    NodeUsage,
    NodeVerdict,
    NodeView,
    Outcome,
    PlacementView,
    PlannedWait,
    PlanResult,
    PreviousView,
    ServicePlan,
    ServiceState,
    ServiceStatus,
    TaskView,
    UnreadableService,
    UpdateView,
    VersionView,
    stored,
)
from scheduler import dry_run
from shared.discovery import Endpoint, service_endpoints
from shared.fit import Verdicts, allocations
from shared.parsed import Records
from shared.records import (
    NodeRecord,
    PreviousContainer,
    ServiceFault,
    ServiceOutcome,
    ServiceRecord,
    TaskRecord,
    TaskState,
    Unreadable,
    UpdateState,
    record_digest,
)
from shared.storage import history
from shared.storage.history import Cause, Revision

OUTCOMES: dict[UpdateState, Outcome] = {
    UpdateState.UPDATING: "updating", UpdateState.PAUSED: "paused", UpdateState.COMPLETED: "completed",
    UpdateState.ROLLED_BACK: "rolled_back",
}


def serving(task: TaskRecord) -> bool:
    """A slot with a running container: its current gen, or the previous one kept during start-first."""
    return task.state is TaskState.RUNNING or task.previous is not None


def healthy(task: TaskRecord) -> bool:
    """Ready (running, and healthy when there is a check), or still served by its previous container,
    which was serving when its replacement was started."""
    return task.ready() or task.previous is not None


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC; None (or never, 0) stays null."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def service_status(record: ServiceRecord, tasks: list[TaskRecord], failure: str | None = None) -> ServiceStatus:
    """How a service fares, judged from its tasks (those of other services are ignored); `failure`:
    why the scheduler cannot handle it, if it cannot (health `failed`)."""
    own = [task for task in tasks if task.service == record.name]
    return _status(own, record.desired(own), record.updated_at, failure)


def _status(own: list[TaskRecord], desired: int | None, updated_at: float, failure: str | None) -> ServiceStatus:
    states = Counter(task.state for task in own)
    wanted = [task for task in own if desired is None or task.slot <= desired]
    good = sum(1 for task in wanted if healthy(task))
    # Without a health check a running replica counts as healthy (Task.ready says so).
    health: Literal["healthy", "degraded", "unhealthy", "failed"]
    if failure is not None:
        health = "failed"
    elif desired is not None and good >= desired:
        health = "healthy"
    elif good > 0:
        health = "degraded"
    else:
        health = "unhealthy"
    return {
        "desired_replicas": desired,
        "running_replicas": sum(1 for task in own if serving(task)),
        "healthy_replicas": good,
        "pending_replicas": states[TaskState.PENDING],
        "failed_replicas": states[TaskState.FAILED],
        "health": health,
        "reason": failure,
        "last_updated": iso(max([updated_at, *(task.updated_at for task in own)])),
    }


def service_view(record: ServiceRecord, tasks: list[TaskRecord], failure: str | None = None) -> dict[str, Any]:
    """The `Service` schema: the spec's fields, then ServiceState's."""
    state: ServiceState = {
        "version": record.version,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "deleting": record.deleting,
        "status": service_status(record, tasks, failure),
        "update": update_view(record, tasks),
        "rebalance": None if record.rebalance is None else {
            "requested_at": iso(record.rebalance.requested_at), "finished_at": iso(record.rebalance.finished_at),
            "reason": record.rebalance.reason,
        },
    }
    return {**record.spec.model_dump(mode="json"), **state}


REDACTED = "<redacted>"


def without_env_values(view: Any) -> Any:
    """What the read-only token sees of a view: every `env` list's entries as `KEY=<redacted>`.

    Applied to the whole view, so any spec it holds (the service's own, an earlier one) is covered."""
    if isinstance(view, dict):
        return {
            key: [_redacted(entry) for entry in value] if key == "env" and isinstance(value, list)
            else without_env_values(value)
            for key, value in view.items()
        }
    if isinstance(view, list):
        return [without_env_values(item) for item in view]
    return view


def _redacted(entry: Any) -> Any:
    return f"{entry.partition('=')[0]}={REDACTED}" if isinstance(entry, str) else entry


def listed_service_view(
    name: str, stored: Records[ServiceRecord], tasks: list[TaskRecord], fault: ServiceFault | None
) -> AnyService:
    """The view of service `name` of the services as `stored`: shown `failed` with the reason when the
    scheduler cannot handle its record (`fault`) or the record cannot be read."""
    # A fault is about the record it was found in: a record replaced since is judged afresh.
    failure = fault.reason if fault is not None and fault.record == record_digest(stored.bodies[name]) else None
    entry = stored.entry(name)
    if isinstance(entry, Unreadable):
        return unreadable_service_view(entry, tasks, failure or entry.reason)
    assert entry is not None, "a stored name has a record or a reason it cannot be read"
    return service_view(entry, tasks, failure)


def unreadable_service_view(entry: Unreadable, tasks: list[TaskRecord], reason: str) -> UnreadableService:
    """A service whose stored record cannot be read: its name, why (status.reason) and what its
    tasks do. Its spec is unknown, so image and replicas are null; it can be replaced or deleted."""
    own = [task for task in tasks if task.service == entry.key]
    return {
        "service_name": entry.key,
        "image": None,
        "replicas": None,
        "version": None,
        "created_at": None,
        "updated_at": None,
        "deleting": False,
        "status": _status(own, None, 0.0, reason),
        "update": None,
        "rebalance": None,
    }


def update_view(record: ServiceRecord, tasks: list[TaskRecord]) -> UpdateView | None:
    """The last rolling update: its state, why it was rolled back or paused, and how far it got."""
    update = record.update
    if update is None:
        return None
    template = record.template_hash()
    own = [task for task in tasks if task.service == record.name and task.state is not TaskState.SHUTDOWN]
    desired = record.desired(own)
    wanted = {task.slot for task in own} if record.spec.is_global else set(range(1, desired + 1))
    updated = sum(1 for task in own if task.slot in wanted and task.template == template and task.ready())
    return {
        "state": update.state,
        "reason": update.reason,
        "version": update.version,
        "updated_replicas": updated,
        "total": desired,
        "started_at": iso(update.started_at),
        "finished_at": iso(update.finished_at),
        "next_batch_at": iso(update.next_batch_at),
    }


def endpoints_view(record: ServiceRecord, tasks: list[TaskRecord], nodes: list[NodeRecord]) -> list[EndpointView]:
    """The endpoints of a service (shared/discovery.py: its ready replicas, which the cluster DNS
    answers too) and where to reach them: the node's address with the published ports, and the
    container's address on the service network."""
    addresses = {node.id: node.address for node in nodes}
    return [_endpoint_view(endpoint, addresses) for endpoint in service_endpoints(record, tasks)]


def _endpoint_view(endpoint: Endpoint, node_addresses: dict[str, str]) -> EndpointView:
    task = endpoint.task
    return {
        "task": task.id,
        "slot": task.slot,
        "gen": task.gen,
        "node": task.node,
        "node_address": node_addresses.get(task.node or ""),
        "ports": [port.model_dump() for port in task.ports],
        "network": endpoint.spec.network_name(),
        "address": task.address,
        "health": task.health,
    }


NODE_USAGE = TypeAdapter(NodeUsage)


def node_view(
    node: NodeRecord, tasks: list[TaskRecord], now: float, misses: float, heard_since: float
) -> NodeView:
    """A node with what its tasks hold on it; `tasks` may be every task of the cluster. Its status is
    the scheduler's judgement: `heard_since` is the leader's (Reads.heard_since, NodeRecord.down_at)."""
    held = allocations(tasks).get(node.id)
    return {
        "id": node.id,
        "address": node.address,
        "status": node.status(now, misses, heard_since),
        "reason": node.reason(now, misses, heard_since),  # why it is not ready: no heartbeat, or no engine
        "availability": node.availability,
        "capacity": {"cpu_millicores": node.cpu_millicores, "memory_bytes": node.memory_bytes},
        "allocated": {"cpu_millicores": held.cpu_millicores if held else 0,
                      "memory_bytes": held.memory_bytes if held else 0},
        "usage": stored(NODE_USAGE, node.usage) or {},  # as its agent wrote it (worker/usage_sampler.py)
        "labels": node.labels,
        "last_heartbeat": iso(node.last_heartbeat),
        "tasks": sum(1 for task in tasks if task.node == node.id and task.holds_node()),
    }


def task_view(task: TaskRecord) -> TaskView:
    return {
        "id": task.id,
        "service": task.service,
        "slot": task.slot,
        "node": task.node,
        "container_id": task.container_id,
        "state": task.state,
        "reason": None if task.state is TaskState.RUNNING else task.reason,
        "ports": [port.model_dump() for port in task.ports],
        "started_at": iso(task.started_at),
        "restarts": task.restarts,
        "exit_code": task.exit_code,
        "gen": task.gen,
        "health": task.health,
        "health_output": task.health_output,
        "address": task.address,
        "previous": _previous_view(task.previous) if task.previous is not None else None,
    }


def _node_verdicts(judged: Verdicts) -> list[NodeVerdict]:
    return [
        {"node": verdict.node, "fits": verdict.rejection is None,
         "reason": verdict.rejection.text if verdict.rejection is not None else None}
        for verdict in judged.listed
    ]


def placement_view(task: TaskRecord, judged: Verdicts | None) -> PlacementView:
    """A task's placement: the nodes' verdicts on it when it is pending (`judged`), else its state alone."""
    if judged is None:
        judged = Verdicts(listed=[], total=0, fitting=0)
    return {
        "task": task.id,
        "state": task.state,
        "reason": task.reason if task.state is TaskState.PENDING else None,
        "nodes": _node_verdicts(judged),
        "nodes_total": judged.total,
        "nodes_fitting": judged.fitting,
        "truncated": judged.truncated,
    }


def _previous_view(previous: PreviousContainer) -> PreviousView:
    return {
        "node": previous.node,
        "gen": previous.gen,
        "container_id": previous.container_id,
        "ports": [port.model_dump() for port in previous.ports],
    }


def event_view(event: Mapping[str, Any]) -> EventView:
    return {
        "id": event["id"],
        "type": event["type"],
        "time": iso(event["time"]),
        "message": event["message"],
        "data": event.get("data", {}),
    }


def history_view(record: ServiceRecord, entries: list[Revision]) -> HistoryView:
    """A service's rollout history, newest first, each version's outcome read off the service's own
    update and the later versions' record of how the update before them ended. A service with no
    history kept (made before it was) shows its current version alone."""
    if not entries:
        cause = Cause.CREATED if record.update is None else Cause.UPDATED
        version = record.update.version if record.update is not None else record.version
        entries = [Revision(version=version, at=record.updated_at, cause=cause, spec=record.spec)]
    versions: list[VersionView] = []
    for index, entry in enumerate(entries):
        newer = entries[index - 1] if index else None
        outcome, why = _outcome(record, entry, newer, index == 0)
        versions.append({
            "version": entry.version, "at": iso(entry.at), "cause": entry.cause, "reason": entry.reason,
            "changed": entry.changed, "outcome": outcome, "outcome_reason": why,
            "spec": entry.spec.model_dump(mode="json"),
        })
    return {"service": record.name, "kept": history.KEPT, "versions": versions}


def _outcome(
    record: ServiceRecord, entry: Revision, newer: Revision | None, newest: bool
) -> tuple[Outcome, str | None]:
    update = record.update
    if update is not None and update.version == entry.version:
        return OUTCOMES[update.state], update.reason
    ended = newer.ended if newer is not None else None
    if ended is not None and ended.version == entry.version:
        if ended.state in (UpdateState.UPDATING, UpdateState.PAUSED):
            return "superseded", ended.reason
        return OUTCOMES[ended.state], ended.reason
    return ("current" if newest else "replaced"), None


def plan_view(plans: list[dry_run.ServicePlan], check_index: str) -> PlanResult:
    """What an apply would do (scheduler/dry_run.py), per service, and the index it was planned at."""
    return {"check_index": check_index, "services": [_service_plan(plan) for plan in plans]}


def _service_plan(plan: dry_run.ServicePlan) -> ServicePlan:
    controls = plan.controls
    changed = bool(plan.changes) and plan.outcome is ServiceOutcome.UPDATED
    waits: list[PlannedWait] = [
        {"task": item.task, "reason": item.reason, "nodes": _node_verdicts(item.verdicts),
         "nodes_total": item.verdicts.total, "nodes_fitting": item.verdicts.fitting}
        for item in plan.waiting
    ]
    return {
        "service": plan.name,
        "outcome": plan.outcome,
        "version_before": plan.version[0], "version": plan.version[1],
        "replicas_before": plan.replicas[0], "replicas": plan.replicas[1],
        "changes": [{"field": change.path, "before": change.before, "after": change.after} for change in plan.changes],
        "update": "rolling" if plan.rolling else "in_place" if changed else "none",
        "rollout": None if controls is None or controls.order is None else {
            "parallelism": controls.parallelism, "delay": controls.delay,
            "failure_action": controls.failure_action, "monitor": controls.monitor,
            "order": controls.order, "replaced": plan.replaced,
        },
        "placements": [
            {"task": placed.task, "node": placed.node, "why": placed.why, "start_first": placed.start_first,
             "from_node": placed.from_node}
            for placed in plan.placed
        ],
        "stops": plan.stopped,
        "pending": waits,
        "moves": plan.moves,
    }
