"""Reconciliation without I/O: desired services vs actual tasks and nodes at a given time."""

from __future__ import annotations

from scheduler.backoff import Backoff
from scheduler.plan import Plan, Policy
from scheduler.reconcile import Kind, classify, reconcile
from shared.config import ServiceSpec
from shared.dispatch import Action, Decision
from shared.records import (
    Health,
    NodeRecord,
    NodeStatus,
    PreviousContainer,
    ServiceRecord,
    TaskRecord,
    TaskState,
    Unreadable,
    UpdateState,
    incarnation_at,
    template_hash,
)

NOW = 1000.0
HALF = {"cpu_millicores": 1000, "memory_bytes": 16777216}
POLICY = Policy(backoff=Backoff(base=1.0, cap=8.0, reset_after=60.0), assigned_timeout=30.0, heartbeat_misses=3)
GIB = 1024**3


def service(name: str = "web", replicas: int = 2, **fields) -> ServiceRecord:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "img", "replicas": replicas, **fields})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0)


def node(name: str, heartbeat: float = NOW, cpu: int = 2000, **fields) -> NodeRecord:
    """A node beating every 2 s: with POLICY's 3 misses, down after 6 s of silence."""
    return NodeRecord(
        id=name, address="127.0.0.2", cpu_millicores=cpu, memory_bytes=4 * GIB, last_heartbeat=heartbeat,
        heartbeat_interval=2.0, **fields,
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


def jobs(plan: Plan) -> list[Decision]:
    return [job for write in plan.writes for job in write.jobs]


def test_new_service_gets_one_start_per_replica_spread_over_nodes():
    plan = plan_for([service(replicas=3)], [], [node("n1"), node("n2")])
    assert sorted((j.task, j.action, j.gen) for j in jobs(plan)) == [
        ("web.1", Action.START, 1),
        ("web.2", Action.START, 1),
        ("web.3", Action.START, 1),
    ]
    assert sorted(j.node for j in jobs(plan)) == ["n1", "n1", "n2"]
    assert all(w.record and w.record.rev == -1 and w.record.state is TaskState.ASSIGNED for w in plan.writes)
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
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 4, "")]


def test_jobs_sent_to_a_redis_since_lost_are_sent_again_at_once():
    """A failover may lose the jobs the old master held: whatever was in flight when the scheduler last
    regained Redis (`heard_since`) is sent again without waiting for the timeout; later jobs are not."""
    svc = service(replicas=1)
    before = running(svc, 1, "n1", gen=4, state=TaskState.ASSIGNED, assigned_at=NOW - 2)
    plan = reconcile({svc.name: svc}, [before], [node("n1")], NOW, POLICY, heard_since=NOW - 1)
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 4, "")]
    assert plan.writes[0].record is not None and plan.writes[0].record.assigned_at == NOW
    after = running(svc, 1, "n1", gen=4, state=TaskState.ASSIGNED, assigned_at=NOW - 1)
    assert reconcile({svc.name: svc}, [after], [node("n1")], NOW, POLICY, heard_since=NOW - 1).writes == []
    stopping = running(service(replicas=0), 1, "n1", gen=5, state=TaskState.SHUTDOWN, updated_at=NOW - 2)
    plan = reconcile({svc.name: service(replicas=0)}, [stopping], [node("n1")], NOW, POLICY, heard_since=NOW - 1)
    assert jobs(plan) == [Decision("n1", Action.STOP, "web.1", 5, "")]


def test_a_users_stop_is_sent_by_the_scheduler_once_and_again_if_lost():
    """The API only marks the record (stop_requested); the scheduler sends the HALT to the node, notes
    when, and sends it again only when the task is still running after the timeout or a lost Redis."""
    svc = service(replicas=1)
    asked = running(svc, 1, "n1", gen=3, stop_requested=True)
    plan = plan_for([svc], [asked], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.HALT, "web.1", 3, "")]
    sent = plan.writes[0].record
    assert sent is not None and sent.halt_sent_at == NOW and sent.gen == 3 and sent.state is TaskState.RUNNING
    assert plan_for([svc], [sent.model_copy(update={"rev": 4})], [node("n1")]).writes == []
    stale = sent.model_copy(update={"rev": 4, "halt_sent_at": NOW - 31})
    assert jobs(plan_for([svc], [stale], [node("n1")])) == [Decision("n1", Action.HALT, "web.1", 3, "")]
    lost = reconcile({svc.name: svc}, [sent.model_copy(update={"halt_sent_at": NOW - 2})], [node("n1")], NOW,
                     POLICY, heard_since=NOW - 1)
    assert jobs(lost) == [Decision("n1", Action.HALT, "web.1", 3, "")]


def test_scale_down_shuts_down_the_highest_slots():
    svc = service(replicas=1)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n2")]
    plan = plan_for([svc], tasks, [node("n1"), node("n2")])
    assert jobs(plan) == [Decision("n2", Action.STOP, "web.2", 2, "")]
    assert plan.writes[0].record is not None and plan.writes[0].record.state is TaskState.SHUTDOWN


def test_deleted_service_stops_everything_then_is_forgotten():
    svc = service(replicas=2).model_copy(update={"deleting": True})
    plan = plan_for([svc], [running(svc, 1, "n1")], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.STOP, "web.1", 2, "")]
    assert plan.forget == []
    assert plan_for([svc], [], [node("n1")]).forget == ["web"]


def test_tasks_on_a_down_node_are_rescheduled_and_the_dead_node_gets_no_job():
    svc = service(replicas=2)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n2")]
    plan = plan_for([svc], tasks, [node("n1"), node("n2", heartbeat=NOW - 10)])
    assert jobs(plan) == [Decision("n1", Action.START, "web.2", 2, "")]
    assert plan.writes[0].events[0].kind == "task_rescheduled"


def test_draining_node_with_a_fixed_host_port_moves_replicas_stop_first():
    svc = service(replicas=1, ports=[{"host_port": 8080, "container_port": 80}])
    task = running(svc, 1, "n1", host_ports=["8080/tcp"])
    plan = plan_for([svc], [task], [node("n1", availability="drain"), node("n2")])
    assert sorted(jobs(plan), key=lambda j: j.node) == [
        Decision("n1", Action.STOP, "web.1", 1, ""),
        Decision("n2", Action.START, "web.1", 2, ""),
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
    assert jobs(bigger) == [Decision("n3", Action.START, "web.1", 2, record.incarnation)]


def test_failed_task_restarts_by_policy_with_back_off():
    svc = service(replicas=1, restart_policy="always")
    crashed = running(svc, 1, "n1", state=TaskState.FAILED, started_at=NOW - 1, finished_at=NOW - 0.5, crash_streak=1)
    early = plan_for([svc], [crashed], [node("n1")])
    assert early.writes == [] and early.wake_at == NOW + 0.5
    due = running(
        svc, 1, "n1", state=TaskState.FAILED, started_at=NOW - 2, finished_at=NOW - 1.5, crash_streak=1, restarts=1
    )
    plan = plan_for([svc], [due], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 2, "")]
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
    assert jobs(plan) == [Decision("n1", Action.STOP, "web.1", 2, "")]


def test_shutdown_task_on_a_down_node_is_forgotten():
    svc = service(replicas=0)
    gone = running(svc, 1, "n1", state=TaskState.SHUTDOWN)
    plan = plan_for([svc], [gone], [node("n1", heartbeat=NOW - 100)])
    assert [(w.task, w.record) for w in plan.writes] == [("web.1", None)]


def test_a_shutdown_task_whose_agent_removed_its_containers_is_dropped_and_one_not_yet_is_kept():
    svc = service(replicas=0)
    stopping = running(svc, 1, "n1", gen=2, state=TaskState.SHUTDOWN, updated_at=NOW)
    assert plan_for([svc], [stopping], [node("n1")]).writes == []  # its stop job is under way
    removed = stopping.model_copy(update={"removed": True})
    plan = plan_for([svc], [removed], [node("n1")])
    assert [(w.task, w.record, w.jobs) for w in plan.writes] == [("web.1", None, [])]


def test_wake_at_covers_node_expiry():
    plan = plan_for([], [], [node("n1", heartbeat=NOW - 1)])
    assert plan.wake_at is not None and NOW < plan.wake_at <= NOW - 1 + 2 * 3 + 0.01


# -- rolling updates, start-first, rollback ---------------------------------------------------

HTTP_CHECK = {"http_path": "/health", "port": 80, "interval": 1, "retries": 2}


def updating(old: ServiceRecord, at: float = NOW - 10, **changes) -> ServiceRecord:
    """`old` after a user's change of its spec `at` (a template change starts an update)."""
    spec = ServiceSpec.model_validate({**old.spec.model_dump(mode="json"), **changes})
    return old.with_spec(spec, at)


def test_a_template_change_starts_an_update_and_a_replica_change_does_not():
    old = service(replicas=2)
    new = updating(old, command=["sleep", "1000"])
    assert new.update is not None and new.update.state is UpdateState.UPDATING and new.update.version == 2
    assert new.previous_spec == old.spec
    scaled = updating(old, replicas=5)
    assert scaled.update is None and scaled.previous_spec is None
    # A change in the middle of an update keeps the last spec that was fully rolled out as the target.
    newer = updating(new, command=["sleep", "2000"])
    assert newer.previous_spec == old.spec and newer.update is not None and newer.update.version == 3


def test_update_without_fixed_host_ports_is_start_first_and_keeps_the_old_container():
    old = service(replicas=2)
    new = updating(old, command=["sleep", "1000"], health_check=HTTP_CHECK)
    tasks = [running(old, 1, "n1", container_id="c1"), running(old, 2, "n2", container_id="c2")]
    plan = plan_for([new], tasks, [node("n1"), node("n2")])
    assert [(j.task, j.action, j.gen) for j in jobs(plan)] == [("web.1", Action.START, 2)]
    record = plan.writes[0].record
    assert record is not None and record.state is TaskState.ASSIGNED and record.health is Health.STARTING
    assert record.previous is not None
    assert (record.previous.node, record.previous.gen, record.previous.container_id) == ("n1", 1, "c1")


def test_the_next_batch_waits_until_the_new_replica_is_healthy():
    old = service(replicas=2)
    new = updating(old, command=["sleep", "1000"], health_check=HTTP_CHECK)
    previous = PreviousContainer(node="n1", gen=1, container_id="c1")
    starting = running(new, 1, "n2", gen=2, health=Health.STARTING, previous=previous, assigned_at=NOW - 1)
    tasks = [starting, running(old, 2, "n2")]
    plan = plan_for([new], tasks, [node("n1"), node("n2")])
    assert plan.writes == [] and plan.services == []


def test_a_ready_replacement_releases_its_previous_container():
    old = service(replicas=2)
    new = updating(old, command=["sleep", "1000"], health_check=HTTP_CHECK)
    previous = PreviousContainer(node="n1", gen=1, container_id="c1")
    healthy = running(new, 1, "n2", gen=2, health=Health.HEALTHY, previous=previous, assigned_at=NOW - 1)
    plan = plan_for([new], [healthy, running(old, 2, "n2")], [node("n1"), node("n2")])
    # Only the release in this pass (one write per task); the next batch starts on the next pass.
    assert jobs(plan) == [Decision("n1", Action.STOP, "web.1", 1, "")]
    record = plan.writes[0].record
    assert record is not None and record.previous is None and record.gen == 2
    again = plan_for([new], [record, running(old, 2, "n2")], [node("n1"), node("n2")])
    assert [(j.task, j.action) for j in jobs(again)] == [("web.2", Action.START)]


def test_a_previous_container_on_a_down_node_is_forgotten_without_a_job():
    svc = service(replicas=1)
    previous = PreviousContainer(node="n1", gen=1)
    task = running(svc, 1, "n2", gen=2, state=TaskState.STARTING, previous=previous, assigned_at=NOW - 1)
    plan = plan_for([svc], [task], [node("n1", heartbeat=NOW - 100), node("n2")])
    assert jobs(plan) == []
    assert plan.writes[0].record is not None and plan.writes[0].record.previous is None


def test_update_with_a_fixed_host_port_is_stop_first():
    ports = [{"host_port": 8080, "container_port": 80}]
    old = service(replicas=1, ports=ports)
    new = updating(old, command=["sleep", "1000"])
    plan = plan_for([new], [running(old, 1, "n1", host_ports=["8080/tcp"])], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 2, "")]  # the start job removes the old gen first
    record = plan.writes[0].record
    assert record is not None and record.previous is None


def test_a_stop_first_batch_in_flight_blocks_the_next():
    ports = [{"host_port": 8080, "container_port": 80}]
    old = service(replicas=2, ports=ports)
    new = updating(old, command=["sleep", "1000"])
    fresh = running(new, 1, "n1", gen=2, state=TaskState.ASSIGNED, assigned_at=NOW - 1, host_ports=["8080/tcp"])
    plan = plan_for([new], [fresh, running(old, 2, "n2", host_ports=["8080/tcp"])], [node("n1"), node("n2")])
    assert plan.writes == []


def test_a_failed_new_replica_rolls_the_service_back():
    old = service(replicas=2)
    new = updating(old, command=["sh", "-c", "exit 1"])
    failed = running(new, 1, "n1", gen=2, state=TaskState.FAILED, reason="exited with code 1", assigned_at=NOW - 5)
    plan = plan_for([new], [failed, running(old, 2, "n2")], [node("n1"), node("n2")])
    assert plan.writes == []  # the service changes first; its tasks follow on the next pass
    [change] = plan.services
    scaled = updating(new, replicas=3)
    [rescaled] = plan_for([scaled], [failed, running(old, 2, "n2")], [node("n1"), node("n2")]).services
    assert rescaled.record.spec == old.spec.model_copy(update={"replicas": 3})  # the template only goes back
    assert change.expected == new
    rolled = change.record
    assert rolled.spec == old.spec and rolled.version == new.version + 1 and rolled.previous_spec == new.spec
    assert rolled.update is not None and rolled.update.state is UpdateState.ROLLED_BACK
    assert rolled.update.reason == "web.1 failed: exited with code 1"
    assert [e.kind for e in change.events] == ["service_rolled_back"]
    # Next pass: the failed replica is replaced from the old spec at once.
    after = plan_for([rolled], [failed, running(old, 2, "n2")], [node("n1"), node("n2")])
    assert [(j.task, j.action) for j in jobs(after)] == [("web.1", Action.START)]
    record = after.writes[0].record
    assert record is not None and record.template == old.template_hash() and after.services == []


def test_a_new_replica_not_ready_by_the_deadline_rolls_back():
    old = service(replicas=1)
    new = updating(old, at=NOW - 200, command=["sleep", "1000"], health_check=HTTP_CHECK)
    deadline = POLICY.update_deadline + 1 * (2 + 2)
    stuck = running(new, 1, "n1", gen=2, health=Health.STARTING, assigned_at=NOW - 5)
    early = plan_for([new], [stuck], [node("n1")])
    assert early.services == [] and early.wake_at is not None and early.wake_at <= NOW - 5 + deadline
    late = running(new, 1, "n1", gen=2, health=Health.STARTING, assigned_at=NOW - deadline - 1)
    [change] = plan_for([new], [late], [node("n1")]).services
    assert change.record.update is not None and change.record.update.state is UpdateState.ROLLED_BACK
    assert "not ready" in (change.record.update.reason or "")


def test_an_update_completes_when_every_slot_runs_the_new_template_and_is_ready():
    old = service(replicas=2)
    new = updating(old, command=["sleep", "1000"])
    tasks = [running(new, 1, "n1", gen=2, assigned_at=NOW - 5), running(new, 2, "n2", gen=2, assigned_at=NOW - 4)]
    [change] = plan_for([new], tasks, [node("n1"), node("n2")]).services
    assert change.record.update is not None and change.record.update.state is UpdateState.COMPLETED
    assert change.record.spec == new.spec and change.record.version == new.version
    assert [e.kind for e in change.events] == ["service_update_completed"]


def test_an_unhealthy_replica_is_replaced_whatever_the_restart_policy_with_back_off():
    svc = service(replicas=1, health_check=HTTP_CHECK)  # restart_policy "no"
    sick = running(
        svc, 1, "n1", state=TaskState.FAILED, health=Health.UNHEALTHY, reason="unhealthy: GET /health: HTTP 500",
        started_at=NOW - 3, finished_at=NOW - 0.5, crash_streak=1,
    )
    early = plan_for([svc], [sick], [node("n1")])
    assert early.writes == [] and early.wake_at == NOW + 0.5
    due = sick.model_copy(update={"finished_at": NOW - 2})
    plan = plan_for([svc], [due], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 2, "")]
    record = plan.writes[0].record
    assert record is not None and record.restarts == 1 and record.health is Health.STARTING
    assert plan.writes[0].events[0].kind == "task_restarted"


def test_draining_node_moves_replicas_start_first_one_at_a_time():
    svc = service(replicas=2)
    tasks = [running(svc, 1, "n1"), running(svc, 2, "n1")]
    plan = plan_for([svc], tasks, [node("n1", availability="drain"), node("n2")])
    assert jobs(plan) == [Decision("n2", Action.START, "web.1", 2, "")]  # no STOP: the old one serves meanwhile
    record = plan.writes[0].record
    assert record is not None and record.previous is not None and record.previous.node == "n1"


def test_a_start_first_move_that_fits_nowhere_leaves_the_replica_running():
    svc = service(replicas=1)
    plan = plan_for([svc], [running(svc, 1, "n1")], [node("n1", availability="drain")])
    assert plan.writes == []


def test_a_previous_container_holds_its_node_for_placement():
    svc = service(replicas=2, resources={"cpu_millicores": 600, "memory_bytes": 16777216})
    previous = PreviousContainer(node="n2", gen=1, cpu_millicores=600, memory_bytes=16777216)
    moved = running(svc, 1, "n1", gen=2, state=TaskState.STARTING, previous=previous, assigned_at=NOW - 1,
                    cpu_millicores=600, memory_bytes=16777216)
    plan = plan_for([svc], [moved], [node("n1", cpu=1000), node("n2", cpu=1000)])
    [record] = [w.record for w in plan.writes if w.task == "web.2"]
    assert record is not None and record.state is TaskState.PENDING  # n1 holds 600 of 1000, n2 the previous 600


def test_scaling_down_a_slot_with_a_previous_container_stops_both():
    svc = service(replicas=0)
    previous = PreviousContainer(node="n2", gen=1)
    task = running(svc, 1, "n1", gen=2, state=TaskState.STARTING, previous=previous, assigned_at=NOW - 1)
    plan = plan_for([svc], [task], [node("n1"), node("n2")])
    assert sorted(jobs(plan), key=lambda j: j.node) == [
        Decision("n1", Action.STOP, "web.1", 3, ""),
        Decision("n2", Action.STOP, "web.1", 1, ""),
    ]


def test_an_update_with_no_room_for_both_containers_is_stop_first_on_the_same_node():
    resources = {"cpu_millicores": 600, "memory_bytes": 16777216}
    old = service(replicas=1, resources=resources)
    new = updating(old, command=["sleep", "1000"])
    task = running(old, 1, "n1", cpu_millicores=600, memory_bytes=16777216)
    plan = plan_for([new], [task], [node("n1", cpu=1000)])
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 2, "")]
    record = plan.writes[0].record
    assert record is not None and record.previous is None and record.state is TaskState.ASSIGNED


# -- incarnations: which record of a slot a decision is about ----------------------------------


def test_a_fresh_slot_record_gets_an_incarnation_from_now_and_its_jobs_carry_it():
    plan = plan_for([service(replicas=1)], [], [node("n1")])
    (write,) = plan.writes
    assert write.record is not None and write.record.incarnation == incarnation_at(NOW)
    assert jobs(plan) == [Decision("n1", Action.START, "web.1", 1, incarnation_at(NOW))]
    assert incarnation_at(NOW + 0.000001) != incarnation_at(NOW)  # a slot made again a pass later


def test_decisions_about_a_record_name_its_incarnation():
    svc = service(replicas=1).model_copy(update={"deleting": True})
    plan = plan_for([svc], [running(svc, 1, "n1", incarnation="a1")], [node("n1")])
    assert jobs(plan) == [Decision("n1", Action.STOP, "web.1", 2, "a1")]


# -- what the scheduler cannot handle ----------------------------------------------------------


def unreadable(key: str, body: str = '{"id": "x", "rev":4, garbage', error: str = "invalid JSON") -> Unreadable:
    return Unreadable(key, error, body)


def test_a_frozen_service_is_left_as_it_is_and_its_replicas_still_hold_their_node():
    frozen, other = service("frozen", replicas=3), service("other", replicas=1, resources=HALF)
    held = [running(frozen, slot, "n1", cpu_millicores=1000) for slot in (1, 2)]
    tasks = [*held, running(frozen, 9, "n2")]  # a slot beyond its replicas, on a node that is down
    plan = reconcile(
        {"frozen": frozen, "other": other}, tasks, [node("n1"), node("n2", heartbeat=0.0)], NOW, POLICY,
        frozen={"frozen"},
    )
    assert all(write.task.startswith("other.") for write in plan.writes)
    (write,) = plan.writes
    assert write.record is not None and write.record.state is TaskState.PENDING  # n1 is full with frozen's two


def test_the_tasks_of_a_service_whose_record_cannot_be_read_are_not_stopped():
    svc = service(replicas=1)
    plan = reconcile({}, [running(svc, 1, "n1")], [node("n1")], NOW, POLICY, frozen={"web"})
    assert plan.writes == []


def test_an_unreadable_record_of_a_wanted_slot_is_replaced_by_a_failed_one_then_placed():
    svc = service(replicas=2)
    plan = reconcile({"web": svc}, [], [node("n1")], NOW, POLICY, unreadable=[unreadable("web.1")])
    replaced = next(write for write in plan.writes if write.task == "web.1")
    assert replaced.jobs == []
    record = replaced.record
    assert record is not None and record.state is TaskState.FAILED and record.node is None
    assert record.reason == "unreadable record replaced: invalid JSON"
    assert record.incarnation == incarnation_at(NOW)
    assert [event.kind for event in replaced.events] == ["task_unreadable"]
    assert [write.task for write in plan.writes] == ["web.1", "web.2"]  # web.2 is placed meanwhile

    record.rev = 5
    later = plan_for([svc], [record, running(svc, 2, "n1")], [node("n1")])
    assert [(job.task, job.gen, job.incarnation) for job in jobs(later)] == [("web.1", 1, incarnation_at(NOW))]


def test_an_unreadable_task_record_nobody_wants_is_deleted():
    svc = service(replicas=1)
    broken = [unreadable("web.2"), unreadable("gone.1"), unreadable("junk", body="\ufffd")]
    plan = reconcile({"web": svc}, [running(svc, 1, "n1")], [node("n1")], NOW, POLICY, unreadable=broken)
    assert [(write.task, write.record) for write in plan.writes] == [("web.2", None), ("gone.1", None), ("junk", None)]
    assert all(write.events[0].kind == "task_unreadable" for write in plan.writes)


def test_a_deleted_service_is_forgotten_only_once_its_unreadable_task_is_gone():
    svc = service(replicas=1).model_copy(update={"deleting": True})
    plan = reconcile({"web": svc}, [], [node("n1")], NOW, POLICY, unreadable=[unreadable("web.1")])
    assert plan.forget == [] and [(write.task, write.record) for write in plan.writes] == [("web.1", None)]


def test_an_unreadable_task_of_a_frozen_service_is_left_alone():
    plan = reconcile({}, [], [node("n1")], NOW, POLICY, frozen={"web"}, unreadable=[unreadable("web.1")])
    assert plan.writes == []



def test_each_wanted_task_is_classified_into_one_set_first():
    svc = service()
    template = svc.template_hash()
    status = {"up": NodeStatus.READY, "drained": NodeStatus.DRAINING, "gone": NodeStatus.DOWN}
    cases = [
        (running(svc, 1, "up"), None),
        (running(svc, 1, "up", state=TaskState.SHUTDOWN), Kind.SHUTTING_DOWN),
        (running(svc, 1, "up", state=TaskState.PENDING, node=None), Kind.UNPLACED),
        (running(svc, 1, "drained"), Kind.DRAINING),
        (running(svc, 1, "gone", state=TaskState.STARTING), Kind.LOST),
        (running(svc, 1, "up", stop_requested=True), Kind.HALTING),
        (running(svc, 1, "gone", state=TaskState.FAILED), Kind.FINISHED),  # nothing runs to move
        (running(svc, 1, "up", template="old"), Kind.OUTDATED),
        (running(svc, 1, "up", state=TaskState.ASSIGNED), Kind.IN_FLIGHT),
    ]
    assert [classify(task, template, status) for task, _ in cases] == [kind for _, kind in cases]


def test_replicas_are_placed_only_where_the_constraints_allow():
    svc = service(replicas=2, placement={"constraints": ["node.labels.zone == a"]})
    nodes = [node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"}), node("n3")]
    assert sorted(j.node for j in jobs(plan_for([svc], [], nodes))) == ["n1", "n1"]
    spread = service(replicas=3, placement={"constraints": ["node.id != n3"], "max_replicas_per_node": 1})
    plan = plan_for([spread], [], nodes)
    assert sorted(j.node for j in jobs(plan)) == ["n1", "n2"]
    [pending] = [w.record for w in plan.writes if w.record is not None and w.record.state is TaskState.PENDING]
    assert pending.reason == "n1: max_replicas_per_node 1 reached; n2: max_replicas_per_node 1 reached; " \
        "n3: constraint node.id != n3 not met"


def test_a_replica_on_a_node_its_constraints_no_longer_allow_moves_start_first():
    """An agent restarted with other labels: its replicas move as from a drain (Swarm's constraint
    enforcer), the old container serving until the new one is ready; with nowhere to go, it stays."""
    svc = service(replicas=1, placement={"constraints": ["node.labels.zone == a"]})
    task = running(svc, 1, "n1")
    relabelled = [node("n1", labels={"zone": "b"}), node("n2", labels={"zone": "a"})]
    assert classify(task, svc.template_hash(), {"n1": NodeStatus.READY}, {"n2"}) is Kind.MISPLACED
    plan = plan_for([svc], [task], relabelled)
    assert jobs(plan) == [Decision("n2", Action.START, "web.1", 2, "")]
    record = plan.writes[0].record
    assert record is not None and record.previous is not None and record.previous.node == "n1"
    assert {e.kind for w in plan.writes for e in w.events} == {"task_rescheduled"}
    assert plan_for([svc], [task], [node("n1", labels={"zone": "b"})]).writes == []
    assert plan_for([svc], [task], [node("n1", labels={"zone": "a"})]).writes == []
