"""Placement at scale: `place` gives the answers of the reference scan, at a cost that follows what it places."""

from __future__ import annotations

import copy
import heapq
import random
from collections.abc import Iterable

from scheduler import placement
from scheduler.placement import Placement, pending_reason, place, rank
from shared.constraints import parse
from shared.fit import NodeState, Rejection, Request, rejection
from shared.records import NodeStatus

GIB = 1024**3
MIB = 1024**2


def place_by_scan(nodes: Iterable[NodeState], requests: Iterable[Request]) -> Placement:
    """The reference: every node checked and ranked for every request. O(replicas x nodes)."""
    candidates = list(nodes)
    result = Placement()
    for request in requests:
        best: NodeState | None = None
        reasons: list[tuple[str, Rejection]] = []
        for node in candidates:
            reason = rejection(node, request)
            if reason:
                reasons.append((node.id, reason))
            elif best is None or rank(node, request) < rank(best, request):
                best = node
        if best is None:
            result.pending[request.task] = pending_reason(candidates, reasons)
            continue
        best.hold(request)
        result.assigned[request.task] = best.id
    return result


SERVICES = [f"svc{s}" for s in range(6)]
PORTS = ["80/tcp", "8080/tcp", "53/udp"]


def cluster(rng: random.Random, count: int) -> list[NodeState]:
    """Small nodes (so runs fill them and go pending part-way), some not ready, some ports taken,
    replicas already placed (some services on most nodes), ties on load, ids in no particular order."""
    spread = rng.choice([0.0, 0.05, 0.2, 0.9])  # how widely services already run: some runs rank every node
    nodes = []
    for i in rng.sample(range(count * 2), count):
        status = rng.choice([NodeStatus.READY] * 6 + [NodeStatus.DRAINING, NodeStatus.DOWN])
        name = f"n{i:03d}" if rng.random() < 0.9 else "twin"  # equal ids: the first in order wins
        node = NodeState(name, status, rng.choice([500, 1000, 2000]), rng.choice([1, 2, 4]) * 512 * MIB)
        node.cpu_allocated = rng.choice([0, 0, 0, 100, 400])
        node.memory_allocated = rng.choice([0, 0, 256 * MIB])
        node.ports_used = {port for port in PORTS if rng.random() < 0.15}
        node.replicas = {service: rng.choice([0, 1, 1, 2]) for service in SERVICES if rng.random() < spread}
        node.tasks = sum(node.replicas.values()) + rng.choice([0, 0, 1])
        node.labels = {"zone": rng.choice("abc")} if rng.random() < 0.8 else {}
        node.address = f"10.0.0.{i % 4}"
        nodes.append(node)
    return nodes


def workload(rng: random.Random) -> list[Request]:
    """Runs of alike requests: several per pass, a service sometimes in more than one (other shapes,
    or after another service's run), mixed resources and host ports."""
    requests = []
    for run in range(rng.randint(1, 14)):
        service = rng.choice(SERVICES + ["new1", "new2"])
        cpu = rng.choice([0, 0, 100, 300, 900])
        memory = rng.choice([0, 64 * MIB, 512 * MIB])
        ports = rng.choice([(), (), (), ("80/tcp",), ("8080/tcp", "53/udp")])
        rules = rng.choice([(), (), ("node.labels.zone == a",), ("node.labels.zone != b", "node.address != 10.0.0.1")])
        most = rng.choice([0, 0, 1, 2])
        requests += [
            Request(f"{service}.{run}.{slot}", service, cpu, memory, ports, tuple(map(parse, rules)), most)
            for slot in range(rng.randint(1, 20))
        ]
    return requests


def test_heap_placement_equals_the_scan_on_random_clusters():
    for seed in range(400):
        rng = random.Random(seed)
        nodes = cluster(rng, rng.randint(0, 40))
        requests = workload(rng)
        scan_nodes = copy.deepcopy(nodes)
        fast, scan = place(nodes, requests), place_by_scan(scan_nodes, requests)
        assert fast.assigned == scan.assigned, seed
        assert fast.pending == scan.pending, seed
        assert [vars(n) for n in nodes] == [vars(n) for n in scan_nodes], seed


def test_services_without_requests_spread_over_all_nodes():
    nodes = [NodeState(f"n{i}", NodeStatus.READY, 1000, GIB) for i in range(10)]
    requests = [Request(f"s{s}.{slot}", f"s{s}", 0, 0) for s in range(10) for slot in range(1, 4)]
    place(nodes, requests)
    assert sorted(node.tasks for node in nodes) == [3] * 10  # not all on the first three by name


def test_many_nodes_and_replicas_are_all_placed():
    """10,000 replicas on 1,000 nodes, ten per node. How fast is bench/scale.py's to measure; the work a
    pass does per placement is bounded by the next test, not by a clock."""
    nodes = [NodeState(f"n{i:04d}", NodeStatus.READY, 64_000, 256 * GIB) for i in range(1000)]
    requests = [Request(f"s{s}.{slot}", f"s{s}", 10, MIB) for s in range(100) for slot in range(1, 101)]
    result = place(nodes, requests)
    assert len(result.assigned) == 10_000
    assert sorted(node.tasks for node in nodes) == [10] * 1000


def test_a_pass_ranks_nodes_in_proportion_to_what_it_places(monkeypatch):
    """100 services x 10 replicas on 1,000 nodes: about one heap key per node plus a few per
    placement, not one per node per service (100,000)."""

    class CountingHeapq:
        keys = 0
        heappop = staticmethod(heapq.heappop)

        def heapify(self, heap: list) -> None:
            self.keys += len(heap)
            heapq.heapify(heap)

        def heappush(self, heap: list, item: object) -> None:
            self.keys += 1
            heapq.heappush(heap, item)

        def heapreplace(self, heap: list, item: object) -> object:
            self.keys += 1
            return heapq.heapreplace(heap, item)

    counted = CountingHeapq()
    monkeypatch.setattr(placement, "heapq", counted)
    nodes = [NodeState(f"n{i:04d}", NodeStatus.READY, 64_000, 256 * GIB) for i in range(1000)]
    requests = [Request(f"s{s}.{slot}", f"s{s}", 10, MIB) for s in range(100) for slot in range(1, 11)]
    assert len(place(nodes, requests).assigned) == 1000
    assert counted.keys <= 1000 + 3 * 1000
