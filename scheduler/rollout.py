"""Following a rolling update: completed once every slot runs the new template and is ready,
rolled back to the previous spec when a new replica fails or is not ready in time. Pure."""

from __future__ import annotations

from scheduler.plan import Event, Plan, Policy, ServiceWrite
from shared.event_kinds import EventKind
from shared.records import ACTIVE_STATES, TERMINAL_STATES, ServiceRecord, TaskRecord, UpdateState


def update_deadline(service: ServiceRecord, policy: Policy) -> float:
    """Seconds a replica of a rolling update may take from assignment to ready before the update is
    rolled back: the start grace, plus interval x (retries + 2) for its health checks to decide."""
    check = service.spec.health_check
    checks = check.interval * (check.retries + 2) if check is not None else 0
    return policy.update_deadline + checks


def follow_update(service: ServiceRecord, tasks: list[TaskRecord], now: float, policy: Policy, plan: Plan) -> bool:
    """Follow a rolling update: completed once every slot runs the new template and is ready; rolled
    back to the previous spec when a new replica fails or is not ready by the deadline.

    Returns whether the service record is written in this plan.
    """
    update = service.update
    if update is None or not service.updating:
        return False
    template = service.template_hash()
    deadline = update_deadline(service, policy)
    reason = None
    for task in sorted(tasks, key=lambda t: t.slot):
        if task.template != template or task.assigned_at is None or task.assigned_at < update.started_at:
            continue
        if task.state in TERMINAL_STATES and not task.stop_requested:
            reason = f"{task.id} {task.state.value}: {task.reason}"
            break
        if task.state in ACTIVE_STATES and not task.ready():
            if now - task.assigned_at >= deadline:
                reason = f"{task.id} not ready {deadline:g}s after it was assigned (health {task.health.value})"
                break
            plan.wake(task.assigned_at + deadline)
    name = service.name
    if reason is not None and service.previous_spec is not None:
        # The template goes back; the replica count (perhaps scaled meanwhile) stays what it is now.
        restored = service.previous_spec.model_copy(
            update={"replicas": service.spec.replicas, "scale_policy": service.spec.scale_policy}
        )
        rolled_back = service.model_copy(
            update={
                "spec": restored,
                "previous_spec": service.spec,  # replicas still on it are checked by its rules until replaced
                "version": service.version + 1,
                "updated_at": now,
                "update": update.model_copy(
                    update={"state": UpdateState.ROLLED_BACK, "finished_at": now, "reason": reason}
                ),
            }
        )
        event = Event(
            EventKind.SERVICE_ROLLED_BACK,
            f"service {name} rolled back to its previous spec: {reason}",
            {"service": name, "reason": reason, "version": rolled_back.version},
        )
        plan.services.append(ServiceWrite(service, rolled_back, [event]))
        return True
    slots = {task.slot: task for task in tasks}
    done = all(
        (held := slots.get(slot)) is not None
        and held.template == template
        and held.ready()
        and held.previous is None
        for slot in range(1, service.spec.replicas + 1)
    )
    if not done:
        return False
    completed = service.model_copy(
        update={"update": update.model_copy(update={"state": UpdateState.COMPLETED, "finished_at": now})}
    )
    event = Event(
        EventKind.SERVICE_UPDATE_COMPLETED,
        f"service {name} updated: {service.spec.replicas} replicas run version {service.version}",
        {"service": name, "version": service.version},
    )
    plan.services.append(ServiceWrite(service, completed, [event]))
    return True
