"""Placement: which ready node takes a replica, or why none can. Pure: no Redis, no Docker.

Nomad-style pipeline: cheap feasibility checks first, each answering one question about one node
and saying why it rejects it; then the feasible nodes are ranked, spreading a service's replicas
over nodes first and preferring the least allocated node. Placements made earlier in the same pass
count against a node for the later ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.records import NodeStatus

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


Check = Callable[[NodeState, Request], str | None]


def node_ready(node: NodeState, request: Request) -> str | None:
    return None if node.status is NodeStatus.READY else f"node is {node.status.value}"


def enough_cpu(node: NodeState, request: Request) -> str | None:
    free = node.cpu_capacity - node.cpu_allocated
    if request.cpu_millicores <= free:
        return None
    return f"not enough cpu (needs {request.cpu_millicores}m, {max(free, 0)}m free)"


def enough_memory(node: NodeState, request: Request) -> str | None:
    free = node.memory_capacity - node.memory_allocated
    if request.memory_bytes <= free:
        return None
    return f"not enough memory (needs {_mib(request.memory_bytes)}, {_mib(max(free, 0))} free)"


def host_ports_free(node: NodeState, request: Request) -> str | None:
    taken = sorted(port for port in request.host_ports if port in node.ports_used)
    return f"host port {', '.join(taken)} in use" if taken else None


# Cheapest first; the first check that fails names the reason for that node.
CHECKS: tuple[Check, ...] = (node_ready, host_ports_free, enough_cpu, enough_memory)


def _mib(value: int) -> str:
    return f"{value / MIB:.0f} MiB"


def rejection(node: NodeState, request: Request) -> str | None:
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
    )


def rank(node: NodeState, request: Request) -> tuple[int, float, int, str]:
    """Lower is better: fewest replicas of this service, then least allocated, then fewest replicas
    of any service (so services without resource requests spread too), then name (stable)."""
    return (node.replicas.get(request.service, 0), node.load(), node.tasks, node.id)


@dataclass
class Placement:
    assigned: dict[str, str] = field(default_factory=dict)  # task -> node
    pending: dict[str, str] = field(default_factory=dict)  # task -> why no node fits


def place(nodes: Iterable[NodeState], requests: Iterable[Request]) -> Placement:
    """Place each request in order on the best feasible node; `nodes` are updated in place.

    Same answer as scanning every node for every request (the reference scan in
    tests/unit/test_placement_scale.py), in O(nodes + replicas x log nodes) per run of alike
    requests instead of O(replicas x nodes): consecutive requests of one
    shape (service, cpu, memory, host ports; a service's replicas, as reconcile sorts them) share a
    heap of the feasible nodes keyed by `rank`. Within a run only the node just chosen changes, so the
    other keys stay true; a node found infeasible stays so for the rest of the run (placements only
    take resources and ports), so it is dropped; once none is left, the rest of the run is pending for
    the same per-node reasons.
    """
    candidates = list(nodes)
    # `rank` past the service's own count, per node, kept true as placements change the node.
    bases = [_base(node) for node in candidates]
    result = Placement()
    pending = list(requests)
    start = 0
    while start < len(pending):
        shape = _shape(pending[start])
        end = start + 1
        while end < len(pending) and _shape(pending[end]) == shape:
            end += 1
        _place_run(candidates, bases, pending[start:end], result)
        start = end
    return result


def _base(node: NodeState) -> tuple[float, int, str]:
    return (node.load(), node.tasks, node.id)


def _shape(request: Request) -> tuple[str, int, int, tuple[str, ...]]:
    return (request.service, request.cpu_millicores, request.memory_bytes, request.host_ports)


def _place_run(
    candidates: list[NodeState], bases: list[tuple[float, int, str]], run: list[Request], result: Placement
) -> None:
    # Keys order as `rank` does: (replicas of this service, (load, tasks, id)), then the node's
    # position, as the scan keeps the first of equals. Infeasible nodes are dropped when they come up.
    service = run[0].service
    heap = [(node.replicas.get(service, 0), bases[index], index) for index, node in enumerate(candidates)]
    heapq.heapify(heap)
    for position, request in enumerate(run):
        while heap:
            index = heap[0][2]
            node = candidates[index]
            if not fits(node, request):
                heapq.heappop(heap)  # infeasible now, so for the rest of the run
                continue
            node.hold(request)
            bases[index] = _base(node)
            heapq.heapreplace(heap, (node.replicas.get(service, 0), bases[index], index))
            result.assigned[request.task] = node.id
            break
        else:
            reason = _why_none(candidates, request)
            for rest in run[position:]:
                result.pending[rest.task] = reason
            return


def _why_none(candidates: list[NodeState], request: Request) -> str:
    reasons = [f"{node.id}: {reason}" for node in candidates if (reason := rejection(node, request))]
    return "; ".join(reasons) if reasons else "no nodes registered"

