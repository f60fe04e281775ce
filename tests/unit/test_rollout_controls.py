"""A rolling update by its service's update_config (scheduler/rollout.py): batches, the wait between
them, monitor, order, and each failure_action; an update that cannot place its next replica fails."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.reconcile import reconcile
from scheduler.rollout import update_deadline
from shared.config import ServiceSpec
from shared.dispatch import Action
from shared.records import Health, ServiceRecord, TaskRecord, TaskState, UpdateState
from tests.unit.test_reconcile import NOW, POLICY, jobs, node, plan_for, running, service

NODES = [node("n1", cpu=8000), node("n2", cpu=8000)]


def changed(old: ServiceRecord, at: float = NOW - 10, **update_config) -> ServiceRecord:
    """`old` with a new command (a rolling update started `at`) and these rollout controls."""
    fields = {**old.spec.model_dump(mode="json"), "command": ["sleep", "1000"]}
    if update_config:
        fields["update_config"] = update_config
    return old.with_spec(ServiceSpec.model_validate(fields), at)


def fresh(svc: ServiceRecord, slot: int, *, assigned: float, started: float | None = None, **fields) -> TaskRecord:
    """A replica of the update: its template, assigned at `assigned` (running since `started`)."""
    values = {
        "gen": 2, "assigned_at": assigned, "started_at": started if started is not None else assigned,
        "updated_at": assigned,
    }
    return running(svc, slot, "n1", **{**values, **fields})


def started_slots(plan) -> list[str]:
    return sorted(j.task for j in jobs(plan) if j.action is Action.START)


def test_parallelism_replaces_that_many_at_once_and_zero_replaces_all():
    old = service(replicas=5)
    tasks = [running(old, slot, "n1") for slot in range(1, 6)]
    assert started_slots(plan_for([changed(old, parallelism=2)], tasks, NODES)) == ["web.1", "web.2"]
    assert len(started_slots(plan_for([changed(old, parallelism=0)], tasks, NODES))) == 5
    assert started_slots(plan_for([changed(old)], tasks, NODES)) == ["web.1"]  # the default: one


def test_a_batch_in_flight_leaves_room_for_the_rest_of_the_parallelism_only():
    old = service(replicas=4)
    new = changed(old, parallelism=2)
    tasks = [fresh(new, 1, assigned=NOW - 1, state=TaskState.STARTING), *(running(old, s, "n2") for s in (2, 3, 4))]
    assert started_slots(plan_for([new], tasks, NODES)) == ["web.2"]


def test_delay_waits_between_batches_from_when_the_previous_one_was_done():
    old = service(replicas=2)
    new = changed(old, at=NOW - 60, delay=30)
    tasks = [fresh(new, 1, assigned=NOW - 50), running(old, 2, "n2")]
    then = NOW - 31
    first = reconcile({"web": new}, tasks, [node("n1", heartbeat=then), node("n2", heartbeat=then)], then, POLICY)
    [wait] = first.services
    assert first.writes == [] and wait.record.update is not None and wait.record.update.next_batch_at == NOW - 1
    early = wait.record.model_copy(update={"update": wait.record.update.model_copy(update={"next_batch_at": NOW + 3})})
    held = plan_for([early], tasks, NODES)
    assert held.writes == [] and held.services == [] and held.wake_at == NOW + 3
    assert started_slots(plan_for([wait.record], tasks, NODES)) == ["web.2"]


def test_the_first_batch_does_not_wait():
    old = service(replicas=2)
    assert started_slots(plan_for([changed(old, delay=30)], [running(old, 1, "n1"), running(old, 2, "n2")], NODES)) \
        == ["web.1"]


def test_monitor_counts_a_replica_updated_only_after_it_ran_that_long():
    old = service(replicas=1)
    new = changed(old, monitor=20)
    young = fresh(new, 1, assigned=NOW - 6, started=NOW - 5)
    plan = plan_for([new], [young], NODES)
    assert plan.services == [] and plan.wake_at is not None and plan.wake_at <= NOW + 15
    settled = fresh(new, 1, assigned=NOW - 21, started=NOW - 20)
    [done] = plan_for([new], [settled], NODES).services
    assert done.record.update is not None and done.record.update.state is UpdateState.COMPLETED


def test_a_replica_failing_within_the_monitor_fails_the_update():
    old = service(replicas=2)
    new = changed(old, monitor=20)
    failed = fresh(new, 1, assigned=NOW - 6, state=TaskState.FAILED, reason="exited with code 1")
    [change] = plan_for([new], [failed, running(old, 2, "n2")], NODES).services
    assert change.record.update is not None and change.record.update.state is UpdateState.ROLLED_BACK


def test_the_deadline_includes_the_monitor():
    old = service(replicas=1)
    assert update_deadline(changed(old, monitor=20), POLICY) == POLICY.update_deadline + 20


def test_failure_action_pause_stops_replacing_until_resumed():
    old = service(replicas=3)
    new = changed(old, failure_action="pause")
    failed = fresh(new, 1, assigned=NOW - 5, state=TaskState.FAILED, reason="exited with code 1")
    tasks = [failed, running(old, 2, "n2"), running(old, 3, "n2")]
    [change] = plan_for([new], tasks, NODES).services
    paused = change.record
    assert paused.update is not None and paused.update.state is UpdateState.PAUSED
    assert paused.update.reason == "web.1 failed: exited with code 1" and paused.spec == new.spec
    assert [e.kind for e in change.events] == ["service_update_paused"]
    after = plan_for([paused], tasks, NODES)
    assert after.services == [] and "web.2" not in started_slots(after) and "web.3" not in started_slots(after)


def test_failure_action_continue_goes_on_and_completes_naming_the_failures():
    old = service(replicas=2)
    new = changed(old, failure_action="continue")
    failed = fresh(new, 1, assigned=NOW - 5, state=TaskState.FAILED, reason="exited with code 1")
    plan = plan_for([new], [failed, running(old, 2, "n2")], NODES)
    assert plan.services == [] and started_slots(plan) == ["web.2"]
    done = fresh(new, 2, assigned=NOW - 2)
    [change] = plan_for([new], [failed, done], NODES).services
    assert change.record.update is not None and change.record.update.state is UpdateState.COMPLETED
    assert change.record.update.reason == "1 replica(s) failed: web.1 failed: exited with code 1"


def test_rollback_keeps_the_rollout_controls():
    old = service(replicas=2)
    new = changed(old, parallelism=2)
    failed = fresh(new, 1, assigned=NOW - 5, state=TaskState.FAILED, reason="exited with code 1")
    [change] = plan_for([new], [failed, fresh(new, 2, assigned=NOW - 5)], NODES).services
    rolled = change.record
    assert rolled.spec.template() == old.spec.template() and rolled.spec.update_config == new.spec.update_config
    assert started_slots(plan_for([rolled], [failed, fresh(new, 2, assigned=NOW - 5)], NODES)) == ["web.1", "web.2"]


def test_order_stop_first_stops_the_old_container_first_without_a_host_port():
    old = service(replicas=1)
    plan = plan_for([changed(old, order="stop-first")], [running(old, 1, "n1")], NODES)
    [write] = plan.writes
    assert write.record is not None and write.record.previous is None and started_slots(plan) == ["web.1"]


def test_start_first_with_a_fixed_host_port_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="update_config.order: start-first cannot be used with a fixed host_port"):
        ServiceSpec.model_validate({
            "service_name": "web", "image": "img", "replicas": 1,
            "ports": [{"host_port": 8080, "container_port": 80}], "update_config": {"order": "start-first"},
        })


def test_rollout_controls_are_not_part_of_the_template():
    old = service(replicas=1)
    spec = ServiceSpec.model_validate({**old.spec.model_dump(mode="json"), "update_config": {"parallelism": 3}})
    assert old.with_spec(spec, NOW).update is None


def test_an_update_whose_next_replica_fits_nowhere_fails_after_the_deadline_naming_it():
    # start-first: no room beside the old container, and its own node cannot take the new one either
    old = service(replicas=1, resources={"cpu_millicores": 600, "memory_bytes": 16777216})
    big = ServiceSpec.model_validate({
        **old.spec.model_dump(mode="json"), "resources": {"cpu_millicores": 1500, "memory_bytes": 16777216},
    })
    task = running(old, 1, "n1", cpu_millicores=600, memory_bytes=16777216)
    nodes = [node("n1", cpu=1000)]
    early = plan_for([old.with_spec(big, NOW - 5)], [task], nodes)
    assert early.writes == [] and early.services == [] and early.wake_at is not None
    late = old.with_spec(big, NOW - update_deadline(old, POLICY) - 1)
    [change] = plan_for([late], [task], nodes).services
    assert change.record.update is not None and change.record.update.state is UpdateState.ROLLED_BACK
    assert (change.record.update.reason or "").startswith("web.1 cannot be placed: ")
    assert "cpu" in (change.record.update.reason or "")


def test_a_stop_first_update_never_stops_more_than_its_batch_while_one_waits_for_a_node():
    ports = [{"host_port": 8080, "container_port": 80}]
    old = service(replicas=2, ports=ports, resources={"cpu_millicores": 600, "memory_bytes": 16777216})
    new = changed(old, at=NOW - 10)
    big = ServiceSpec.model_validate({**new.spec.model_dump(mode="json"),
                                      "resources": {"cpu_millicores": 1500, "memory_bytes": 16777216}})
    new = old.with_spec(big, NOW - 10)
    tasks = [running(old, s, f"n{s}", host_ports=["8080/tcp"], cpu_millicores=600, memory_bytes=16777216)
             for s in (1, 2)]
    nodes = [node("n1", cpu=1000), node("n2", cpu=1000)]
    first = plan_for([new], tasks, nodes)
    [stopped] = [w.record for w in first.writes]
    assert stopped is not None and stopped.state is TaskState.PENDING and stopped.template == new.template_hash()
    second = plan_for([new], [stopped, tasks[1]], nodes)
    assert all(w.task != "web.2" for w in second.writes)  # the batch waits for its node; web.2 keeps serving


def test_a_replica_pending_since_before_the_update_does_not_hold_its_first_batch():
    old = service(replicas=2)
    new = changed(old)
    waiting = running(old, 2, "n1", state=TaskState.PENDING, node=None, reason="no node fits")
    assert "web.1" in started_slots(plan_for([new], [running(old, 1, "n1"), waiting], NODES))


def test_continue_gives_up_on_a_replica_not_ready_in_time():
    old = service(replicas=2)
    new = changed(old, failure_action="continue")
    stuck = fresh(new, 1, assigned=NOW - update_deadline(new, POLICY) - 1, health=Health.STARTING,
                  state=TaskState.STARTING, updated_at=NOW - 1)
    assert started_slots(plan_for([new], [stuck, running(old, 2, "n2")], NODES)) == ["web.2"]


def test_outside_an_update_a_pending_replica_does_not_hold_a_drain():
    svc = service(replicas=2)
    lost = running(svc, 1, "n1", gen=2, state=TaskState.PENDING, node=None, reason="no node fits")
    plan = plan_for([svc], [lost, running(svc, 2, "n1")], [node("n1", availability="drain"), node("n2")])
    assert "web.2" in started_slots(plan)
