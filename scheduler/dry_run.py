"""What an apply would do, computed by the scheduler's own pure code on the cluster as it stands, with
nothing written (`gorchester plan`, `POST /v1/apply?dry_run=true`), as `nomad job plan` does.

The services the config would leave (shared/storage/requests.py `revise`, the apply's own rule) are
reconciled with the tasks and nodes as read (scheduler/reconcile.py), and the pass's writes are read
back per service: which replicas it would place where, which it would stop, which would wait for a
node, and each node's verdict on those (shared/fit.py, the checks placement uses), judged with this
pass's placements counted. A rolling update shows its first batch: the next ones follow as that one
is ready, by the service's update_config.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from scheduler import rebalance
from scheduler.plan import Policy
from scheduler.reconcile import PLACEMENT_KINDS, reconcile
from shared.config import Config, UpdateConfig
from shared.dispatch import Action
from shared.fit import Verdicts, asked, node_states, verdicts
from shared.parsed import Records
from shared.records import NodeRecord, NodeStatus, ServiceOutcome, ServiceRecord, TaskRecord, TaskState
from shared.spec_diff import Change, diff
from shared.storage.requests import requested_rebalance, revise

WHY = {kind: why.value for why, kind in PLACEMENT_KINDS.items()}  # a placement event's kind -> its word


@dataclass(frozen=True)
class Placed:
    task: str
    node: str
    why: str  # scheduled, rescheduled, restarted, updated (the placement event's word)
    start_first: bool  # its old container keeps serving until it is ready
    from_node: str | None = None  # where it runs now (None: nowhere)


@dataclass(frozen=True)
class Waiting:
    task: str
    reason: str
    verdicts: Verdicts  # each node's verdict on it, this pass's placements counted


@dataclass
class ServicePlan:
    name: str
    outcome: ServiceOutcome
    version: tuple[int | None, int | None]  # before and after (None: none)
    replicas: tuple[int | None, int | None]
    changes: list[Change] = field(default_factory=list)
    rolling: bool = False  # the template changes: replicas are replaced by a rolling update
    controls: UpdateConfig | None = None  # how (the update_config, defaults filled in)
    replaced: list[str] = field(default_factory=list)  # replicas on the old template the update replaces
    placed: list[Placed] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # a rebalance: every replica it would move, in order


def plan_apply(
    config: Config,
    services: Records[ServiceRecord],
    tasks: list[TaskRecord],
    nodes: Sequence[NodeRecord],
    now: float,
    policy: Policy,
    *,
    prune: bool = False,
    heard_since: float = 0.0,
    limit: int = 100,
) -> list[ServicePlan]:
    """Per service the config names (and, with `prune`, each it would delete), what applying it now
    would do; raises as the apply would (Conflict for a service being deleted). `limit`: nodes listed
    per waiting replica."""
    after = dict(services.good)
    plans: dict[str, ServicePlan] = {}
    for spec in config.services:
        name = spec.service_name
        entry = services.entry(name)
        record, outcome, _ = revise(name, entry, spec, now, True, None)
        before = entry if isinstance(entry, ServiceRecord) else None
        after[name] = record
        plan = ServicePlan(
            name, outcome,
            version=(before.version if before else None, record.version),
            replicas=(before.spec.replicas if before else None, spec.replicas),
            changes=diff(before.spec if before else None, spec) if outcome is not ServiceOutcome.UNCHANGED else [],
        )
        if before is not None and before.template_hash() != record.template_hash():
            plan.rolling = True
            plan.controls = spec.update_controls()
            plan.replaced = sorted(
                (t.id for t in tasks if t.service == name and t.template != record.template_hash()
                 and (spec.is_global or t.slot <= spec.count) and t.state is not TaskState.SHUTDOWN),
                key=_slot_order,
            )
        plans[name] = plan
    if prune:
        named = {spec.service_name for spec in config.services}
        for name in sorted(services.bodies.keys() - named):
            entry = services.entry(name)
            if isinstance(entry, ServiceRecord) and entry.deleting:
                continue
            if isinstance(entry, ServiceRecord):
                after[name] = entry.model_copy(update={"deleting": True, "updated_at": now})
            else:
                after.pop(name, None)
            version = entry.version if isinstance(entry, ServiceRecord) else None
            replicas = entry.spec.replicas if isinstance(entry, ServiceRecord) else None
            plans[name] = ServicePlan(name, ServiceOutcome.DELETED, (version, None), (replicas, None))
    frozen = {name for name, entry in services.unreadable.items() if not isinstance(after.get(name), ServiceRecord)}
    status = {node.id: node.status(now, policy.heartbeat_misses, heard_since) for node in nodes}
    _simulate(after, plans, tasks, nodes, status, now, policy, frozen, heard_since, limit)
    return [plans[name] for name in _ordered(plans, config)]


def plan_rebalance(
    name: str,
    services: Records[ServiceRecord],
    tasks: list[TaskRecord],
    nodes: Sequence[NodeRecord],
    now: float,
    policy: Policy,
    *,
    heard_since: float = 0.0,
    limit: int = 100,
) -> ServicePlan:
    """What `gorchester rebalance NAME` would do now: every replica it would move (`moves`), and the
    first move's placement. Raises as the request would (NotFound, Conflict)."""
    entry = services.entry(name)
    record = requested_rebalance(name, entry, now)
    status = {node.id: node.status(now, policy.heartbeat_misses, heard_since) for node in nodes}
    own = [task for task in tasks if task.service == name]
    plan = ServicePlan(name, ServiceOutcome.UNCHANGED, (record.version, record.version),
                       (record.spec.replicas, record.spec.replicas))
    plan.moves = [task.id for task in rebalance.moves(record, own, nodes, status)]
    after = {**services.good, name: record}
    _simulate(after, {name: plan}, tasks, nodes, status, now, policy, set(services.unreadable), heard_since, limit)
    return plan


def _simulate(
    after: dict[str, ServiceRecord],
    plans: dict[str, ServicePlan],
    tasks: list[TaskRecord],
    nodes: Sequence[NodeRecord],
    status: dict[str, NodeStatus],
    now: float,
    policy: Policy,
    frozen: Collection[str],
    heard_since: float,
    limit: int,
) -> None:
    """Reconcile `after` with the tasks and nodes as read (`status`: each node's, judged at `now`) and
    add each write of a planned service to its plan: placed, stopped or waiting (judged by every node,
    this pass's placements counted)."""
    decided = reconcile(after, tasks, list(nodes), now, policy, frozen=frozen, heard_since=heard_since)
    before = {task.id: task for task in tasks}
    planned = dict(before)
    for write in decided.writes:
        task = write.record
        if task is not None:
            planned[write.task] = task
        else:
            planned.pop(write.task, None)
        told = plans.get(write.task.rsplit(".", 1)[0])
        if told is None:
            continue
        if task is None or task.state is TaskState.SHUTDOWN:
            told.stopped.append(write.task)
        elif task.state is TaskState.ASSIGNED and any(job.action is Action.START for job in write.jobs):
            assert task.node is not None
            why = next((WHY[event.kind] for event in write.events if event.kind in WHY), "scheduled")
            was = before.get(write.task)
            told.placed.append(Placed(write.task, task.node, why, task.previous is not None, was.node if was else None))
        elif task.state is TaskState.PENDING:
            told.waiting.append(Waiting(write.task, task.reason or "", Verdicts([], 0, 0)))
    if any(told.waiting for told in plans.values()):
        states = node_states(nodes, status, planned.values())
        for told in plans.values():
            wanted = after.get(told.name)
            if wanted is None:
                continue
            told.waiting = [
                Waiting(item.task, item.reason, verdicts(
                    states.values(), asked(item.task, wanted.spec, planned[item.task].pinned), limit
                ))
                for item in told.waiting
            ]


def _slot_order(task_id: str) -> int:
    return int(task_id.rsplit(".", 1)[1])


def _ordered(plans: dict[str, ServicePlan], config: Config) -> list[str]:
    """The config's services in its order, then the pruned ones by name."""
    named = [spec.service_name for spec in config.services]
    return named + sorted(name for name in plans if name not in set(named))

