"""The pure rules behind the API's views: a service's status from its tasks, node and task views."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse

from api.mirror import render
from api.views import REDACTED, iso, node_view, service_status, task_view, without_env_values
from shared.config import ServiceSpec
from shared.records import Availability, NodeRecord, PublishedPort, ServiceRecord, TaskRecord, TaskState


def record(replicas: int, updated_at: float = 100.0) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": "web", "image": "nginx:alpine", "replicas": replicas})
    return ServiceRecord(spec=spec, created_at=50.0, updated_at=updated_at)


def task(slot: int, state: TaskState, service: str = "web", node: str | None = "n1", **fields: Any) -> TaskRecord:
    return TaskRecord(id=f"{service}.{slot}", service=service, slot=slot, state=state, node=node, **fields)


@pytest.mark.parametrize(
    ("replicas", "states", "health"),
    [
        (2, [TaskState.RUNNING, TaskState.RUNNING], "healthy"),
        (2, [TaskState.RUNNING, TaskState.PENDING], "degraded"),
        (2, [TaskState.FAILED, TaskState.PENDING], "unhealthy"),
        (0, [], "healthy"),
        (1, [TaskState.RUNNING, TaskState.RUNNING], "healthy"),
    ],
)
def test_health_follows_running_against_desired(replicas: int, states: list[TaskState], health: str) -> None:
    tasks = [task(slot, state) for slot, state in enumerate(states, start=1)]
    assert service_status(record(replicas), tasks)["health"] == health


def test_status_counts_only_the_services_own_tasks() -> None:
    tasks = [
        task(1, TaskState.RUNNING),
        task(2, TaskState.PENDING),
        task(3, TaskState.FAILED),
        task(1, TaskState.RUNNING, service="db"),
    ]
    status = service_status(record(3), tasks)
    assert status == {
        "desired_replicas": 3,
        "running_replicas": 1,
        "healthy_replicas": 1,
        "pending_replicas": 1,
        "failed_replicas": 1,
        "health": "degraded",
        "reason": None,
        "last_updated": iso(100.0),
    }


def test_last_updated_is_the_newest_of_service_and_tasks() -> None:
    tasks = [task(1, TaskState.RUNNING, updated_at=300.0), task(1, TaskState.RUNNING, service="db", updated_at=900.0)]
    assert service_status(record(1, updated_at=200.0), tasks)["last_updated"] == "1970-01-01T00:05:00.000Z"


def test_iso_leaves_missing_times_null() -> None:
    assert iso(None) is None
    assert iso(0) is None
    assert iso(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"


def test_node_view_sums_what_holding_tasks_allocate() -> None:
    node = NodeRecord(id="n1", address="10.0.0.1", cpu_millicores=2000, memory_bytes=2**30, last_heartbeat=1000.0,
                      heartbeat_interval=2.0, availability=Availability.DRAIN)
    tasks = [
        task(1, TaskState.RUNNING, cpu_millicores=250, memory_bytes=2**26),
        task(2, TaskState.FAILED, cpu_millicores=999, memory_bytes=2**27),  # holds nothing
        task(3, TaskState.ASSIGNED, node="n2", cpu_millicores=100, memory_bytes=2**26),
    ]
    view = node_view(node, tasks, now=1001.0, misses=3, heard_since=0.0)
    assert view["status"] == "draining"
    assert view["allocated"] == {"cpu_millicores": 250, "memory_bytes": 2**26}
    assert view["capacity"] == {"cpu_millicores": 2000, "memory_bytes": 2**30}
    assert view["tasks"] == 1
    assert node_view(node, tasks, now=1007.0, misses=3, heard_since=0.0)["status"] == "down"


def test_task_view_hides_a_stale_reason_once_running() -> None:
    port = PublishedPort(host_ip="0.0.0.0", host_port=8080, container_port=80)
    running = task_view(task(1, TaskState.RUNNING, reason="old", ports=[port], started_at=10.0))
    assert running["reason"] is None
    assert running["ports"] == [{"host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80, "protocol": "tcp"}]
    assert running["started_at"] == "1970-01-01T00:00:10.000Z"
    assert task_view(task(2, TaskState.PENDING, reason="no node fits"))["reason"] == "no node fits"


def test_env_values_are_redacted_everywhere_in_a_view() -> None:
    view = {
        "service_name": "db", "env": ["DB_PASSWORD=hunter2", "EMPTY=", "URL=a=b"], "labels": {"env": "prod"},
        "update": {"previous_spec": {"env": ["OLD=secret"]}}, "items": [{"env": ["X=1"]}],
    }
    shown = without_env_values(view)
    assert shown["env"] == ["DB_PASSWORD=<redacted>", "EMPTY=<redacted>", "URL=<redacted>"]
    assert shown["update"]["previous_spec"]["env"] == ["OLD=<redacted>"]
    assert shown["items"][0]["env"] == ["X=<redacted>"]
    assert shown["labels"] == {"env": "prod"}  # not an env list
    assert view["env"][0] == "DB_PASSWORD=hunter2"  # the original is left alone (it may be cached)
    assert REDACTED not in str(without_env_values({"service_name": "web"}))


def test_a_rendered_part_is_what_a_json_response_renders() -> None:
    content = [{"id": "web.1", "name": "café", "ports": [], "n": None}]
    assert render(content) == JSONResponse(content).body
