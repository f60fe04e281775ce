"""Pure functions from stored records to the JSON the API returns; no Redis, so unit-testable."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from shared.records import NodeRecord, ServiceRecord, TaskRecord, TaskState, allocations


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC; None (or never, 0) stays null."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def service_status(record: ServiceRecord, tasks: list[TaskRecord]) -> dict[str, Any]:
    """How a service fares, judged from its tasks (those of other services are ignored)."""
    own = [task for task in tasks if task.service == record.name]
    states = Counter(task.state for task in own)
    desired = record.spec.replicas
    running = states[TaskState.RUNNING]
    if running >= desired:
        health = "healthy"
    elif running > 0:
        health = "degraded"
    else:
        health = "unhealthy"
    return {
        "desired_replicas": desired,
        "running_replicas": running,
        "pending_replicas": states[TaskState.PENDING],
        "failed_replicas": states[TaskState.FAILED],
        "health": health,
        "last_updated": iso(max([record.updated_at, *(task.updated_at for task in own)])),
    }


def service_view(record: ServiceRecord, tasks: list[TaskRecord]) -> dict[str, Any]:
    return {
        **record.spec.model_dump(mode="json"),
        "version": record.version,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "deleting": record.deleting,
        "status": service_status(record, tasks),
    }


def node_view(node: NodeRecord, tasks: list[TaskRecord], now: float, misses: float) -> dict[str, Any]:
    """A node with what its tasks hold on it; `tasks` may be every task of the cluster."""
    held = allocations(tasks).get(node.id)
    return {
        "id": node.id,
        "address": node.address,
        "status": node.status(now, misses).value,
        "availability": node.availability.value,
        "capacity": {"cpu_millicores": node.cpu_millicores, "memory_bytes": node.memory_bytes},
        "allocated": held.model_dump() if held else {"cpu_millicores": 0, "memory_bytes": 0},
        "usage": node.usage,
        "labels": node.labels,
        "last_heartbeat": iso(node.last_heartbeat),
        "tasks": sum(1 for task in tasks if task.node == node.id and task.holds_node()),
    }


def task_view(task: TaskRecord) -> dict[str, Any]:
    return {
        "id": task.id,
        "service": task.service,
        "slot": task.slot,
        "node": task.node,
        "container_id": task.container_id,
        "state": task.state.value,
        "reason": None if task.state is TaskState.RUNNING else task.reason,
        "ports": [port.model_dump() for port in task.ports],
        "started_at": iso(task.started_at),
        "restarts": task.restarts,
        "exit_code": task.exit_code,
        "gen": task.gen,
    }


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "type": event["type"],
        "time": iso(event["time"]),
        "message": event["message"],
        "data": event.get("data", {}),
    }
