"""Placement: which ready node takes a replica, or why none can. Pure: no Redis, no Docker.

Nomad-style pipeline: cheap feasibility checks first, each answering one question about one node
and saying why it rejects it; then the feasible nodes are ranked, spreading a service's replicas
over nodes first and preferring the least allocated node. Placements made earlier in the same pass
count against a node for the later ones.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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


def host_ports_free(node: NodeState, request: Request) -> Rejection | None:
    taken = sorted(port for port in request.host_ports if port in node.ports_used)
    if not taken:
        return None
    text = f"host port {', '.join(taken)} in use"
    return Rejection(text, text)


# Cheapest first; the first check that fails names the reason for that node.
CHECKS: tuple[Check, ...] = (node_ready, host_ports_free, enough_cpu, enough_memory)
# Up to this many refusing nodes, a pending reason names each with its figures; beyond, it counts the
# nodes per reason (Kubernetes' "0/1000 nodes are available: ..."), so it does not grow with the
# cluster nor change with every node's free memory.
NAMED_NODES = 3


def _mib(value: int) -> str:
    return f"{value / MIB:.0f} MiB"


def rejection(node: NodeState, request: Request) -> Rejection | None:
    for check in CHECKS:
        reason = check(node, request)
        if reason:
            return reason
    return None


def pending_reason(candidates: Sequence[NodeState], rejections: Sequence[tuple[str, Rejection]]) -> str:
    """Why no node of `candidates` takes a request, from each refusing node's (id, rejection)."""
    if not rejections:
        return "no nodes registered"
    if len(rejections) <= NAMED_NODES:
        return "; ".join(f"{node_id}: {why}" for node_id, why in rejections)
    counts = Counter(why.summary for _, why in rejections)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"0/{len(candidates)} nodes available: " + ", ".join(f"{count} {summary}" for summary, count in ranked)


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
    tests/unit/test_placement_scale.py), in O(nodes) once per pass plus O(log nodes) per placement
    (and per node a run skips), rather than O(nodes) per service. Consecutive requests of one shape
    (service, cpu, memory, host ports; a service's replicas, as reconcile sorts them) form a run.
    Spread makes any node holding none of the service beat every node holding some, so a run takes
    the best feasible node holding none from the pass-wide `_Pool` (ordered by load, tasks, id), and
    ranks the nodes already holding the service (usually few) only once none is left. Within a run
    only the chosen node changes, so other keys stay true; a node found infeasible stays so for the
    rest of the run (placements only take resources and ports), so it is set aside; once none is
    left, the rest of the run is pending for the same per-node reasons.
    """
    candidates = list(nodes)
    pending = list(requests)
    pool = _Pool(candidates, {request.service for request in pending})
    result = Placement()
    start = 0
    while start < len(pending):
        shape = _shape(pending[start])
        end = start + 1
        while end < len(pending) and _shape(pending[end]) == shape:
            end += 1
        _place_run(pool, pending[start:end], result)
        start = end
    return result


Base = tuple[float, int, str]  # (load, tasks, id)


def _base(node: NodeState) -> Base:
    return (node.load(), node.tasks, node.id)


def _shape(request: Request) -> tuple[str, int, int, tuple[str, ...]]:
    return (request.service, request.cpu_millicores, request.memory_bytes, request.host_ports)


class _Pool:
    """The pass's ready nodes in one heap by (load, tasks, id), then position, and who holds what.

    Built once per pass. Kept true lazily: `hold` bumps the node's version, which makes its entry
    stale (dropped when it comes up), and `settle` pushes a fresh one after the run. Entries a run
    skips (the node holds the service, or cannot take the request) go back after the run.
    """

    def __init__(self, candidates: list[NodeState], services: set[str]) -> None:
        self.nodes = candidates
        self.ready = [index for index, node in enumerate(candidates) if node.status is NodeStatus.READY]
        self.versions = [0] * len(candidates)
        # `rank` past the service's own count, per node, kept true as placements change the node.
        self.bases = [_base(node) for node in candidates]
        # Service placed -> positions of the ready nodes holding some of it.
        self.holders: dict[str, set[int]] = {service: set() for service in services}
        for index in self.ready:
            held = candidates[index].replicas
            # Through the smaller side: a node may hold many services the pass does not place.
            for service in held if len(held) < len(services) else services:
                if held.get(service) and service in services:
                    self.holders[service].add(index)
        self.heap = [self._entry(index) for index in self.ready]
        heapq.heapify(self.heap)
        self.aside: list[tuple[Base, int, int]] = []
        self.changed: set[int] = set()

    def _entry(self, index: int) -> tuple[Base, int, int]:
        return (self.bases[index], index, self.versions[index])

    def take_unheld(self, request: Request) -> int | None:
        """Pop the best node that holds none of the service and fits the request, if any."""
        while self.heap:
            entry = heapq.heappop(self.heap)
            _, index, version = entry
            if version != self.versions[index]:
                continue  # stale: `settle` pushes the node's current entry
            node = self.nodes[index]
            if node.replicas.get(request.service, 0) or not fits(node, request):
                self.aside.append(entry)
                continue
            return index
        return None

    def hold(self, index: int, request: Request) -> None:
        node = self.nodes[index]
        node.hold(request)
        self.bases[index] = _base(node)
        self.holders[request.service].add(index)
        self.versions[index] += 1
        self.changed.add(index)

    def ranked(self, service: str, index: int) -> tuple[int, Base, int]:
        """The node's `rank` for the service, then its position (the scan keeps the first of equals)."""
        return (self.nodes[index].replicas.get(service, 0), self.bases[index], index)

    def settle(self) -> None:
        """After a run: put back what it set aside and push the current entry of what it changed."""
        for entry in self.aside:
            if entry[2] == self.versions[entry[1]]:
                heapq.heappush(self.heap, entry)
        for index in self.changed:
            heapq.heappush(self.heap, self._entry(index))
        self.aside.clear()
        self.changed.clear()


def _place_run(pool: _Pool, run: list[Request], result: Placement) -> None:
    # The run's own heap ranks the nodes holding the service. When they are many, skipping them in the
    # pool would cost more (a pop each) than ranking every ready node here, so then the pool is unused.
    service = run[0].service
    holders = pool.holders[service]
    wide = len(holders) * len(pool.ready).bit_length() > len(pool.ready)
    nodes = pool.nodes
    heap = [pool.ranked(service, index) for index in (pool.ready if wide else holders)]
    heapq.heapify(heap)
    for position, request in enumerate(run):
        index = None if wide else pool.take_unheld(request)
        if index is not None:
            pool.hold(index, request)
            heapq.heappush(heap, pool.ranked(service, index))
        else:
            while heap and not fits(nodes[heap[0][2]], request):
                heapq.heappop(heap)  # infeasible now, so for the rest of the run
            if not heap:
                reason = _why_none(nodes, request)
                for rest in run[position:]:
                    result.pending[rest.task] = reason
                break
            index = heap[0][2]
            pool.hold(index, request)
            heapq.heapreplace(heap, pool.ranked(service, index))
        result.assigned[request.task] = nodes[index].id
    pool.settle()


def _why_none(candidates: list[NodeState], request: Request) -> str:
    return pending_reason(candidates, [(node.id, why) for node in candidates if (why := rejection(node, request))])
