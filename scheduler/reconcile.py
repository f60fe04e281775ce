"""Reconciliation: desired services vs actual tasks and nodes at `now` -> a plan. Pure.

The plan is a list of task writes (the scheduler's assignments, shared/task_parts.py), the jobs each
write sends to node queues once it is applied, and events. Nothing here talks to Redis or Docker; the
loop in scheduler/loop.py reads a snapshot, calls `reconcile`, and carries the plan out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from scheduler import rebalance
from scheduler.backoff import wants_restart
from scheduler.global_mode import Pins, pins
from scheduler.placement import place
from scheduler.plan import Event, Plan, Policy, Write
from scheduler.rollout import Rollout, follow_update, stalled
from shared.config import UpdateOrder
from shared.dispatch import Action, Decision
from shared.event_kinds import EventKind
from shared.fit import NodeState, Request, asked, held, node_states
from shared.records import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Health,
    NodeRecord,
    NodeStatus,
    PreviousContainer,
    ServiceRecord,
    TaskRecord,
    TaskState,
    Unreadable,
    UpdateState,
    host_port_keys,
    incarnation_at,
    task_id,
)

SLOT_ID = re.compile(r"(.+)\.([1-9][0-9]{0,8})")  # a task id: `<service>.<slot>`


class Why(StrEnum):
    """Why a task needs a node (its placement event says so)."""

    SCHEDULED = "scheduled"  # a new replica, or one never placed
    RESCHEDULED = "rescheduled"  # its node is down or draining
    RESTARTED = "restarted"  # it exited (or is unhealthy) and its restart policy wants it back
    UPDATED = "updated"  # its service's template changed


@dataclass(frozen=True)
class _Pass:
    """What every decision of one pass shares: its time, the policy, each node's status, and the plan
    it adds its writes to."""

    now: float
    policy: Policy
    status: dict[str, NodeStatus]
    plan: Plan
    # Since when the scheduler has heard Redis without a break: a job sent before it may be gone with
    # the Redis it went to (a failover's old master), so one still in flight is sent again at once.
    heard_since: float
    nodes: Sequence[NodeRecord]


@dataclass
class _Placing:
    """A task that needs a node in this pass, and why."""

    task: TaskRecord
    service: ServiceRecord
    why: Why
    start_first: bool = False  # the running container stays (as `previous`) until the new one is ready


def reconcile(
    services: dict[str, ServiceRecord],
    tasks: list[TaskRecord],
    nodes: list[NodeRecord],
    now: float,
    policy: Policy,
    *,
    frozen: Collection[str] = frozenset(),
    unreadable: Sequence[Unreadable] = (),
    heard_since: float = 0.0,
) -> Plan:
    """The plan for this pass. Services named in `frozen` (and their tasks, stored or unreadable)
    are left as they are: the scheduler cannot handle them (scheduler/isolation.py); their tasks
    still hold their nodes' resources. `unreadable`: task records that cannot be parsed.
    `heard_since`: since when the scheduler has heard Redis without a break (NodeRecord.down_at)."""
    plan = Plan()
    misses = policy.heartbeat_misses
    status = {node.id: node.status(now, misses, heard_since) for node in nodes}
    for node in nodes:
        if status[node.id] is not NodeStatus.DOWN:
            plan.wake(node.down_at(misses, heard_since) + 0.01)
    ctx = _Pass(now, policy, status, plan, heard_since, nodes)

    broken: set[tuple[str, int]] = set()  # slots whose record is unreadable: replaced, not made afresh
    for entry in unreadable:
        held = _replace_unreadable(entry, services, frozen, now, plan)
        if held is not None:
            broken.add(held)
    pinned = _global_pins(services, tasks, nodes, status, frozen, broken)
    by_service: dict[str, dict[int, TaskRecord]] = {}
    placing: list[_Placing] = []
    for task in tasks:
        if task.service in frozen:
            continue
        service = services.get(task.service)
        if service is None or service.deleting or not _wanted(service, task.slot, pinned):
            _retire(task, ctx)
        else:
            by_service.setdefault(task.service, {})[task.slot] = task

    for name, service in sorted(services.items()):
        if name in frozen:
            continue
        if service.deleting:
            if not any(task.service == name for task in tasks) and not any(owner == name for owner, _ in broken):
                plan.forget.append(name)
            continue
        current = by_service.get(name, {})
        rollout = follow_update(service, list(current.values()), now, policy, plan)
        if rollout.written:
            continue  # the service record changes first; the write wakes the next pass
        moving: list[str] = []
        if service.rebalancing and not service.updating:
            moving = [task.id for task in rebalance.moves(service, list(current.values()), nodes, status)]
            if not moving and all(task.previous is None for task in current.values()):
                rebalance.finish(service, now, plan)
                continue
        missing: list[tuple[int, str | None]] = [
            (slot, None) for slot in range(1, service.spec.count + 1)
            if slot not in current and (name, slot) not in broken
        ]
        for slot, pin in pinned[name].fresh if name in pinned else missing:
            fresh = TaskRecord(
                id=task_id(name, slot), service=name, slot=slot, created_at=now, rev=-1,
                incarnation=incarnation_at(now), pinned=pin,
            )
            placing.append(_Placing(fresh, service, Why.SCHEDULED))
        placing += _keep(service, list(current.values()), ctx, rollout, moving)

    for name, reason in _place(placing, tasks, nodes, ctx).items():
        service, current_tasks = services[name], list(by_service.get(name, {}).values())
        if service.updating:
            stalled(service, current_tasks, reason, now, policy, plan)
        elif service.rebalancing and all(task.previous is None for task in current_tasks):
            rebalance.finish(service, now, plan, reason)  # the next move fits on no better node
    return plan


def _global_pins(
    services: dict[str, ServiceRecord],
    tasks: list[TaskRecord],
    nodes: Sequence[NodeRecord],
    status: dict[str, NodeStatus],
    frozen: Collection[str],
    broken: Collection[tuple[str, int]],
) -> dict[str, Pins]:
    """Each global service's slots: those that stay, and the nodes that get one (scheduler/global_mode.py)."""
    chosen = {
        name: service for name, service in services.items()
        if service.spec.is_global and not service.deleting and name not in frozen
    }
    if not chosen:
        return {}
    own: dict[str, list[TaskRecord]] = {name: [] for name in chosen}
    for task in tasks:
        if task.service in own:
            own[task.service].append(task)
    return {
        name: pins(service, own[name], nodes, status, [slot for owner, slot in broken if owner == name])
        for name, service in chosen.items()
    }


def _wanted(service: ServiceRecord, slot: int, pinned: dict[str, Pins]) -> bool:
    """Whether a service still wants its slot: one of its replicas, or a global service's pinned slot."""
    if service.spec.is_global:
        return slot in pinned[service.name].keep
    return slot <= service.spec.count


def _replace_unreadable(
    entry: Unreadable, services: dict[str, ServiceRecord], frozen: Collection[str], now: float, plan: Plan
) -> tuple[str, int] | None:
    """A task record nobody can read: a slot still wanted gets a clean record of a new incarnation
    (failed, saying why; placed again in the next pass), anything else is deleted. Returns the slot
    (service, slot) it held, if it names one.

    Its containers, if any, are then those of no record: their agents remove them as strays.
    """
    match = SLOT_ID.fullmatch(entry.key)
    owner, slot = (match.group(1), int(match.group(2))) if match else (entry.key, 0)
    if owner in frozen:
        return (owner, slot) if match else None
    service = services.get(owner)
    data = {"service": owner, "task": entry.key, "reason": entry.error}
    # A global service's slot is known only with its pin: its record goes, and its node gets a new one.
    if match and service is not None and not service.deleting and not service.spec.is_global \
            and slot <= service.spec.count:
        clean = TaskRecord(
            id=entry.key, service=owner, slot=slot, state=TaskState.FAILED,
            reason=f"unreadable record replaced: {entry.error}", created_at=now, updated_at=now, finished_at=now,
            incarnation=incarnation_at(now),
        )
        event = Event(EventKind.TASK_UNREADABLE, f"{entry.key}: unreadable record replaced ({entry.error})", data)
        plan.writes.append(Write(entry.key, clean, events=[event]))
    else:
        event = Event(EventKind.TASK_UNREADABLE, f"{entry.key}: unreadable record removed ({entry.error})", data)
        plan.writes.append(Write(entry.key, None, events=[event]))
    return (owner, slot) if match else None


PLACEMENT_KINDS = {
    Why.SCHEDULED: EventKind.TASK_SCHEDULED,
    Why.RESCHEDULED: EventKind.TASK_RESCHEDULED,
    Why.RESTARTED: EventKind.TASK_RESTARTED,
    Why.UPDATED: EventKind.TASK_UPDATED,
}


def _job(node: str, action: Action, task: TaskRecord, gen: int) -> Decision:
    """A decision about the task's record (its incarnation) at `gen`, for `node`'s agent."""
    return Decision(node, action, task.id, gen, task.incarnation)


def _retire(task: TaskRecord, ctx: _Pass) -> None:
    """A task nobody wants: stop its container through its node, or just forget it."""
    node_gone = task.node is None or ctx.status.get(task.node, NodeStatus.DOWN) is NodeStatus.DOWN
    if node_gone:
        # Nothing can run it; a returning agent removes containers whose task is gone.
        ctx.plan.writes.append(Write(task.id, None))
        return
    assert task.node is not None
    if task.state is TaskState.SHUTDOWN:
        if task.removed:  # its agent removed its containers: the slot's records go
            ctx.plan.writes.append(Write(task.id, None))
        elif _resend_due(task.updated_at, ctx):
            again = task.model_copy(update={"updated_at": ctx.now})
            ctx.plan.writes.append(Write(task.id, again, jobs=[_job(task.node, Action.STOP, task, task.gen)]))
        return
    gen = task.gen + 1
    stopping = task.model_copy(
        update={"gen": gen, "state": TaskState.SHUTDOWN, "reason": "shutdown", "updated_at": ctx.now, "previous": None}
    )
    jobs = [_job(task.node, Action.STOP, task, gen)]
    previous = task.previous
    if previous is not None and previous.node != task.node and ctx.status.get(previous.node) is not NodeStatus.DOWN:
        jobs.append(_job(previous.node, Action.STOP, task, previous.gen))
    ctx.plan.writes.append(Write(task.id, stopping, jobs=jobs))


class Kind(StrEnum):
    """The sets a service's wanted tasks are classified into, each handled by its own function."""

    SHUTTING_DOWN = "shutting_down"  # being stopped, wanted again: the slot is reused once it is gone
    UNPLACED = "unplaced"  # pending, or never placed
    DRAINING = "draining"  # active on a draining node: moves, start-first where it can
    LOST = "lost"  # active on a down node (NOT_READY keeps its replicas until it is DOWN)
    HALTING = "halting"  # running, and its user asked for the stop
    FINISHED = "finished"  # failed or stopped: restarted by policy, or replaced by an update
    OUTDATED = "outdated"  # active on an older template: replaced in batches (update_config)
    MISPLACED = "misplaced"  # active on a node its service's constraints no longer allow: moves as from a drain
    IN_FLIGHT = "in_flight"  # assigned or starting: its start job is sent again if it was lost
    REBALANCED = "rebalanced"  # running as it should, moved by a user's rebalance: start-first, as from a drain


def classify(
    task: TaskRecord, template: str, status: dict[str, NodeStatus], allowed: Collection[str] | None = None
) -> Kind | None:
    """The set a wanted task belongs to (None: it runs as it should). `allowed`: the nodes the service's
    placement constraints allow (None: any)."""
    node_status = status.get(task.node or "", NodeStatus.DOWN)
    if task.state is TaskState.SHUTDOWN:
        return Kind.SHUTTING_DOWN
    if task.state is TaskState.PENDING:
        return Kind.UNPLACED
    if task.state in ACTIVE_STATES and node_status is NodeStatus.DRAINING:
        return Kind.DRAINING
    if task.state in ACTIVE_STATES and node_status is NodeStatus.DOWN:
        return Kind.LOST
    if task.state is TaskState.RUNNING and task.stop_requested:
        return Kind.HALTING
    if task.state in TERMINAL_STATES:
        return Kind.FINISHED
    if task.template != template:
        return Kind.OUTDATED
    if allowed is not None and task.state in ACTIVE_STATES and task.node not in allowed:
        return Kind.MISPLACED
    if task.state in (TaskState.ASSIGNED, TaskState.STARTING):
        return Kind.IN_FLIGHT
    return None


@dataclass
class _Budget:
    """Replicas a service may still replace start-first in this pass (an update, a drain)."""

    left: int

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def _keep(
    service: ServiceRecord, tasks: list[TaskRecord], ctx: _Pass, rollout: Rollout, moving: Sequence[str] = ()
) -> list[_Placing]:
    """Decide for each wanted task whether it stays, is re-placed, restarted or updated: release the
    previous containers whose replacement is ready, classify the rest, then handle each set. `moving`:
    running replicas a rebalance moves (scheduler/rebalance.py), in that order, start-first as from a drain."""
    template = service.template_hash()
    sets: dict[Kind, list[TaskRecord]] = {kind: [] for kind in Kind}
    allowed = service.allowed_nodes(ctx.nodes)
    for task in sorted(tasks, key=lambda t: t.slot):
        if task.previous is not None and task.state is not TaskState.SHUTDOWN and _release_previous(task, ctx):
            continue  # one write per task and pass: other decisions about it wait for the next pass
        kind = classify(task, template, ctx.status, allowed)
        if kind is None and task.id in moving:
            kind = Kind.REBALANCED
        if kind is not None:
            sets[kind].append(task)
    budget = _Budget(rollout.room)
    # An update replaces in its order; a drain moves start-first unless a fixed host_port forbids it.
    start_first = service.spec.update_controls().order is UpdateOrder.START_FIRST
    move_first = not host_port_keys(service.spec)
    for task in sets[Kind.SHUTTING_DOWN]:
        _retire(task, ctx)
    for task in sets[Kind.HALTING]:
        _halt(task, ctx)
    for task in sets[Kind.IN_FLIGHT]:
        _requeue_if_lost(task, ctx)
    return [
        *(_Placing(task, service, Why.SCHEDULED) for task in sets[Kind.UNPLACED]),
        *_drain(sets[Kind.DRAINING] + sets[Kind.MISPLACED], service, budget, move_first),
        # A rebalance moves to another node, whose host ports are free: start-first whatever the order.
        *_drain(sorted(sets[Kind.REBALANCED], key=lambda t: moving.index(t.id)), service, budget, True),
        *(_Placing(task, service, Why.RESCHEDULED) for task in sets[Kind.LOST]),
        *_finished(sets[Kind.FINISHED], service, ctx),
        *([] if rollout.paused else _update(sets[Kind.OUTDATED], service, budget, start_first)),
    ]


def _drain(tasks: list[TaskRecord], service: ServiceRecord, budget: _Budget, start_first: bool) -> list[_Placing]:
    """Replicas leaving a node (draining, or no longer allowed by the service's constraints): a running
    one moves start-first (as many at a time as the budget allows, the rest keep serving meanwhile),
    any other at once."""
    placing = []
    for task in tasks:
        if task.state is TaskState.RUNNING and start_first and task.previous is None:
            if budget.take():
                placing.append(_Placing(task, service, Why.RESCHEDULED, start_first=True))
        else:
            placing.append(_Placing(task, service, Why.RESCHEDULED))
    return placing


def _finished(tasks: list[TaskRecord], service: ServiceRecord, ctx: _Pass) -> list[_Placing]:
    """Replicas that exited: one of an older template, or one that exited before the update (re)started
    (resumed, or undone to its template), is replaced by the update; one its restart policy wants back,
    or an unhealthy one (always replaced), restarts once its back-off is due."""
    placing = []
    update = service.update
    retried = update.started_at if update is not None and update.state is UpdateState.UPDATING else None
    for task in tasks:
        if task.template != service.template_hash() or (
            retried is not None and task.assigned_at is not None and task.assigned_at < retried
        ):
            placing.append(_Placing(task, service, Why.UPDATED))
        elif wants_restart(service.spec.restart_policy, task) or task.health is Health.UNHEALTHY:
            due = ctx.policy.backoff.due_at(task)
            if ctx.now >= due:
                placing.append(_Placing(task, service, Why.RESTARTED))
            else:
                ctx.plan.wake(due)
    return placing


def _update(tasks: list[TaskRecord], service: ServiceRecord, budget: _Budget, start_first: bool) -> list[_Placing]:
    """Running replicas of an older template, replaced as the budget allows (start-first where it can)."""
    return [
        _Placing(task, service, Why.UPDATED, start_first=start_first and task.previous is None)
        for task in tasks
        if task.state is TaskState.RUNNING and budget.take()
    ]


def _release_previous(task: TaskRecord, ctx: _Pass) -> bool:
    """Start-first's second half: once the new gen is ready, the previous container is stopped.

    A previous container on a node that went down is forgotten (its agent sweeps it on return).
    Returns whether the task is written in this pass.
    """
    previous = task.previous
    assert previous is not None
    jobs: list[Decision] = []
    if ctx.status.get(previous.node, NodeStatus.DOWN) is not NodeStatus.DOWN:
        if not task.ready():
            return False
        jobs.append(_job(previous.node, Action.STOP, task, previous.gen))
    released = task.model_copy(update={"previous": None, "updated_at": ctx.now})
    ctx.plan.writes.append(Write(task.id, released, jobs=jobs))
    return True


def _halt(task: TaskRecord, ctx: _Pass) -> None:
    """A user's stop (the API marked the record): the node stops the container and keeps it; sent once,
    and again if it left no trace (the task still RUNNING) as a start is."""
    if task.halt_sent_at is not None and not _resend_due(task.halt_sent_at, ctx):
        return
    assert task.node is not None
    sent = task.model_copy(update={"halt_sent_at": ctx.now, "updated_at": ctx.now})
    ctx.plan.writes.append(Write(task.id, sent, jobs=[_job(task.node, Action.HALT, task, task.gen)]))


def _requeue_if_lost(task: TaskRecord, ctx: _Pass) -> None:
    """A start job that left no trace (agent killed mid-job, queue lost) is sent again, same gen."""
    since = task.assigned_at if task.state is TaskState.ASSIGNED and task.assigned_at else task.updated_at
    if not _resend_due(since, ctx):
        return
    assert task.node is not None
    again = task.model_copy(update={"assigned_at": ctx.now, "updated_at": ctx.now})
    ctx.plan.writes.append(Write(task.id, again, jobs=[_job(task.node, Action.START, task, task.gen)]))


def _resend_due(since: float, ctx: _Pass) -> bool:
    """Whether a job sent at `since` whose task has not moved on since is sent again now: the timeout
    passed, or it went to a Redis the scheduler has since lost (jobs are idempotent: a second copy of
    one that did arrive finds its work done)."""
    if since < ctx.heard_since or ctx.now - since >= ctx.policy.assigned_timeout:
        return True
    ctx.plan.wake(since + ctx.policy.assigned_timeout)
    return False


def _place(placing: list[_Placing], tasks: list[TaskRecord], nodes: list[NodeRecord], ctx: _Pass) -> dict[str, str]:
    """Place what needs a node; returns, per service, why the first of its replicas that fits nowhere
    does not fit (a rolling update's, scheduler/rollout.py `stalled`; a rebalance's next move)."""
    # A start-first replacement leaves the old container running (and holding its node) meanwhile.
    moving = {item.task.id for item in placing if not item.start_first}
    states = node_states(nodes, ctx.status, tasks, moving)
    placing.sort(key=lambda item: (item.task.service, item.task.slot))
    requests = [asked(item.task.id, item.service.spec, item.task.pinned) for item in placing]
    placement = place(states.values(), requests)
    stalls: dict[str, str] = {}
    for item, request in zip(placing, requests, strict=True):
        node = placement.assigned.get(item.task.id)
        if node is None and item.start_first and item.why is Why.UPDATED:
            node = _stop_first_instead(item, request, states)
        if node is None:
            reason = placement.pending[item.task.id]
            if not item.start_first:  # start-first: the running container just stays for now
                _leave_pending(item, reason, ctx)
            stalls.setdefault(item.task.service, f"{item.task.id} cannot be placed: {reason}")
        else:
            _assign(item, node, ctx)
    return stalls


def _stop_first_instead(item: _Placing, request: Request, states: dict[str, NodeState]) -> str | None:
    """No room for the new container beside the old one: replace it stop-first if its own node (with
    the old container's share freed) takes the new one; otherwise the old one keeps running."""
    task = item.task
    own = states.get(task.node or "")
    if own is None:
        return None
    current = held(task)
    own.release(current)
    if place([own], [request]).assigned.get(task.id) is None:
        own.hold(current)
        return None
    item.start_first = False
    return own.id


def _assign(item: _Placing, node: str, ctx: _Pass) -> None:
    task, spec = item.task, item.service.spec
    gen = task.gen + 1
    restarted = item.why is Why.RESTARTED
    previous = task.previous
    if item.start_first and task.node is not None:
        previous = PreviousContainer(
            node=task.node,
            gen=task.gen,
            container_id=task.container_id,
            address=task.address,
            ports=task.ports,
            cpu_millicores=task.cpu_millicores,
            memory_bytes=task.memory_bytes,
        )
    record = task.model_copy(
        update={
            "gen": gen,
            "node": node,
            "state": TaskState.ASSIGNED,
            "reason": None,
            "template": item.service.template_hash(),
            "cpu_millicores": spec.cpu_request(),
            "memory_bytes": spec.memory_request(),
            "host_ports": host_port_keys(spec),
            "container_id": None,
            "ports": [],
            "assigned_at": ctx.now,
            "started_at": None,
            "finished_at": None,
            "restarts": task.restarts + (1 if restarted else 0),
            # Counted from the streak the back-off saw: a long clean run before this crash starts afresh.
            "crash_streak": (ctx.policy.backoff.streak(task) + 1) if restarted else task.crash_streak,
            "stop_requested": False,
            "halt_sent_at": None,
            "updated_at": ctx.now,
            "health": Health.STARTING if spec.health_check is not None else Health.NONE,
            "health_output": None,
            "address": None,
            "previous": previous,
        }
    )
    jobs = [_job(node, Action.START, task, gen)]
    if not item.start_first:
        jobs += _release_old_node(task, node, ctx.status)
    where = f"on {node}" if task.node in (None, node) else f"from {task.node} to {node}"
    kind = PLACEMENT_KINDS[item.why]
    event = Event(kind, f"{task.id} {item.why} {where}", {"service": task.service, "task": task.id, "node": node})
    ctx.plan.writes.append(Write(task.id, record, jobs=jobs, events=[event]))


def _release_old_node(task: TaskRecord, new_node: str | None, status: dict[str, NodeStatus]) -> list[Decision]:
    """Moving away from a live node: its old container must go (a down node's agent sweeps on return)."""
    old = task.node
    if old is None or old == new_node or status.get(old, NodeStatus.DOWN) is NodeStatus.DOWN:
        return []
    return [_job(old, Action.STOP, task, task.gen)]


def _leave_pending(item: _Placing, reason: str, ctx: _Pass) -> None:
    task = item.task
    if task.state is TaskState.PENDING and task.reason == reason and task.rev >= 0:
        return
    # A replica an update stopped first waits as one of the update (scheduler/rollout.py counts it in flight).
    template = item.service.template_hash() if item.why is Why.UPDATED else task.template
    record = task.model_copy(
        update={
            "gen": task.gen + 1,
            "node": None,
            "state": TaskState.PENDING,
            "reason": reason,
            "template": template,
            "container_id": None,
            "ports": [],
            "updated_at": ctx.now,
        }
    )
    data = {"service": task.service, "task": task.id}
    event = Event(EventKind.TASK_PENDING, f"{task.id} cannot be placed: {reason}", data)
    jobs = _release_old_node(task, None, ctx.status)
    ctx.plan.writes.append(Write(task.id, record, jobs=jobs, events=[event]))
