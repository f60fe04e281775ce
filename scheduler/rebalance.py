"""Rebalancing a service (`gorchester rebalance`, never automatic): which replicas move so that they
spread evenly over the ready nodes its constraints allow, and when that is done. Pure.

Reconcile moves them as it moves replicas off a draining node, start-first: the new container starts
on the node the placement picks (the one holding fewest of the service's replicas that takes it), and
the old one stops only once it is ready, so the service never has fewer ready replicas than before.
One at a time; the rebalance ends when no move would make the spread more even, or when the next move
fits on no better node (its reason is kept).
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.plan import Event, Plan, ServiceWrite
from shared.event_kinds import EventKind
from shared.records import NodeRecord, NodeStatus, ServiceRecord, TaskRecord, TaskState


def moves(
    service: ServiceRecord, tasks: Sequence[TaskRecord], nodes: Sequence[NodeRecord], status: dict[str, NodeStatus]
) -> list[TaskRecord]:
    """The replicas to move, in order: the highest slot of a node holding most of them, while that node
    holds at least two more than the node holding fewest (counting the moves before it)."""
    allowed = service.allowed_nodes(nodes)
    eligible = sorted(
        node.id for node in nodes
        if status.get(node.id) is NodeStatus.READY and (allowed is None or node.id in allowed)
    )
    if len(eligible) < 2:
        return []
    held: dict[str, list[TaskRecord]] = {node: [] for node in eligible}
    for task in sorted(tasks, key=lambda t: t.slot):
        if task.state is TaskState.RUNNING and task.previous is None and task.node in held:
            held[task.node].append(task)
    result: list[TaskRecord] = []
    while True:
        most = max(eligible, key=lambda node: (len(held[node]), node))
        fewest = min(eligible, key=lambda node: (len(held[node]), node))
        if len(held[most]) - len(held[fewest]) < 2:
            return result
        moved = held[most].pop()
        held[fewest].append(moved)
        result.append(moved)


def finish(service: ServiceRecord, now: float, plan: Plan, reason: str | None = None) -> None:
    """The rebalance is done (or, with `reason`, stopped short of an even spread)."""
    rebalance = service.rebalance
    assert rebalance is not None
    done = service.model_copy(update={"rebalance": rebalance.model_copy(update={"finished_at": now, "reason": reason})})
    name = service.name
    message = f"service {name} rebalanced" + (f", short of an even spread: {reason}" if reason else "")
    plan.services.append(ServiceWrite(service, done, [Event(EventKind.SERVICE_REBALANCED, message, {"service": name})]))
