"""Whether a node can take a replica, and why not. Pure: no Redis, no Docker, time passed in.

The checks placement filters nodes with (scheduler/placement.py ranks the nodes they pass), the
nodes' states as the tasks holding them leave them, and the per-node verdicts the API explains a
pending task with (`GET /v1/tasks/{task}/placement`). One copy for both, so the explanation is what
the scheduler judges.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from shared.config import ServiceSpec
from shared.constraints import Constraint
from shared.records import NodeRecord, NodeStatus, TaskRecord, host_port_keys

MIB = 1024 * 1024


@dataclass
class NodeState:
    """What placement needs to know about a node, updated as the pass places replicas on it."""

    id: str
    status: NodeStatus
    cpu_capacity: int
    memory_capacity: int
    cpu_allocated: int = 0
    memory_allocated: int = 0
    ports_used: set[str] = field(default_factory=set)  # "80/tcp"
    replicas: dict[str, int] = field(default_factory=dict)  # service -> replicas held here
    tasks: int = 0  # replicas of all services held here
    address: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # the agent's GORCHESTER_NODE_LABELS

    def hold(self, request: Request) -> None:
        self.cpu_allocated += request.cpu_millicores
        self.memory_allocated += request.memory_bytes
        self.ports_used.update(request.host_ports)
        self.replicas[request.service] = self.replicas.get(request.service, 0) + 1
        self.tasks += 1

    def release(self, request: Request) -> None:
        """Undo `hold` (a replacement that frees what the replaced container held)."""
        self.cpu_allocated -= request.cpu_millicores
        self.memory_allocated -= request.memory_bytes
        self.ports_used.difference_update(request.host_ports)
        self.replicas[request.service] = max(self.replicas.get(request.service, 0) - 1, 0)
        self.tasks = max(self.tasks - 1, 0)

    def load(self) -> float:
        """Share of the node already allocated: the mean of its cpu and memory shares."""
        cpu = self.cpu_allocated / self.cpu_capacity if self.cpu_capacity else 1.0
        memory = self.memory_allocated / self.memory_capacity if self.memory_capacity else 1.0
        return (cpu + memory) / 2


@dataclass(frozen=True)
class Request:
    task: str
    service: str
    cpu_millicores: int = 0
    memory_bytes: int = 0
    host_ports: tuple[str, ...] = ()
    constraints: tuple[Constraint, ...] = ()  # every one must hold for the node
    max_per_node: int = 0  # replicas of the service a node may hold; 0: no limit


def asked(task_id: str, spec: ServiceSpec, pinned: str | None = None) -> Request:
    """What a replica of `spec` asks of the node it is placed on; a global service's replica (`pinned`)
    asks for its own node."""
    placement = spec.placement
    rules = placement.parsed() if placement else ()
    if pinned is not None:
        rules = (*rules, Constraint("node.id", True, pinned))
    return Request(
        task_id, spec.service_name, spec.cpu_request(), spec.memory_request(), tuple(host_port_keys(spec)),
        rules, (placement.max_replicas_per_node or 0) if placement else 0,
    )


def held(task: TaskRecord) -> Request:
    """What a task's current container holds on its node (the resources and ports it was placed with)."""
    return Request(task.id, task.service, task.cpu_millicores, task.memory_bytes, tuple(task.host_ports))


def holdings(tasks: Iterable[TaskRecord], moving: Collection[str] = frozenset()) -> Iterator[tuple[str, Request]]:
    """(node id, what it holds there) of every container holding a node: a task's current one while the
    task holds its node (TaskRecord.holds_node), unless the task is named in `moving` (being placed
    again), and a previous container (start-first) until it is released."""
    for task in tasks:
        previous = task.previous
        if previous is not None:
            yield previous.node, Request(task.id, task.service, previous.cpu_millicores, previous.memory_bytes)
        if task.id not in moving and task.holds_node():
            assert task.node is not None
            yield task.node, held(task)


def node_states(
    nodes: Iterable[NodeRecord],
    status: Mapping[str, NodeStatus],
    tasks: Iterable[TaskRecord],
    moving: Collection[str] = frozenset(),
) -> dict[str, NodeState]:
    """Each node (by id) as the containers holding it leave it (`holdings`); `status` is each node's
    (NodeRecord.status at the time judged)."""
    states = {
        node.id: NodeState(node.id, status[node.id], node.cpu_millicores, node.memory_bytes, address=node.address,
                           labels=node.labels)
        for node in nodes
    }
    for node_id, request in holdings(tasks, moving):
        state = states.get(node_id)
        if state is not None:
            state.hold(request)
    return states


class Allocation(BaseModel):
    cpu_millicores: int = 0
    memory_bytes: int = 0


def allocations(tasks: Iterable[TaskRecord]) -> dict[str, Allocation]:
    """Resources held on each node (by id) by the containers holding one (`holdings`)."""
    result: dict[str, Allocation] = {}
    for node_id, request in holdings(tasks):
        alloc = result.setdefault(node_id, Allocation())
        alloc.cpu_millicores += request.cpu_millicores
        alloc.memory_bytes += request.memory_bytes
    return result


@dataclass(frozen=True)
class Rejection:
    """Why one node cannot take a request: `text` with this node's figures, `summary` the same for
    every node that refuses for that reason (counted when many do)."""

    text: str
    summary: str

    def __str__(self) -> str:
        return self.text


Check = Callable[[NodeState, Request], Rejection | None]


def node_ready(node: NodeState, request: Request) -> Rejection | None:
    if node.status is NodeStatus.READY:
        return None
    text = f"node is {node.status.value}"
    return Rejection(text, text)


def enough_cpu(node: NodeState, request: Request) -> Rejection | None:
    free = node.cpu_capacity - node.cpu_allocated
    if request.cpu_millicores <= free:
        return None
    needs = f"needs {request.cpu_millicores}m"
    return Rejection(f"not enough cpu ({needs}, {max(free, 0)}m free)", f"not enough cpu ({needs})")


def enough_memory(node: NodeState, request: Request) -> Rejection | None:
    free = node.memory_capacity - node.memory_allocated
    if request.memory_bytes <= free:
        return None
    needs = f"needs {_mib(request.memory_bytes)}"
    return Rejection(f"not enough memory ({needs}, {_mib(max(free, 0))} free)", f"not enough memory ({needs})")


def constraints_hold(node: NodeState, request: Request) -> Rejection | None:
    for constraint in request.constraints:
        if not constraint.holds(node.id, node.address, node.labels):
            text = f"constraint {constraint} not met"
            return Rejection(text, text)
    return None


def room_for_service(node: NodeState, request: Request) -> Rejection | None:
    if not request.max_per_node or node.replicas.get(request.service, 0) < request.max_per_node:
        return None
    text = f"max_replicas_per_node {request.max_per_node} reached"
    return Rejection(text, text)


def host_ports_free(node: NodeState, request: Request) -> Rejection | None:
    taken = sorted(port for port in request.host_ports if port in node.ports_used)
    if not taken:
        return None
    text = f"host port {', '.join(taken)} in use"
    return Rejection(text, text)


# Cheapest first; the first check that fails names the reason for that node.
CHECKS: tuple[Check, ...] = (node_ready, constraints_hold, room_for_service, host_ports_free, enough_cpu, enough_memory)


def _mib(value: int) -> str:
    return f"{value / MIB:.0f} MiB"


def rejection(node: NodeState, request: Request) -> Rejection | None:
    for check in CHECKS:
        reason = check(node, request)
        if reason:
            return reason
    return None


def fits(node: NodeState, request: Request) -> bool:
    """`rejection(node, request) is None`, without building reasons: the hot path at scale."""
    return (
        node.status is NodeStatus.READY
        and request.cpu_millicores <= node.cpu_capacity - node.cpu_allocated
        and request.memory_bytes <= node.memory_capacity - node.memory_allocated
        and (not request.host_ports or node.ports_used.isdisjoint(request.host_ports))
        and (not request.max_per_node or node.replicas.get(request.service, 0) < request.max_per_node)
        and all(constraint.holds(node.id, node.address, node.labels) for constraint in request.constraints)
    )


@dataclass(frozen=True)
class Verdict:
    """One node's answer to a request: None when it takes it, else why not."""

    node: str
    rejection: Rejection | None


@dataclass(frozen=True)
class Verdicts:
    """The verdicts of at most `limit` nodes (those that take the request first, then by node id), and
    how many nodes were judged and took it in all: its size does not grow with the cluster."""

    listed: list[Verdict]
    total: int
    fitting: int

    @property
    def truncated(self) -> bool:
        return len(self.listed) < self.total


def verdicts(nodes: Collection[NodeState], request: Request, limit: int) -> Verdicts:
    """Each node's verdict on `request`, as they stand (no placement of the same pass counted), bounded
    by `limit` (at least 1)."""
    assert limit >= 1, limit
    judged = [Verdict(node.id, rejection(node, request)) for node in nodes]
    listed = heapq.nsmallest(limit, judged, key=lambda verdict: (verdict.rejection is not None, verdict.node))
    return Verdicts(listed, len(judged), sum(1 for verdict in judged if verdict.rejection is None))
