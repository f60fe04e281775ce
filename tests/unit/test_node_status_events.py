"""The events the scheduler writes when a node's status changes (scheduler/loop.py `node_event`): its
health only, since a drain or an activation is announced once, by the API that made it."""

from __future__ import annotations

import pytest

from scheduler.loop import node_event
from shared.event_kinds import EventKind
from shared.records import NodeStatus

READY, NOT_READY, DRAINING, DOWN = NodeStatus.READY, NodeStatus.NOT_READY, NodeStatus.DRAINING, NodeStatus.DOWN


@pytest.mark.parametrize("status", list(NodeStatus))
def test_no_event_at_the_first_look_or_without_a_change(status: NodeStatus) -> None:
    assert node_event(None, status) is None
    assert node_event(status, status) is None


def test_a_drain_or_an_activation_is_the_apis_to_announce() -> None:
    assert node_event(READY, DRAINING) is None
    assert node_event(DRAINING, READY) is None
    kinds = {node_event(before, after) for before in NodeStatus for after in NodeStatus}
    assert EventKind.NODE_DRAINING not in kinds


def test_health_changes_are_announced() -> None:
    assert node_event(READY, DOWN) is EventKind.NODE_DOWN
    assert node_event(DRAINING, DOWN) is EventKind.NODE_DOWN
    assert node_event(READY, NOT_READY) is EventKind.NODE_NOT_READY
    assert node_event(DOWN, READY) is EventKind.NODE_READY
    assert node_event(DOWN, DRAINING) is EventKind.NODE_READY  # back, and still drained
    assert node_event(NOT_READY, DRAINING) is EventKind.NODE_READY
