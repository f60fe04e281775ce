"""Placement at scale: the heap-based `place` gives exactly the answers of the reference scan."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable

from scheduler.placement import NodeState, Placement, Request, place, rank, rejection
from shared.records import NodeStatus

GIB = 1024**3
MIB = 1024**2


def place_by_scan(nodes: Iterable[NodeState], requests: Iterable[Request]) -> Placement:
    """The reference: every node checked and ranked for every request. O(replicas x nodes)."""
    candidates = list(nodes)
    result = Placement()
    for request in requests:
        best: NodeState | None = None
        reasons: list[str] = []
        for node in candidates:
            reason = rejection(node, request)
            if reason:
                reasons.append(f"{node.id}: {reason}")
            elif best is None or rank(node, request) < rank(best, request):
                best = node
        if best is None:
            result.pending[request.task] = "; ".join(reasons) if reasons else "no nodes registered"
            continue
        best.hold(request)
        result.assigned[request.task] = best.id
    return result


def cluster(rng: random.Random, count: int) -> list[NodeState]:
    nodes = []
    for i in range(count):
        status = rng.choice([NodeStatus.READY] * 8 + [NodeStatus.DRAINING, NodeStatus.DOWN])
        node = NodeState(f"n{i:03d}", status, rng.choice([1000, 2000, 4000]), rng.choice([1, 2, 4]) * GIB)
        node.cpu_allocated = rng.choice([0, 0, 100, 500])
        if rng.random() < 0.2:
            node.ports_used.add("80/tcp")
        node.replicas = {"web": rng.choice([0, 0, 1])}
        node.tasks = sum(node.replicas.values())
        nodes.append(node)
    return nodes


def workload(rng: random.Random) -> list[Request]:
    requests = []
    for s in range(rng.randint(1, 12)):
        service = "web" if s == 0 else f"svc{s}"
        cpu = rng.choice([0, 0, 100, 300, 900])
        memory = rng.choice([0, 64 * MIB, 512 * MIB])
        ports = rng.choice([(), (), ("80/tcp",), ("8080/tcp", "53/udp")])
        requests += [Request(f"{service}.{slot}", service, cpu, memory, ports) for slot in range(1, rng.randint(1, 40))]
    return requests


def test_heap_placement_equals_the_scan_on_random_clusters():
    for seed in range(300):
        rng = random.Random(seed)
        nodes = cluster(rng, rng.randint(0, 25))
        requests = workload(rng)
        fast_nodes, scan_nodes = copy.deepcopy(nodes), copy.deepcopy(nodes)
        fast, scan = place(fast_nodes, requests), place_by_scan(scan_nodes, requests)
        assert fast.assigned == scan.assigned, seed
        assert fast.pending == scan.pending, seed
        assert [vars(n) for n in fast_nodes] == [vars(n) for n in scan_nodes], seed


def test_services_without_requests_spread_over_all_nodes():
    nodes = [NodeState(f"n{i}", NodeStatus.READY, 1000, GIB) for i in range(10)]
    requests = [Request(f"s{s}.{slot}", f"s{s}", 0, 0) for s in range(10) for slot in range(1, 4)]
    place(nodes, requests)
    assert sorted(node.tasks for node in nodes) == [3] * 10  # not all on the first three by name


def test_many_nodes_and_replicas_place_quickly():
    import time

    nodes = [NodeState(f"n{i:04d}", NodeStatus.READY, 64_000, 256 * GIB) for i in range(1000)]
    requests = [Request(f"s{s}.{slot}", f"s{s}", 10, MIB) for s in range(100) for slot in range(1, 101)]
    started = time.perf_counter()
    result = place(nodes, requests)
    assert len(result.assigned) == 10_000
    assert time.perf_counter() - started < 5  # the scan took minutes at this size
