"""Placement without I/O: spread, resource fit, host-port conflicts, pending with reasons."""

from scheduler.placement import place
from shared.fit import NodeState, Request
from shared.records import NodeStatus

GIB = 1024**3
MIB = 1024**2


def node(name: str, cpu: int = 2000, memory: int = 4 * GIB, status: NodeStatus = NodeStatus.READY) -> NodeState:
    return NodeState(name, status, cpu, memory)


def requests(service: str, count: int, **kwargs) -> list[Request]:
    return [Request(f"{service}.{slot}", service, **kwargs) for slot in range(1, count + 1)]


def test_spreads_a_service_over_nodes_first():
    result = place([node("n1"), node("n2")], requests("web", 4))
    placed = sorted(result.assigned.values())
    assert placed == ["n1", "n1", "n2", "n2"]
    assert not result.pending


def test_spread_wins_over_load_then_least_allocated_wins():
    busy = node("n1")
    busy.cpu_allocated = 1500
    idle = node("n2")
    idle.replicas["web"] = 1
    # web has a replica on n2 already: spreading puts the next one on n1 despite its load.
    assert place([busy, idle], requests("web", 1)).assigned == {"web.1": "n1"}
    # another service prefers the least allocated node.
    assert place([node("a", cpu=1000), node("b", cpu=1000)], [Request("x.1", "x", cpu_millicores=100)]).assigned == {
        "x.1": "a"
    }


def test_least_allocated_node_is_preferred():
    loaded = node("n1")
    loaded.memory_allocated = 3 * GIB
    assert place([loaded, node("n2")], requests("db", 1)).assigned == {"db.1": "n2"}


def test_resources_held_by_earlier_placements_count():
    result = place([node("n1", cpu=1000)], requests("web", 3, cpu_millicores=400))
    assert result.assigned == {"web.1": "n1", "web.2": "n1"}
    assert result.pending == {"web.3": "n1: not enough cpu (needs 400m, 200m free)"}


def test_memory_fit_reason_in_mib():
    result = place([node("n1", memory=200 * MIB)], requests("db", 1, memory_bytes=512 * MIB))
    assert result.pending == {"db.1": "n1: not enough memory (needs 512 MiB, 200 MiB free)"}


def test_host_port_conflict_leaves_one_replica_per_node():
    result = place([node("n1"), node("n2")], requests("lb", 3, host_ports=("80/tcp",)))
    assert sorted(result.assigned.values()) == ["n1", "n2"]
    assert result.pending == {"lb.3": "n1: host port 80/tcp in use; n2: host port 80/tcp in use"}


def test_same_port_other_protocol_does_not_conflict():
    occupied = node("n1")
    occupied.ports_used.add("53/udp")
    assert place([occupied], [Request("dns.1", "dns", host_ports=("53/tcp",))]).assigned == {"dns.1": "n1"}


def test_nodes_not_ready_are_filtered_with_their_status():
    result = place([node("n1", status=NodeStatus.DOWN), node("n2", status=NodeStatus.DRAINING)], requests("web", 1))
    assert result.pending == {"web.1": "n1: node is down; n2: node is draining"}


def test_no_nodes_at_all():
    assert place([], requests("web", 1)).pending == {"web.1": "no nodes registered"}


def test_pending_is_per_request_and_later_requests_still_fit():
    result = place([node("n1", cpu=1000)], [Request("big.1", "big", cpu_millicores=5000), Request("s.1", "s", 100)])
    assert result.assigned == {"s.1": "n1"}
    assert result.pending == {"big.1": "n1: not enough cpu (needs 5000m, 1000m free)"}


def test_release_undoes_hold_entirely():
    """A stop-first replacement releases the old container's share, then holds the new one's: the
    node must end as it was, or its replica count skews later ties."""
    n = node("a", cpu=1000, memory=1024)
    request = Request("web.1", "web", 250, 128, ("80/tcp",))
    n.hold(request)
    n.release(request)
    assert (n.cpu_allocated, n.memory_allocated, n.ports_used, n.replicas.get("web"), n.tasks) == (0, 0, set(), 0, 0)


def test_a_pending_reason_over_many_nodes_counts_them_per_reason():
    """Over 1,000 full nodes the reason is a count per reason, as Kubernetes says it: bounded, and the same
    however each node's free cpu changes (it is not rewritten at every pass)."""

    def cluster(free_cpu: int) -> list[NodeState]:
        nodes = [node(f"n{i:04d}", cpu=2000) for i in range(998)]
        for each in nodes:
            each.cpu_allocated = 2000 - free_cpu - (int(each.id[1:]) % 7)
        ported = [node("p1"), node("p2")]
        for each in ported:
            each.ports_used.add("80/tcp")
        return [*nodes, *ported]

    wanted = Request("web.1", "web", cpu_millicores=1000, host_ports=("80/tcp",))
    reason = place(cluster(100), [wanted]).pending["web.1"]
    assert reason == "0/1000 nodes available: 998 not enough cpu (needs 1000m), 2 host port 80/tcp in use"
    assert place(cluster(300), [wanted]).pending["web.1"] == reason


def test_a_few_refusing_nodes_are_each_named_with_their_figures():
    nodes = [node("n1", cpu=500), node("n2", cpu=700), node("n3", status=NodeStatus.DOWN), node("n4", cpu=100)]
    assert place(nodes, [Request("big.1", "big", cpu_millicores=1000)]).pending["big.1"] == (
        "0/4 nodes available: 3 not enough cpu (needs 1000m), 1 node is down"
    )
    assert place(nodes[:3], [Request("big.1", "big", cpu_millicores=1000)]).pending["big.1"] == (
        "n1: not enough cpu (needs 1000m, 500m free); n2: not enough cpu (needs 1000m, 700m free); n3: node is down"
    )
