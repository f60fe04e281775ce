"""Rebalancing (scheduler/rebalance.py through reconcile, and its plan): moves from the nodes holding
most replicas to those holding fewest, one start-first move at a time, never below the desired count."""

from __future__ import annotations

import pytest

from scheduler.dry_run import plan_rebalance
from scheduler.rebalance import moves
from scheduler.reconcile import reconcile
from shared.dispatch import Action
from shared.errors import Conflict
from shared.records import NodeStatus, Rebalance, ServiceRecord
from shared.storage.requests import requested_rebalance
from tests.unit.test_dry_run import stored
from tests.unit.test_reconcile import NOW, POLICY, jobs, node, running, service
from tests.unit.test_rollout_controls import changed

NODES = [node("n1", cpu=8000), node("n2", cpu=8000), node("n3", cpu=8000)]
READY = dict.fromkeys(("n1", "n2", "n3"), NodeStatus.READY)


def asked(svc: ServiceRecord) -> ServiceRecord:
    return svc.model_copy(update={"rebalance": Rebalance(requested_at=NOW - 1)})


def test_moves_take_the_highest_slots_of_the_fullest_node_until_no_node_holds_two_more():
    svc = service(replicas=5)
    tasks = [running(svc, slot, "n1") for slot in (1, 2, 3, 4)] + [running(svc, 5, "n2")]
    assert [t.id for t in moves(svc, tasks, NODES, READY)] == ["web.4", "web.3"]  # to 2, 2, 1
    even = [running(svc, 1, "n1"), running(svc, 2, "n2"), running(svc, 3, "n3"), running(svc, 4, "n1")]
    assert moves(svc, even, NODES, READY) == []
    constrained = service(replicas=2, placement={"constraints": ["node.id != n3"]})
    assert moves(constrained, [running(constrained, 1, "n1"), running(constrained, 2, "n1")], NODES, READY) != []
    assert moves(constrained, [running(constrained, 1, "n1"), running(constrained, 2, "n2")], NODES, READY) == []


def test_a_rebalance_moves_one_replica_at_a_time_start_first_and_ends_once_even():
    svc = asked(service(replicas=3))
    tasks = [running(svc, slot, "n1") for slot in (1, 2, 3)]
    plan = reconcile({"web": svc}, tasks, NODES, NOW, POLICY)
    [write] = plan.writes
    assert write.task == "web.3" and write.record is not None and write.record.node in ("n2", "n3")
    assert write.record.previous is not None and write.record.previous.node == "n1"  # the old one serves meanwhile
    assert [j.action for j in jobs(plan)] == [Action.START]
    spread = [running(svc, 1, "n1"), running(svc, 2, "n2"), running(svc, 3, "n3")]
    [done] = reconcile({"web": svc}, spread, NODES, NOW, POLICY).services
    assert done.record.rebalance is not None and done.record.rebalance.finished_at == NOW
    assert done.record.rebalance.reason is None and [e.kind for e in done.events] == ["service_rebalanced"]


def test_a_move_that_fits_on_no_better_node_ends_the_rebalance_saying_why():
    svc = asked(service(replicas=2, resources={"cpu_millicores": 3000, "memory_bytes": 16777216}))
    tasks = [running(svc, 1, "n1", cpu_millicores=3000), running(svc, 2, "n1", cpu_millicores=3000)]
    small = [node("n1", cpu=8000), node("n2", cpu=1000)]
    [done] = reconcile({"web": svc}, tasks, small, NOW, POLICY).services
    assert done.record.rebalance is not None and "web.2 cannot be placed" in (done.record.rebalance.reason or "")


def test_the_plan_lists_every_move_and_where_the_first_goes():
    svc = service(replicas=4)
    tasks = [running(svc, slot, "n1") for slot in (1, 2, 3, 4)]
    planned = plan_rebalance("web", stored(svc), tasks, NODES, NOW, POLICY)
    assert planned.moves == ["web.4", "web.3"]
    [first] = planned.placed
    assert (first.task, first.from_node, first.start_first) == ("web.4", "n1", True) and first.node != "n1"


def test_a_rebalance_is_refused_for_a_global_service_and_during_an_update():
    with pytest.raises(Conflict, match="is global"):
        requested_rebalance("agent", ServiceRecord.model_validate(
            {"spec": {"service_name": "agent", "image": "i", "mode": "global"}, "created_at": 0, "updated_at": 0}
        ), NOW)
    with pytest.raises(Conflict, match="has a rolling update updating"):
        requested_rebalance("web", changed(service(replicas=2)), NOW)
    under_way = asked(service(replicas=2))
    assert requested_rebalance("web", under_way, NOW) is under_way
