"""The pod network's rules: a subnet per engine from the cluster's range, routes to the others'."""

from __future__ import annotations

import pytest

from shared.podnet import PodNetwork, PodRangeError, Route, gateway, network_name, pick_subnet, routes, usable
from shared.records import NodeRecord


def node(node_id: str, address: str, engine: str | None) -> NodeRecord:
    return NodeRecord(id=node_id, address=address, cpu_millicores=1000, memory_bytes=2**30, engine_id=engine)


def test_each_engine_takes_the_first_free_slash_24_of_the_range() -> None:
    assert pick_subnet("10.244.0.0/16", []) == "10.244.0.0/24"
    assert pick_subnet("10.244.0.0/16", ["10.244.0.0/24", "10.244.2.0/24"]) == "10.244.1.0/24"


def test_a_subnet_overlapping_a_network_the_engine_has_is_skipped() -> None:
    # another cluster's network on the same engine, say, took the start of the range
    assert pick_subnet("10.244.0.0/16", [], clashes=["10.244.0.0/23", "172.17.0.0/16"]) == "10.244.2.0/24"
    assert not usable("10.244.1.0/24", [], ["10.244.0.0/16"])
    assert not usable("10.244.1.0/24", ["10.244.1.0/24"])
    assert usable("10.244.1.0/24", ["10.244.0.0/24"], ["192.168.0.0/20"])


def test_a_full_range_is_an_error_naming_it() -> None:
    with pytest.raises(PodRangeError, match="10.244.0.0/23"):
        pick_subnet("10.244.0.0/23", ["10.244.0.0/24", "10.244.1.0/24"])


def test_gateway_and_names() -> None:
    assert gateway("10.244.3.0/24") == "10.244.3.1"
    assert PodNetwork("id", "10.244.3.0/24").gateway == "10.244.3.1"
    assert network_name("demo") == "gorchester-demo"


def test_routes_go_to_every_other_engine_via_a_node_on_it() -> None:
    subnets = {"E1": "10.244.0.0/24", "E2": "10.244.1.0/24", "E3": "10.244.2.0/24", "E4": "10.244.3.0/24"}
    nodes = [
        node("n1", "10.0.0.1", "E1"),
        node("n2b", "10.0.0.22", "E2"),
        node("n2a", "10.0.0.2", "E2"),  # two nodes share E2: the first by id is the way there
        node("n3", "10.0.0.3", "E3"),
        node("old", "10.0.0.9", None),  # registered before it knew its engine: no route through it
    ]
    assert routes("E1", subnets, nodes) == [Route("10.244.1.0/24", "10.0.0.2"), Route("10.244.2.0/24", "10.0.0.3")]
    # E4 has a subnet but no node (yet): no route; nodes sharing one engine need none among themselves
    assert routes("E2", {"E2": "10.244.1.0/24"}, nodes) == []
