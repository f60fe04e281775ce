"""Global services (`mode: global`, Swarm's global services, Kubernetes' DaemonSets): one replica slot
per ready node the service's constraints allow, each slot pinned to its node for life. Pure.

A node that becomes ready (or starts to match) gets a slot of its own, the lowest number free; a slot
whose node is drained, removed or no longer matches is retired. A slot on a node that is not ready or
down stays (pinned, it waits for that node: nowhere else runs it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from shared.records import NodeRecord, NodeStatus, ServiceRecord, TaskRecord

KEPT_STATUSES = frozenset({NodeStatus.READY, NodeStatus.NOT_READY, NodeStatus.DOWN})


@dataclass
class Pins:
    keep: set[int] = field(default_factory=set)  # the slots wanted: their tasks stay
    fresh: list[tuple[int, str]] = field(default_factory=list)  # (slot, node) for each node without one


def pins(
    service: ServiceRecord,
    tasks: Iterable[TaskRecord],
    nodes: Sequence[NodeRecord],
    status: dict[str, NodeStatus],
    taken: Collection[int] = (),
) -> Pins:
    """Which of a global service's slots stay and which nodes get a new one. `taken`: slot numbers in
    use besides its tasks' (records that cannot be read)."""
    allowed = service.allowed_nodes(nodes)
    matching = {node.id for node in nodes} if allowed is None else allowed
    result = Pins()
    held: set[str] = set()
    used = set(taken)
    for task in sorted(tasks, key=lambda t: t.slot):
        used.add(task.slot)
        pin = task.pinned
        if pin is None or pin in held or pin not in matching or status.get(pin) not in KEPT_STATUSES:
            continue
        held.add(pin)
        result.keep.add(task.slot)
    slot = 1
    for node in nodes:
        if node.id in held or node.id not in matching or status.get(node.id) is not NodeStatus.READY:
            continue
        while slot in used:
            slot += 1
        used.add(slot)
        result.fresh.append((slot, node.id))
    return result
