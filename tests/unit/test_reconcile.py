"""Reconciliation without I/O: desired services vs actual tasks and nodes at a given time."""

from __future__ import annotations

from scheduler.backoff import Backoff
from scheduler.reconcile import Plan, Policy, reconcile
from shared.config import ServiceSpec
from shared.dispatch import Action, Job
from shared.records import NodeRecord, ServiceRecord, TaskRecord, TaskState, template_hash

NOW = 1000.0
POLICY = Policy(backoff=Backoff(base=1.0, cap=8.0, reset_after=60.0), assigned_timeout=30.0, heartbeat_misses=3)
GIB = 1024**3


def service(name: str = "web", replicas: int = 2, **fields) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "img", "replicas": replicas, **fields})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0)


def node(name: str, heartbeat: float = NOW, cpu: int = 2000, **fields) -> NodeRecord:
    return NodeRecord(
        id=name, address="127.0.0.2", cpu_millicores=cpu, memory_bytes=4 * GIB, last_heartbeat=heartbeat, **fields
    )


def running(svc: ServiceRecord, slot: int, node_id: str, gen: int = 1, **fields) -> TaskRecord:
    values = {
        "id": f"{svc.name}.{slot}",
        "service": svc.name,
        "slot": slot,
        "gen": gen,
        "rev": 3,
        "node": node_id,
        "state": TaskState.RUNNING,
        "template": svc.template_hash(),
        "started_at": NOW - 100,
        "updated_at": NOW - 100,
        **fields,
    }
    return TaskRecord.model_validate(values)


def plan_for(services: list[ServiceRecord], tasks: list[TaskRecord], nodes: list[NodeRecord]) -> Plan:
    return reconcile({s.name: s for s in services}, tasks, nodes, NOW, POLICY)


def jobs(plan: Plan) -> list[Job]:
    return [job for write in plan.writes for job in write.jobs]


def test_new_service_gets_one_start_per_replica_spread_over_nodes():
    plan = plan_for([service(replicas=3)], [], [node("n1"), node("n2")])
    assert sorted((j.task, j.action, j.gen) for j in jobs(plan)) == [
        ("web.1", Action.START, 1),
        ("web.2", Action.START, 1),
        ("web.3", Action.START, 1),
    ]
    assert sorted(j.node for j in jobs(plan)) == ["n1", "n1", "n2"]
    assert all(w.expected_rev == -1 and w.record and w.record.state is TaskState.ASSIGNED for w in plan.writes)
    assert {e.kind for w in plan.writes for e in w.events} == {"task_scheduled"}


def test_converged_cluster_gives_an_empty_plan():
    svc = service(replicas=2)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n2")]
    assert plan_for([svc], tasks, [node("n1"), node("n2")]).writes == []


def test_a_repeated_pass_over_assigned_tasks_enqueues_nothing_new():
    svc = service(replicas=1)
    assigned = running(svc, 1, "n1", state=TaskState.ASSIGNED, assigned_at=NOW - 1)
    assert plan_for([svc], [assigned], [node("n1")]).writes == []


def test_a_lost_start_job_is_sent_again_with_the_same_gen():
    svc = service(replicas=1)
    stuck = running(svc, 1, "n1", gen=4, state=TaskState.ASSIGNED, assigned_at=NOW - 31)
    plan = plan_for([svc], [stuck], [node("n1")])
    assert jobs(plan) == [Job("n1", Action.START, "web.1", 4)]


def test_scale_down_shuts_down_the_highest_slots():
    svc = service(replicas=1)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n2")]
    plan = plan_for([svc], tasks, [node("n1"), node("n2")])
    assert jobs(plan) == [Job("n2", Action.STOP, "web.2", 2)]
    assert plan.writes[0].record is not None and plan.writes[0].record.state is TaskState.SHUTDOWN


def test_deleted_service_stops_everything_then_is_forgotten():
    svc = service(replicas=2).model_copy(update={"deleting": True})
    plan = plan_for([svc], [running(svc, 1, "n1")], [node("n1")])
    assert jobs(plan) == [Job("n1", Action.STOP, "web.1", 2)]
    assert plan.forget == []
    assert plan_for([svc], [], [node("n1")]).forget == ["web"]


def test_tasks_on_a_down_node_are_rescheduled_and_the_dead_node_gets_no_job():
    svc = service(replicas=2)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n2")]
    plan = plan_for([svc], tasks, [node("n1"), node("n2", heartbeat=NOW - 10)])
    assert jobs(plan) == [Job("n1", Action.START, "web.2", 2)]
    assert plan.writes[0].events[0].kind == "task_rescheduled"


def test_draining_node_with_a_fixed_host_port_moves_replicas_stop_first():
    svc = service(replicas=1, ports=[{"host_port": 8080, "container_port": 80}])
    task = running(svc, 1, "n1", host_ports=["8080/tcp"])
    plan = plan_for([svc], [task], [node("n1", availability="drain"), node("n2")])
    assert sorted(jobs(plan), key=lambda j: j.node) == [
        Job("n1", Action.STOP, "web.1", 1),
        Job("n2", Action.START, "web.1", 2),
    ]


def test_replica_that_fits_nowhere_is_pending_with_reason_and_not_rewritten():
    svc = service(replicas=1, resources={"cpu_millicores": 5000, "memory_bytes": 16777216})
    plan = plan_for([svc], [], [node("n1", cpu=2000)])
    record = plan.writes[0].record
    assert record is not None and record.state is TaskState.PENDING and record.node is None
    assert record.reason == "n1: not enough cpu (needs 5000m, 2000m free)"
    assert jobs(plan) == []
    record.rev = 1
    assert plan_for([svc], [record], [node("n1", cpu=2000)]).writes == []
    bigger = plan_for([svc], [record], [node("n1", cpu=2000), node("n3", cpu=8000)])
    assert jobs(bigger) == [Job("n3", Action.START, "web.1", 2)]


def test_failed_task_restarts_by_policy_with_back_off():
    svc = service(replicas=1, restart_policy="always")
    crashed = running(svc, 1, "n1", state=TaskState.FAILED, started_at=NOW - 1, finished_at=NOW - 0.5, crash_streak=1)
    early = plan_for([svc], [crashed], [node("n1")])
    assert early.writes == [] and early.wake_at == NOW + 0.5
    due = running(
        svc, 1, "n1", state=TaskState.FAILED, started_at=NOW - 2, finished_at=NOW - 1.5, crash_streak=1, restarts=1
    )
    plan = plan_for([svc], [due], [node("n1")])
    assert jobs(plan) == [Job("n1", Action.START, "web.1", 2)]
    record = plan.writes[0].record
    assert record is not None and record.restarts == 2 and record.crash_streak == 2


def test_a_long_clean_run_starts_the_crash_streak_afresh():
    svc = service(replicas=1, restart_policy="always")
    # Crashed often long ago, then ran for longer than reset_after (60 s) before failing.
    veteran = running(
        svc, 1, "n1", state=TaskState.FAILED, started_at=NOW - 200, finished_at=NOW - 0.1, crash_streak=5, restarts=9
    )
    plan = plan_for([svc], [veteran], [node("n1")])
    record = plan.writes[0].record
    assert record is not None and record.restarts == 10
    # One restart into a new streak: a crash right after this one waits the base delay, not 2**5 x base.
    assert record.crash_streak == 1
    assert POLICY.backoff.delay(record.crash_streak) == 1.0


def test_restart_policy_no_leaves_the_failed_task():
    svc = service(replicas=1)
    failed = running(svc, 1, "n1", state=TaskState.FAILED, finished_at=NOW - 100, exit_code=1)
    assert plan_for([svc], [failed], [node("n1")]).writes == []


def test_changed_template_replaces_one_running_replica_at_a_time():
    old = service(replicas=2)
    new = service(replicas=2, command=["sleep", "1000"])
    assert template_hash(old.spec) != template_hash(new.spec)
    tasks = [running(old, 1, "n1"), running(old, 2, "n2")]
    plan = plan_for([new], tasks, [node("n1"), node("n2")])
    assert [(j.task, j.action) for j in jobs(plan)] == [("web.1", Action.START)]


def test_changing_replicas_alone_keeps_the_template():
    assert service(replicas=2).template_hash() == service(replicas=5).template_hash()


def test_orphan_task_without_service_is_removed():
    svc = service(replicas=1)
    plan = plan_for([], [running(svc, 1, "n1")], [node("n1")])
    assert jobs(plan) == [Job("n1", Action.STOP, "web.1", 2)]


def test_shutdown_task_on_a_down_node_is_forgotten():
    svc = service(replicas=0)
    gone = running(svc, 1, "n1", state=TaskState.SHUTDOWN)
    plan = plan_for([svc], [gone], [node("n1", heartbeat=NOW - 100)])
    assert [(w.task, w.record) for w in plan.writes] == [("web.1", None)]


def test_wake_at_covers_node_expiry():
    plan = plan_for([], [], [node("n1", heartbeat=NOW - 1)])
    assert plan.wake_at is not None and NOW < plan.wake_at <= NOW - 1 + 2 * 3 + 0.01
