"""The fit checks the scheduler places with: node states from records, and what a replica asks."""

from __future__ import annotations

from shared.config import ServiceSpec
from shared.fit import Request, allocations, asked, node_states
from shared.records import NodeRecord, NodeStatus, PreviousContainer, TaskRecord, TaskState

NOW = 1000.0
GIB = 1024**3
MIB = 1024**2


def record(name: str, cpu: int = 2000, memory: int = 4 * GIB) -> NodeRecord:
    return NodeRecord(id=name, address="127.0.0.2", cpu_millicores=cpu, memory_bytes=memory, last_heartbeat=NOW)


def task(
    slot: int, node: str | None, state: TaskState = TaskState.RUNNING, service: str = "web", **fields
) -> TaskRecord:
    return TaskRecord(id=f"{service}.{slot}", service=service, slot=slot, node=node, state=state, **fields)


def ready(*names: str) -> dict[str, NodeStatus]:
    return dict.fromkeys(names, NodeStatus.READY)


def test_node_states_count_what_holds_each_node() -> None:
    tasks = [
        task(1, "n1", cpu_millicores=300, memory_bytes=64 * MIB, host_ports=["80/tcp"]),
        task(2, "n1", TaskState.SHUTDOWN, cpu_millicores=100),  # stopping: its container is still there
        task(3, "n1", TaskState.FAILED, cpu_millicores=900),  # exited: holds nothing
        task(4, None, TaskState.PENDING),
        task(5, "n2", cpu_millicores=200, previous=PreviousContainer(node="n1", gen=1, cpu_millicores=50)),
        task(6, "gone", cpu_millicores=400),  # a node no longer registered
    ]
    states = node_states([record("n1"), record("n2")], ready("n1", "n2"), tasks)
    n1, n2 = states["n1"], states["n2"]
    assert (n1.cpu_allocated, n1.memory_allocated, n1.ports_used, n1.tasks) == (450, 64 * MIB, {"80/tcp"}, 3)
    assert (n2.cpu_allocated, n2.replicas, n2.status) == (200, {"web": 1}, NodeStatus.READY)
    # A task being placed again no longer counts on its node; its previous container still does.
    moved = node_states([record("n1"), record("n2")], ready("n1", "n2"), tasks, moving={"web.1", "web.5"})
    assert (moved["n1"].cpu_allocated, moved["n1"].ports_used, moved["n2"].cpu_allocated) == (150, set(), 0)
    # The API's `allocated` is the same count.
    held = allocations(tasks)
    assert {node: (a.cpu_millicores, a.memory_bytes) for node, a in held.items()} == {
        "n1": (450, 64 * MIB), "n2": (200, 0), "gone": (400, 0)
    }


def test_asked_is_the_specs_resources_and_host_ports() -> None:
    spec = ServiceSpec.model_validate({
        "service_name": "web", "image": "img", "replicas": 1,
        "resources": {"cpu_millicores": 500, "memory_bytes": 64 * MIB},
        "ports": [{"container_port": 80, "host_port": 8080}, {"container_port": 53, "host_port": 53, "protocol": "udp"},
                  {"container_port": 443}],
    })
    assert asked("web.3", spec) == Request("web.3", "web", 500, 64 * MIB, ("8080/tcp", "53/udp"))
