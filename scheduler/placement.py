"""Placement: which ready node takes a replica, or why none can. Pure: no Redis, no Docker.

Nomad-style pipeline: cheap feasibility checks first (shared/fit.py, which the API explains a pending
task with too), each answering one question about one node and saying why it rejects it; then the
feasible nodes are ranked, spreading a service's replicas over nodes first and preferring the least
allocated node. Placements made earlier in the same pass count against a node for the later ones.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.fit import NodeState, Rejection, Request, fits, rejection
from shared.records import NodeStatus

# Up to this many refusing nodes, a pending reason names each with its figures; beyond, it counts the
# nodes per reason (Kubernetes' "0/1000 nodes are available: ..."), so it does not grow with the
# cluster nor change with every node's free memory.
NAMED_NODES = 3


def pending_reason(candidates: Sequence[NodeState], rejections: Sequence[tuple[str, Rejection]]) -> str:
    """Why no node of `candidates` takes a request, from each refusing node's (id, rejection)."""
    if not rejections:
        return "no nodes registered"
    if len(rejections) <= NAMED_NODES:
        return "; ".join(f"{node_id}: {why}" for node_id, why in rejections)
    counts = Counter(why.summary for _, why in rejections)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"0/{len(candidates)} nodes available: " + ", ".join(f"{count} {summary}" for summary, count in ranked)


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


def _shape(request: Request) -> tuple[object, ...]:
    return (request.service, request.cpu_millicores, request.memory_bytes, request.host_ports, request.constraints,
            request.max_per_node)


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
