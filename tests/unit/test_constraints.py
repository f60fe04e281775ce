"""Placement constraints in Swarm's syntax (shared/constraints.py) and the placement rules they make."""

from __future__ import annotations

import pytest

from scheduler.placement import place
from shared.config import ConfigError, ServiceSpec, validate_service
from shared.constraints import Constraint, parse
from shared.fit import NodeState, asked, rejection
from shared.records import NodeStatus

LABELS = {"zone": "a", "disk": "ssd"}


@pytest.mark.parametrize(("text", "holds"), [
    ("node.labels.zone == a", True),
    ("node.labels.zone==b", False),
    ("node.labels.zone != b", True),
    ("node.labels.rack == r1", False),  # a label the node lacks never equals
    ("node.labels.rack != r1", True),  # and always differs, as in Swarm
    ("node.id == node-1", True),
    ("node.id != node-1", False),
    ("node.address == 10.0.0.2", True),
    ("  node.address   !=   10.0.0.3  ", True),
])
def test_a_constraint_holds_as_swarm_says(text: str, holds: bool) -> None:
    assert parse(text).holds("node-1", "10.0.0.2", LABELS) is holds


@pytest.mark.parametrize("text", [
    "zone == a", "node.labels.zone = a", "node.labels.zone == ", "node.labels. == a", "node.hostname == h",
    "node.labels.zone == a b", "node.labels.zone == $(reboot)", "node.id == a\\nnode.id == b", "",
])
def test_anything_else_is_refused_naming_the_rule(text: str) -> None:
    with pytest.raises(ValueError, match="must be FIELD == VALUE or FIELD != VALUE"):
        parse(text)
    with pytest.raises(ConfigError) as refused:
        service(constraints=[text])
    assert "placement.constraints[0]: must be FIELD == VALUE" in str(refused.value)


def service(**placement: object) -> ServiceSpec:
    return validate_service({"service_name": "web", "image": "nginx", "replicas": 3, "placement": placement})


def test_a_node_that_breaks_a_rule_says_which() -> None:
    spec = service(constraints=["node.labels.zone == b"], max_replicas_per_node=1)
    node = NodeState("node-1", NodeStatus.READY, 1000, 1 << 30, address="10.0.0.2", labels=LABELS)
    assert str(rejection(node, asked("web.1", spec))) == "constraint node.labels.zone == b not met"
    spec = service(max_replicas_per_node=1)
    node.replicas["web"] = 1
    assert str(rejection(node, asked("web.2", spec))) == "max_replicas_per_node 1 reached"
    assert asked("web.1", spec).constraints == () and asked("web.1", service()).max_per_node == 0


def test_replicas_go_only_where_the_rules_allow_and_the_rest_wait_saying_why() -> None:
    nodes = [NodeState(f"n{i}", NodeStatus.READY, 4000, 8 << 30, labels={"zone": "ab"[i % 2]}) for i in range(4)]
    spec = service(constraints=["node.labels.zone == a"], max_replicas_per_node=1)
    result = place(nodes, [asked(f"web.{slot}", spec) for slot in (1, 2, 3)])
    assert sorted(result.assigned.values()) == ["n0", "n2"]
    assert result.pending == {
        "web.3": "0/4 nodes available: 2 constraint node.labels.zone == a not met, 2 max_replicas_per_node 1 reached"
    }


def test_parsed_once_and_equal_by_value() -> None:
    assert service(constraints=["node.id != n1"]).placement.parsed() == (Constraint("node.id", False, "n1"),)
