"""Following a rolling update by its service's `update_config`: how many replicas a pass may replace,
when the update has completed, and what a failure does (roll back, pause, or carry on). Pure.

A replica of the update (the new template, assigned since the update started) counts as updated once
it is ready and has run for `monitor` seconds. It fails the update when it exits or fails before the
update completes, or is not updated within the deadline (`update_deadline`). An update that cannot
place its next replica for that long fails too, naming the replica and why it fits nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.plan import Event, Plan, Policy, ServiceWrite
from shared.config import FailureAction
from shared.event_kinds import EventKind
from shared.records import ACTIVE_STATES, TERMINAL_STATES, ServiceRecord, TaskRecord, TaskState, UpdateState

DRAIN_PARALLELISM = 1  # replicas moved start-first off a draining node at once, outside any update


@dataclass(frozen=True)
class Rollout:
    """What a pass may do with a service's replicas while they are replaced."""

    written: bool  # the service record changes in this pass: its tasks wait for the next
    room: int = DRAIN_PARALLELISM  # replicas that may start being replaced (an update's batch, a drain)
    paused: bool = False  # running replicas of an older template stay as they are


def update_deadline(service: ServiceRecord, policy: Policy) -> float:
    """Seconds a replica of a rolling update may take from assignment to updated before the update
    fails: the start grace, plus interval x (retries + 2) for its health checks to decide, plus the
    monitor."""
    check = service.spec.health_check
    checks = check.interval * (check.retries + 2) if check is not None else 0
    return policy.update_deadline + checks + service.spec.update_controls().monitor


def updated(task: TaskRecord, service: ServiceRecord, now: float) -> bool:
    """Ready on the service's template, and running for at least the update's monitor."""
    if task.template != service.template_hash() or not task.ready():
        return False
    monitor = service.spec.update_controls().monitor
    return monitor == 0 or (task.started_at is not None and now - task.started_at >= monitor)


def follow_update(service: ServiceRecord, tasks: list[TaskRecord], now: float, policy: Policy, plan: Plan) -> Rollout:
    """Follow the service's rolling update in this pass: complete it, fail it by its failure_action,
    start the wait between batches, or say how many replicas may be replaced now."""
    update = service.update
    controls = service.spec.update_controls()
    if update is None or update.state in (UpdateState.COMPLETED, UpdateState.ROLLED_BACK) and not _outdated(
        service, tasks
    ):
        return Rollout(False, room=max(DRAIN_PARALLELISM - _in_flight(service, tasks, now, policy), 0))
    if update.state is UpdateState.UPDATING:
        failures = list(_failures(service, tasks, now, policy, plan))
        if failures and controls.failure_action is not FailureAction.CONTINUE:
            fail(service, failures[0], now, plan)
            return Rollout(True)
        if _complete(service, tasks, now, policy):
            _finish(service, len(_slots(service, tasks)), failures, now, plan)
            return Rollout(True)
    parallelism = controls.parallelism or len(_slots(service, tasks))  # 0: all at once
    room = max(parallelism - _in_flight(service, tasks, now, policy), 0)
    if update.state is UpdateState.PAUSED:
        return Rollout(False, room=room, paused=True)
    if room and controls.delay and _outdated(service, tasks):
        last = max((t.assigned_at or 0.0 for t in _of_update(service, tasks)), default=None)
        if last is not None and room == parallelism:  # the previous batch is done: wait before the next
            if update.next_batch_at is None or update.next_batch_at - controls.delay < last:
                waiting = update.model_copy(update={"next_batch_at": now + controls.delay})
                plan.services.append(ServiceWrite(service, service.model_copy(update={"update": waiting})))
                return Rollout(True)
            if now < update.next_batch_at:
                plan.wake(update.next_batch_at)
                return Rollout(False, room=0)
    return Rollout(False, room=room)


def stalled(
    service: ServiceRecord, tasks: list[TaskRecord], reason: str, now: float, policy: Policy, plan: Plan
) -> None:
    """A replica the update must place fits nowhere (`reason`): once the update has placed nothing for
    its deadline, that fails it (failure_action continue: it waits on)."""
    update = service.update
    if update is None or update.state is not UpdateState.UPDATING:
        return
    if service.spec.update_controls().failure_action is FailureAction.CONTINUE:
        return
    placed = (task.assigned_at or 0.0 for task in _of_update(service, tasks))
    progress = max([update.started_at, update.next_batch_at or 0.0, *placed])
    deadline = progress + update_deadline(service, policy)
    if now >= deadline:
        fail(service, reason, now, plan)
    else:
        plan.wake(deadline)


def fail(service: ServiceRecord, reason: str, now: float, plan: Plan) -> None:
    """The update failed: roll back to the previous spec, or pause, as its failure_action says."""
    update = service.update
    assert update is not None
    name = service.name
    action = service.spec.update_controls().failure_action
    if action is FailureAction.PAUSE or service.previous_spec is None:
        paused = service.model_copy(
            update={"update": update.model_copy(update={"state": UpdateState.PAUSED, "reason": reason})}
        )
        event = Event(
            EventKind.SERVICE_UPDATE_PAUSED,
            f"service {name}: rolling update to version {service.version} paused: {reason}",
            {"service": name, "reason": reason, "version": service.version},
        )
        plan.services.append(ServiceWrite(service, paused, [event]))
        return
    # The template goes back; the replica count (perhaps scaled meanwhile) and the rollout controls stay.
    restored = service.previous_spec.model_copy(
        update={
            "replicas": service.spec.replicas,
            "scale_policy": service.spec.scale_policy,
            "update_config": service.spec.update_config,
        }
    )
    rolled_back = service.model_copy(
        update={
            "spec": restored,
            "previous_spec": service.spec,  # replicas still on it are checked by its rules until replaced
            "version": service.version + 1,
            "updated_at": now,
            "update": update.model_copy(
                update={"state": UpdateState.ROLLED_BACK, "finished_at": now, "reason": reason, "next_batch_at": None}
            ),
        }
    )
    event = Event(
        EventKind.SERVICE_ROLLED_BACK,
        f"service {name} rolled back to its previous spec: {reason}",
        {"service": name, "reason": reason, "version": rolled_back.version},
    )
    plan.services.append(ServiceWrite(service, rolled_back, [event]))


def _finish(service: ServiceRecord, replicas: int, failures: list[str], now: float, plan: Plan) -> None:
    update = service.update
    assert update is not None
    reason = f"{len(failures)} replica(s) failed: {failures[0]}" if failures else None
    completed = service.model_copy(
        update={
            "update": update.model_copy(
                update={"state": UpdateState.COMPLETED, "finished_at": now, "reason": reason, "next_batch_at": None}
            )
        }
    )
    name = service.name
    event = Event(
        EventKind.SERVICE_UPDATE_COMPLETED,
        f"service {name} updated: {replicas} replicas run version {service.version}"
        + (f" ({reason})" if reason else ""),
        {"service": name, "version": service.version},
    )
    plan.services.append(ServiceWrite(service, completed, [event]))


def _of_update(service: ServiceRecord, tasks: Iterable[TaskRecord]) -> Iterable[TaskRecord]:
    """The replicas this update placed: its template, assigned since it started."""
    update = service.update
    assert update is not None
    template = service.template_hash()
    for task in tasks:
        if task.template == template and task.assigned_at is not None and task.assigned_at >= update.started_at:
            yield task


def _failures(service: ServiceRecord, tasks: list[TaskRecord], now: float, policy: Policy, plan: Plan) -> Iterable[str]:
    """Why replicas of the update failed it, slot by slot: exited or failed, or not updated in time."""
    deadline = update_deadline(service, policy)
    for task in sorted(_of_update(service, tasks), key=lambda t: t.slot):
        assert task.assigned_at is not None
        if task.state in TERMINAL_STATES and not task.stop_requested:
            yield f"{task.id} {task.state.value}: {task.reason}"
        elif task.state in ACTIVE_STATES and not updated(task, service, now):
            if now - task.assigned_at >= deadline:
                yield f"{task.id} not ready {deadline:g}s after it was assigned (health {task.health.value})"
            else:
                plan.wake(task.assigned_at + deadline)
                if task.ready() and task.started_at is not None:
                    plan.wake(task.started_at + service.spec.update_controls().monitor)


def _complete(service: ServiceRecord, tasks: list[TaskRecord], now: float, policy: Policy) -> bool:
    """Every slot runs the new template, updated, its previous container released (failure_action
    continue: or given up on, failed or not updated in time)."""
    slots = {task.slot: task for task in tasks}
    deadline = update_deadline(service, policy)
    template = service.template_hash()
    for slot in _slots(service, tasks):
        held = slots.get(slot)
        if held is None or held.template != template or held.previous is not None:
            return False
        if updated(held, service, now):
            continue
        given_up = held.state in TERMINAL_STATES or (
            held.assigned_at is not None and now - held.assigned_at >= deadline
        )
        if not (given_up and service.spec.update_controls().failure_action is FailureAction.CONTINUE):
            return False
    return True


def _slots(service: ServiceRecord, tasks: list[TaskRecord]) -> list[int]:
    """The slots the service wants: its replicas, or a global service's pinned slots (its tasks)."""
    if service.spec.is_global:
        return sorted(task.slot for task in tasks)
    return list(range(1, service.spec.count + 1))


def _in_flight(service: ServiceRecord, tasks: list[TaskRecord], now: float, policy: Policy) -> int:
    """Replicas still being replaced: a previous container not yet released, a replica of the template
    not yet updated (unless given up on past its deadline), or one an update stopped first that waits
    for a node (reconcile's _leave_pending gives it the template)."""
    template = service.template_hash()
    deadline = update_deadline(service, policy)
    count = 0
    for task in tasks:
        pending = service.replacing and task.state is TaskState.PENDING and task.template == template
        if task.previous is not None or pending or (
            task.template == template
            and task.state in ACTIVE_STATES
            and not updated(task, service, now)
            and (task.assigned_at is None or now - task.assigned_at < deadline)
        ):
            count += 1
    return count


def _outdated(service: ServiceRecord, tasks: list[TaskRecord]) -> bool:
    """Whether replicas of an older template still run."""
    template = service.template_hash()
    return any(task.template != template and task.state in ACTIVE_STATES for task in tasks)
