"""A node's status from its heartbeat and its engine's health, and what reconciliation does with it."""

from __future__ import annotations

from scheduler.isolation import reconcile_isolated
from scheduler.reconcile import reconcile
from shared.records import EngineHealth, NodeStatus, TaskState
from tests.unit.test_reconcile import NOW, POLICY, node, plan_for, running, service

MISSES = 3  # with the 2 s heartbeat of these nodes: a 6 s window


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


# Redis was out of reach from NOW - 9 to NOW - 2 (nobody could beat): the control plane hears nodes
# again since NOW - 2, the leading scheduler's `heard_since`.
HEARD_SINCE = NOW - 2


def test_a_node_silent_across_a_redis_outage_is_down_only_a_window_after_redis_came_back() -> None:
    silent = node("n1", heartbeat=NOW - 10)  # its last beat before the outage
    assert silent.status(NOW, MISSES) is NodeStatus.DOWN  # by its heartbeats alone
    assert silent.status(NOW, MISSES, HEARD_SINCE) is NodeStatus.READY
    assert silent.reason(NOW, MISSES, HEARD_SINCE) is None
    assert silent.down_at(MISSES, HEARD_SINCE) == HEARD_SINCE + 6
    assert silent.status(HEARD_SINCE + 6, MISSES, HEARD_SINCE) is NodeStatus.READY
    assert silent.status(HEARD_SINCE + 6.1, MISSES, HEARD_SINCE) is NodeStatus.DOWN  # still silent: it is gone
    assert silent.reason(HEARD_SINCE + 6.1, MISSES, HEARD_SINCE) == "no heartbeat for 14.1s"


def test_a_node_silent_before_the_outage_and_after_is_down_on_time() -> None:
    heard_since = NOW - 30  # an outage long before its last beat changes nothing
    silent = node("n1", heartbeat=NOW - 7)
    assert silent.down_at(MISSES, heard_since) == NOW - 7 + 6
    assert silent.status(NOW, MISSES, heard_since) is NodeStatus.DOWN
    assert silent.reason(NOW, MISSES, heard_since) == "no heartbeat for 7.0s"
    beating = node("n1", heartbeat=NOW - 1)  # a node that beat since Redis came back counts from its beat
    assert beating.down_at(MISSES, HEARD_SINCE) == NOW - 1 + 6


def test_an_engine_error_reported_before_the_outage_counts_from_redis_coming_back() -> None:
    # Its agent could not report the engine's return while Redis was out.
    sick = node("n1", heartbeat=NOW - 10, engine_error="connection refused", engine_error_since=NOW - 10)
    assert sick.status(NOW, MISSES, HEARD_SINCE) is NodeStatus.NOT_READY
    assert sick.down_at(MISSES, HEARD_SINCE) == HEARD_SINCE + 6
    # Since before Redis came back, beating since: the engine's own window still ends it.
    beating = node("n1", heartbeat=NOW, engine_error="connection refused", engine_error_since=NOW - 10)
    assert beating.down_at(MISSES, HEARD_SINCE) == HEARD_SINCE + 6
    assert beating.status(HEARD_SINCE + 6.1, MISSES, HEARD_SINCE) is NodeStatus.DOWN


def test_a_new_leader_gives_every_node_the_window_from_its_takeover() -> None:
    # A scheduler that just took the lease cannot know whether Redis was out before: heard_since is
    # its takeover, so the replicas of a node silent for long stay until the window after it.
    took_over = NOW - 1
    web = service(replicas=2)
    tasks = [running(web, 1, "n1"), running(web, 2, "n2")]
    nodes = [node("n1", heartbeat=NOW - 60), node("n2")]
    kept = reconcile({web.name: web}, tasks, nodes, NOW, POLICY, heard_since=took_over)
    assert kept.writes == [] and kept.wake_at == took_over + 6 + 0.01  # the pass that finds n1 down
    later = reconcile({web.name: web}, tasks, nodes, took_over + 6.1, POLICY, heard_since=took_over)
    assert [(w.task, w.record.node if w.record else None) for w in later.writes] == [("web.1", "n2")]


def test_the_isolating_pass_passes_heard_since_on() -> None:
    web = service(replicas=1)
    plan, raised = reconcile_isolated(
        {web.name: web}, [running(web, 1, "n1")], [node("n1", heartbeat=NOW - 60), node("n2")], NOW, POLICY,
        heard_since=NOW - 1,
    )
    assert raised == {} and plan.writes == []
