"""Reconciliation that one service cannot stop: a service whose reconciliation raises is left out
(frozen) and named, and every other service is reconciled in the same pass. Pure, like reconcile.

The whole pass is tried first. When it raises, the services are split in halves, each half tried
alone (the rest frozen), down to the services that raise on their own: a handful of reconciles per
culprit (about 2 log2(services)), and none while nothing fails. Services that fail only together
are then found by adding the rest one at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from scheduler.plan import Plan, Policy
from scheduler.reconcile import SLOT_ID, reconcile
from shared.records import NodeRecord, ServiceRecord, TaskRecord, Unreadable


def reconcile_isolated(
    services: dict[str, ServiceRecord],
    tasks: list[TaskRecord],
    nodes: list[NodeRecord],
    now: float,
    policy: Policy,
    *,
    frozen: Collection[str] = frozenset(),
    unreadable: Sequence[Unreadable] = (),
    heard_since: float = 0.0,
) -> tuple[Plan, dict[str, Exception]]:
    """The plan for every service but those in `frozen` and those whose reconciliation raises; returns
    it with what each of the latter raised, by service name (a name may be one that only tasks carry).

    Only a failure with no service to blame (everything frozen still raises) is raised."""
    owners = {match.group(1) if (match := SLOT_ID.fullmatch(entry.key)) else entry.key for entry in unreadable}
    names = (set(services) | {task.service for task in tasks} | owners) - set(frozen)

    def attempt(included: set[str]) -> Plan:
        return reconcile(
            services, tasks, nodes, now, policy,
            frozen={*frozen, *(names - included)}, unreadable=unreadable, heard_since=heard_since,
        )

    try:
        return attempt(names), {}
    except Exception as exc:  # noqa: BLE001 - whatever a service's records make reconcile raise, it is that service's
        whole = exc
    failures: dict[str, Exception] = {}

    def search(group: list[str], error: Exception) -> None:
        """Find the services of `group`, which raised `error` as a whole, that raise on their own."""
        if len(group) <= 1:
            failures.update(dict.fromkeys(group, error))  # none: no service to blame; the last attempt raises
            return
        for half in (group[: len(group) // 2], group[len(group) // 2 :]):
            try:
                attempt(set(half))
                continue
            except Exception as exc:  # noqa: BLE001 - see above
                raised = exc
            search(half, raised)  # outside the handler: an error found deeper is not chained to this one

    search(sorted(names), whole)
    kept = names - failures.keys()
    try:
        return attempt(kept), failures
    except Exception:  # noqa: BLE001 - they fail only together: add them one at a time
        pass
    kept = set()
    for name in sorted(names - failures.keys()):
        try:
            attempt(kept | {name})
        except Exception as exc:  # noqa: BLE001 - see above
            failures[name] = exc
        else:
            kept.add(name)
    return attempt(kept), failures
