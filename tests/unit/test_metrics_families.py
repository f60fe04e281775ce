"""The cluster's gauges for GET /metrics built from plain records, and rendered as Prometheus text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from api.metrics_views import Scraped, cluster_families, cores, heartbeat_age, leader_label, one_hot
from shared.config import ServiceSpec
from shared.records import Health, NodeRecord, ServiceRecord, TaskRecord, TaskState, UpdateState, UpdateStatus
from shared.version import build_version

NOW = 1_000.0
MIB = 1024 * 1024


def service(name: str, replicas: int, update: UpdateState | None = None) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "nginx:alpine", "replicas": replicas})
    status = None if update is None else UpdateStatus(state=update, version=2, started_at=NOW - 10)
    return ServiceRecord(spec=spec, created_at=NOW - 100, updated_at=NOW - 10, update=status)


def task(service_name: str, slot: int, state: TaskState, node: str | None, **fields: Any) -> TaskRecord:
    return TaskRecord(
        id=f"{service_name}.{slot}", service=service_name, slot=slot, state=state, node=node,
        cpu_millicores=250, memory_bytes=32 * MIB, **fields,
    )


def node(node_id: str, last_heartbeat: float) -> NodeRecord:
    return NodeRecord(
        id=node_id, address="10.0.0.1", cpu_millicores=2000, memory_bytes=1024 * MIB, last_heartbeat=last_heartbeat
    )


def scrape(**fields: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Render the families as the API does and parse them back: sample name -> {sorted labels: value}."""
    nodes = fields.pop("nodes", [])
    scraped = Scraped(
        services=fields.pop("services", {}), tasks=fields.pop("tasks", []), nodes=nodes,
        queue_depths=[0] * len(nodes), heard_since=0.0, leader=fields.pop("leader", None), now=NOW, misses=3.0,
    )

    class Families(Collector):
        def collect(self) -> Iterator[Metric]:
            return cluster_families(scraped)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    result: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            result.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return result


def test_one_hot_marks_only_the_current_state() -> None:
    assert one_hot(UpdateState.PAUSED, UpdateState) == [
        ("updating", 0.0), ("paused", 1.0), ("completed", 0.0), ("rolled_back", 0.0),
    ]


def test_heartbeat_age_is_seconds_since_the_last_beat() -> None:
    assert heartbeat_age(node("n1", NOW - 2.5), NOW) == 2.5
    assert heartbeat_age(node("n1", NOW + 1.0), NOW) == -1.0  # an agent's clock ahead of the API's shows


def test_cpu_is_in_cores() -> None:
    assert cores(250) == 0.25 and cores(2000) == 2.0


def test_node_capacity_allocation_and_heartbeat_age() -> None:
    tasks = [
        task("web", 1, TaskState.RUNNING, "n1"),
        task("web", 2, TaskState.STARTING, "n1"),
        task("web", 3, TaskState.FAILED, "n1"),  # holds nothing
        task("web", 4, TaskState.PENDING, None),
    ]
    exposed = scrape(nodes=[node("n1", NOW - 2.0), node("n2", NOW - 30.0)], tasks=tasks)
    assert exposed["gorchester_node_cpu_allocated_cores"] == {(("node", "n1"),): 0.5, (("node", "n2"),): 0.0}
    assert exposed["gorchester_node_memory_allocated_bytes"][(("node", "n1"),)] == 64 * MIB
    assert exposed["gorchester_node_cpu_capacity_cores"][(("node", "n1"),)] == 2.0
    assert exposed["gorchester_node_memory_capacity_bytes"][(("node", "n1"),)] == 1024 * MIB
    assert exposed["gorchester_node_heartbeat_age_seconds"] == {(("node", "n1"),): 2.0, (("node", "n2"),): 30.0}
    assert exposed["gorchester_nodes"][(("status", "down"),)] == 1


def test_service_replicas_and_rollout_state() -> None:
    services = {"web": service("web", 3, UpdateState.UPDATING), "db": service("db", 1)}
    tasks = [
        task("web", 1, TaskState.RUNNING, "n1"),
        task("web", 2, TaskState.RUNNING, "n1", health=Health.UNHEALTHY),
        task("web", 3, TaskState.PENDING, None),
        task("db", 1, TaskState.RUNNING, "n1"),
    ]
    exposed = scrape(services=services, tasks=tasks)
    assert exposed["gorchester_service_desired_replicas"] == {(("service", "db"),): 1, (("service", "web"),): 3}
    assert exposed["gorchester_service_running_replicas"][(("service", "web"),)] == 2
    assert exposed["gorchester_service_healthy_replicas"] == {(("service", "db"),): 1, (("service", "web"),): 1}
    # One series per state for a service that has had an update, none for one that has not.
    assert exposed["gorchester_service_rollout_state"] == {
        (("service", "web"), ("state", state.value)): float(state is UpdateState.UPDATING) for state in UpdateState
    }


def test_leader_and_build_info() -> None:
    assert "gorchester_scheduler_leader" not in scrape()
    exposed = scrape(leader="0123456789abcdef@runid")
    assert exposed["gorchester_scheduler_leader"] == {(("scheduler", "01234567"),): 1.0}
    assert leader_label("0123456789abcdef@runid") == "01234567"
    ((labels, value),) = exposed["gorchester_build_info"].items()
    assert dict(labels)["version"] == build_version() and value == 1


def test_hostile_names_stay_label_values() -> None:
    hostile = 'evil"} 1\n# TYPE x counter\\'
    exposed = scrape(nodes=[node(hostile, NOW - 1.0)])
    assert exposed["gorchester_node_heartbeat_age_seconds"] == {(("node", hostile),): 1.0}
    assert "x" not in exposed
