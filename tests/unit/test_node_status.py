"""A node's status from its heartbeat and its engine's health, and what reconciliation does with it."""

from __future__ import annotations

from shared.records import EngineHealth, NodeStatus, TaskState
from tests.unit.test_reconcile import NOW, node, plan_for, running, service

MISSES = 3  # with the default 2 s heartbeat: a 6 s window


def test_engine_health_remembers_since_when_the_engine_does_not_answer() -> None:
    health = EngineHealth().observe("connection refused", 10.0)
    assert health == EngineHealth("connection refused", 10.0)
    assert health.observe("timed out", 12.0) == EngineHealth("timed out", 10.0)  # still since the first miss
    assert health.observe(None, 14.0) == EngineHealth()
    assert len(EngineHealth().observe("x" * 10_000, 1.0).error or "") == 500


def test_a_node_whose_engine_does_not_answer_is_not_ready_then_down_after_the_window() -> None:
    sick = node("n1", engine_error="connection refused", engine_error_since=NOW - 1)
    assert sick.status(NOW, MISSES) is NodeStatus.NOT_READY
    assert sick.reason(NOW, MISSES) == "engine unreachable: connection refused"
    assert sick.down_at(MISSES) == NOW - 1 + 6
    assert sick.status(NOW + 4.5, MISSES) is NodeStatus.NOT_READY  # 5.5 s without its engine, still beating
    gone = node("n1", engine_error="connection refused", engine_error_since=NOW - 7)
    assert gone.status(NOW, MISSES) is NodeStatus.DOWN
    assert gone.reason(NOW, MISSES) == "engine unreachable: connection refused"


def test_a_node_without_heartbeat_is_down_with_the_reason() -> None:
    silent = node("n1", heartbeat=NOW - 7)
    assert silent.status(NOW, MISSES) is NodeStatus.DOWN
    assert silent.reason(NOW, MISSES) == "no heartbeat for 7.0s"
    assert node("n1").reason(NOW, MISSES) is None
    assert node("n1", availability="drain").status(NOW, MISSES) is NodeStatus.DRAINING


def test_replicas_stay_on_a_not_ready_node_and_no_new_one_goes_there() -> None:
    web = service(replicas=3)
    sick = node("n1", engine_error="connection refused", engine_error_since=NOW - 1)
    tasks = [running(web, 1, "n1"), running(web, 2, "n2")]
    plan = plan_for([web], tasks, [sick, node("n2")])
    moved = {w.task: w.record.node for w in plan.writes if w.record is not None}
    assert moved == {"web.3": "n2"}  # web.1 stays on n1 for now; the new replica avoids it
    assert plan.wake_at == NOW - 1 + 6 + 0.01  # the pass that finds n1 down and moves web.1


def test_replicas_move_once_the_engine_has_been_gone_the_whole_window() -> None:
    web = service(replicas=2)
    gone = node("n1", engine_error="connection refused", engine_error_since=NOW - 7)
    plan = plan_for([web], [running(web, 1, "n1"), running(web, 2, "n2")], [gone, node("n2")])
    [write] = [w for w in plan.writes if w.task == "web.1"]
    assert write.record is not None and write.record.node == "n2" and write.record.state is TaskState.ASSIGNED
