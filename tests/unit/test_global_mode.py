"""Global services (mode: global): one replica per ready matching node, each slot pinned to its node
(scheduler/global_mode.py through reconcile); the config rules that go with the mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.reconcile import reconcile
from shared.config import ServiceSpec
from shared.dispatch import Action
from shared.errors import Conflict
from shared.records import ServiceRecord, TaskRecord, TaskState
from shared.storage.requests import revise
from tests.unit.test_reconcile import NOW, POLICY, jobs, node, running


def daemon(**fields) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": "agent", "image": "img", "mode": "global", **fields})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0)


def pinned(svc: ServiceRecord, slot: int, node_id: str, **fields) -> TaskRecord:
    return running(svc, slot, node_id, pinned=node_id, **fields)


def starts(plan) -> dict[str, str]:
    return {j.task: j.node for j in jobs(plan) if j.action is Action.START}


def test_one_replica_on_every_ready_node_each_pinned_to_its_node():
    plan = reconcile({"agent": daemon()}, [], [node("n1"), node("n2"), node("n3")], NOW, POLICY)
    assert starts(plan) == {"agent.1": "n1", "agent.2": "n2", "agent.3": "n3"}
    assert {w.record.pinned for w in plan.writes if w.record} == {"n1", "n2", "n3"}


def test_a_node_that_joins_gets_one_and_the_others_stay():
    svc = daemon()
    tasks = [pinned(svc, 1, "n1"), pinned(svc, 3, "n3")]
    plan = reconcile({"agent": svc}, tasks, [node("n1"), node("n2"), node("n3")], NOW, POLICY)
    assert starts(plan) == {"agent.2": "n2"}  # the lowest free slot, on the new node
    assert [w.task for w in plan.writes] == ["agent.2"]


def test_a_drained_or_removed_nodes_replica_is_retired_and_a_down_nodes_waits_for_it():
    svc = daemon()
    tasks = [pinned(svc, 1, "n1"), pinned(svc, 2, "n2"), pinned(svc, 3, "n3")]
    nodes = [node("n1", availability="drain"), node("n2", heartbeat=NOW - 100)]  # n3 removed
    plan = reconcile({"agent": svc}, tasks, nodes, NOW, POLICY)
    retired = {w.task: w.record for w in plan.writes}
    assert retired["agent.1"] is not None and retired["agent.1"].state is TaskState.SHUTDOWN
    assert retired["agent.3"] is None  # its node is gone: nothing can stop it there, the record goes
    waiting = retired["agent.2"]
    assert waiting is not None and waiting.state is TaskState.PENDING and waiting.pinned == "n2"
    assert "node is down" in (waiting.reason or "")
    assert starts(plan) == {}  # never moved to another node


def test_only_the_nodes_its_constraints_allow_get_one():
    svc = daemon(placement={"constraints": ["node.labels.gpu == yes"]})
    nodes = [node("n1", labels={"gpu": "yes"}), node("n2")]
    assert starts(reconcile({"agent": svc}, [], nodes, NOW, POLICY)) == {"agent.1": "n1"}
    misplaced = reconcile({"agent": svc}, [pinned(svc, 1, "n2")], nodes, NOW, POLICY)
    assert starts(misplaced) == {"agent.2": "n1"}
    [stopped] = [w.record for w in misplaced.writes if w.task == "agent.1"]
    assert stopped is not None and stopped.state is TaskState.SHUTDOWN


def test_a_node_too_small_leaves_its_replica_pending_naming_that_node():
    svc = daemon(resources={"cpu_millicores": 3000, "memory_bytes": 16777216})
    plan = reconcile({"agent": svc}, [], [node("n1", cpu=4000), node("n2", cpu=2000)], NOW, POLICY)
    assert starts(plan) == {"agent.1": "n1"}
    [pending] = [w.record for w in plan.writes if w.task == "agent.2"]
    assert pending is not None and pending.state is TaskState.PENDING and pending.pinned == "n2"
    assert "n2: not enough cpu" in (pending.reason or "")


def test_a_global_service_takes_no_replicas_nor_autoscaling_and_never_changes_mode():
    with pytest.raises(ValidationError, match="replicas: not allowed with mode global"):
        daemon(replicas=3)
    with pytest.raises(ValidationError, match="scale_policy: not allowed with mode global"):
        daemon(scale_policy={"min_replicas": 1})
    assert daemon().spec.replicas is None and daemon().spec.count == 0
    replicated = ServiceSpec.model_validate({"service_name": "agent", "image": "img", "replicas": 1})
    with pytest.raises(Conflict, match="mode cannot change from global to replicated"):
        revise("agent", daemon(), replicated, NOW, True, None)


def test_the_status_counts_one_desired_replica_per_pinned_slot():
    svc = daemon()
    tasks = [pinned(svc, 1, "n1"), pinned(svc, 2, "n2", state=TaskState.SHUTDOWN)]
    assert svc.desired(tasks) == 1
