"""The fit checks the scheduler places with and the API explains with: node states from records, what a
replica asks, and each node's verdict, bounded."""

from __future__ import annotations

import pytest

from scheduler.backoff import Backoff
from scheduler.placement import NAMED_NODES
from scheduler.plan import Policy
from scheduler.reconcile import reconcile
from shared.config import ServiceSpec
from shared.fit import NodeState, Request, allocations, asked, node_states, verdicts
from shared.records import NodeRecord, NodeStatus, PreviousContainer, ServiceRecord, TaskRecord, TaskState

NOW = 1000.0
GIB = 1024**3
MIB = 1024**2
POLICY = Policy(backoff=Backoff(base=1.0, cap=8.0, reset_after=60.0), assigned_timeout=30.0, heartbeat_misses=3)


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


def node(name: str, cpu: int = 1000, status: NodeStatus = NodeStatus.READY, cpu_allocated: int = 0) -> NodeState:
    return NodeState(name, status, cpu, 4 * GIB, cpu_allocated=cpu_allocated)


def test_verdicts_list_the_nodes_that_fit_first_then_by_id() -> None:
    nodes = [
        node("c", cpu_allocated=800),
        node("a", status=NodeStatus.DRAINING),
        node("d"),
        node("b", cpu_allocated=900),
        node("e", cpu=4000),
    ]
    judged = verdicts(nodes, Request("web.1", "web", cpu_millicores=500), limit=100)
    assert [(v.node, str(v.rejection) if v.rejection else None) for v in judged.listed] == [
        ("d", None),
        ("e", None),
        ("a", "node is draining"),
        ("b", "not enough cpu (needs 500m, 100m free)"),
        ("c", "not enough cpu (needs 500m, 200m free)"),
    ]
    assert (judged.total, judged.fitting, judged.truncated) == (5, 2, False)


def test_verdicts_are_bounded_whatever_the_cluster() -> None:
    nodes = [node(f"n{index:04}", cpu_allocated=1000 if index % 10 else 0) for index in range(1000)]
    judged = verdicts(nodes, Request("web.1", "web", cpu_millicores=1), limit=3)
    # The 100 nodes that fit come first; a limit below them lists only some of those.
    assert [v.node for v in judged.listed] == ["n0000", "n0010", "n0020"]
    assert (judged.total, judged.fitting, judged.truncated) == (1000, 100, True)
    wide = verdicts(nodes, Request("web.1", "web", cpu_millicores=1), limit=1000)
    assert (len(wide.listed), wide.truncated) == (1000, False)
    assert verdicts([], Request("web.1", "web"), limit=1).listed == []
    with pytest.raises(AssertionError):
        verdicts(nodes, Request("web.1", "web"), limit=0)


def test_the_verdicts_say_what_the_scheduler_stored() -> None:
    """A task left pending names each node's reason; the verdicts on the same records say the same."""
    resources = {"cpu_millicores": 1500, "memory_bytes": GIB}
    spec = ServiceSpec.model_validate({"service_name": "big", "image": "img", "replicas": 1, "resources": resources})
    service = ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0)
    nodes = [record("n1"), record("n2", cpu=1000)]
    tasks = [task(1, "n1", cpu_millicores=1000, service="web")]
    # web's own record is not the point: frozen, its task stays as it is and holds its node.
    plan = reconcile({"big": service}, tasks, nodes, NOW, POLICY, frozen={"web"})
    (write,) = plan.writes
    assert write.record is not None and write.record.state is TaskState.PENDING
    assert len(nodes) <= NAMED_NODES  # so the stored reason names each node

    status = {record.id: record.status(NOW, POLICY.heartbeat_misses) for record in nodes}
    judged = verdicts(node_states(nodes, status, tasks).values(), asked("big.1", spec), limit=10)
    assert "; ".join(f"{v.node}: {v.rejection}" for v in judged.listed) == write.record.reason
