"""The API's views of health, rolling updates and endpoints (pure)."""

from __future__ import annotations

from typing import Any

from api.views import endpoints_view, service_status, service_view, task_view
from shared.config import ServiceSpec
from shared.records import (
    Health,
    NodeRecord,
    PreviousContainer,
    PublishedPort,
    ServiceRecord,
    TaskRecord,
    TaskState,
    UpdateState,
)

CHECK = {"http_path": "/health", "port": 80, "interval": 1}


def record(replicas: int = 3, **fields: Any) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": "web", "image": "img", "replicas": replicas, **fields})
    return ServiceRecord(spec=spec, created_at=1.0, updated_at=1.0)


def task(svc: ServiceRecord, slot: int, health: Health, state: TaskState = TaskState.RUNNING, **fields: Any):
    return TaskRecord(
        id=f"web.{slot}", service="web", slot=slot, state=state, health=health, node="n1",
        template=svc.template_hash(), **fields,
    )


def test_service_health_counts_healthy_replicas_when_there_is_a_check():
    svc = record(health_check=CHECK)
    assert service_status(svc, [task(svc, s, Health.HEALTHY) for s in (1, 2, 3)])["health"] == "healthy"
    mixed = [task(svc, 1, Health.HEALTHY), task(svc, 2, Health.STARTING), task(svc, 3, Health.HEALTHY)]
    status = service_status(svc, mixed)
    assert status["health"] == "degraded" and status["healthy_replicas"] == 2 and status["running_replicas"] == 3
    assert service_status(svc, [task(svc, s, Health.STARTING) for s in (1, 2, 3)])["health"] == "unhealthy"


def test_without_a_check_running_replicas_are_healthy():
    svc = record()
    assert service_status(svc, [task(svc, s, Health.NONE) for s in (1, 2, 3)])["health"] == "healthy"


def test_a_slot_served_by_its_previous_container_counts_as_running():
    svc = record(replicas=1)
    moving = task(svc, 1, Health.NONE, TaskState.ASSIGNED, previous=PreviousContainer(node="n2", gen=1))
    status = service_status(svc, [moving])
    assert status["running_replicas"] == 1 and status["health"] == "healthy"
    assert task_view(moving)["previous"] == {"node": "n2", "gen": 1, "container_id": None, "ports": []}


def test_update_view_shows_progress_and_outcome():
    old = record(replicas=2)
    new = old.with_spec(old.spec.model_copy(update={"image": "img2"}), 5.0)
    tasks = [task(new, 1, Health.NONE), task(old, 2, Health.NONE)]
    view = service_view(new, tasks)["update"]
    assert view["state"] == "updating" and view["updated_replicas"] == 1 and view["total"] == 2
    assert view["reason"] is None and view["version"] == 2
    assert service_view(old, tasks)["update"] is None
    rolled = new.model_copy(update={"update": new.update.model_copy(  # type: ignore[union-attr]
        update={"state": UpdateState.ROLLED_BACK, "reason": "web.1 failed"})})
    assert service_view(rolled, tasks)["update"]["state"] == "rolled_back"


def test_endpoints_are_the_ready_replicas_with_node_and_container_addresses():
    svc = record(health_check=CHECK, ports=[{"container_port": 80}], network="backend")
    port = PublishedPort(host_ip="10.0.0.5", host_port=32768, container_port=80)
    tasks = [
        task(svc, 1, Health.HEALTHY, ports=[port], address="172.18.0.2"),
        task(svc, 2, Health.STARTING, address="172.18.0.3"),
        task(svc, 3, Health.UNHEALTHY, TaskState.FAILED),
    ]
    node = NodeRecord(id="n1", address="10.0.0.5", cpu_millicores=1000, memory_bytes=1 << 30)
    [endpoint] = endpoints_view(svc, tasks, [node])
    assert endpoint["task"] == "web.1" and endpoint["node"] == "n1" and endpoint["node_address"] == "10.0.0.5"
    assert endpoint["address"] == "172.18.0.2" and endpoint["network"] == "backend"
    assert endpoint["ports"] == [port.model_dump()]
