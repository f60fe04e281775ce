"""The scheduler's loop: wait for a change, read a snapshot, reconcile, write the plan, enqueue.

It reacts to the `changes` channel at once and also wakes on a slow timer (a safety net for lost
notifications), on lease renewal, and when time alone changes the answer (back-off, node expiry).
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from scheduler.autoscaler import Autoscaler
from scheduler.isolation import reconcile_isolated
from scheduler.plan import Plan, Policy
from scheduler.reconcile import PLACEMENT_KINDS
from shared.dispatch import enqueue
from shared.event_kinds import EventKind
from shared.keys import Keys
from shared.parsed import Records
from shared.process_logs import fields
from shared.records import NodeRecord, NodeStatus, ServiceFault, ServiceRecord, Unreadable, describe, record_digest
from shared.settings import Settings
from shared.storage import SchedulerStore
from shared.storage.connection import NotLeader, connect

log = logging.getLogger("gorchester.scheduler")

# Waits between tries to reach Redis again, doubling from the first to the last: a failover (about 3.3 s)
# is followed within a second of the new master being named, and a long outage costs a try a second.
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 1.0
PLACEMENTS = frozenset(PLACEMENT_KINDS.values())  # the events of the scheduler's placements
# The scheduler judges a node's health; its availability (drain, activate) is an operator's, announced by the
# API with the change itself (node_draining, node_activated: when, and at whose request). So a drained node
# that answers again is `ready` here (its message says it is draining), and no availability change is told twice.
NODE_EVENTS = {
    NodeStatus.DOWN: EventKind.NODE_DOWN,
    NodeStatus.NOT_READY: EventKind.NODE_NOT_READY,
    NodeStatus.READY: EventKind.NODE_READY,
    NodeStatus.DRAINING: EventKind.NODE_READY,
}
AVAILABILITY_CHANGES = frozenset({(NodeStatus.READY, NodeStatus.DRAINING), (NodeStatus.DRAINING, NodeStatus.READY)})


def node_event(previous: NodeStatus | None, status: NodeStatus) -> EventKind | None:
    """The event a node's change of status makes, if any: none for the first look at it, for no change,
    or for a change of availability only (drained or activated while ready: the API's event says it)."""
    if previous is None or previous is status or (previous, status) in AVAILABILITY_CHANGES:
        return None
    return NODE_EVENTS[status]


class Reconnect:
    """How long to wait before trying Redis again: doubling from RECONNECT_FIRST to RECONNECT_MAX
    within one outage, from the first again once Redis has answered in between (a new outage)."""

    def __init__(self) -> None:
        self.next = RECONNECT_FIRST

    def after_failure(self, *, answered: bool) -> float:
        if answered:
            self.next = RECONNECT_FIRST
        wait, self.next = self.next, min(self.next * 2, RECONNECT_MAX)
        return wait


class Scheduler:
    def __init__(self, settings: Settings, store: SchedulerStore | None = None):
        self.settings = settings
        self.store = store or SchedulerStore.from_settings(settings)
        self.jobs_redis = connect(settings.redis_url, decode=False)
        self.queues = Keys(self.store.cluster)  # the nodes' RQ queues (shared/dispatch.py)
        self.policy = Policy.from_settings(settings)
        self.lease = self.store.lease(settings.leader_lease)
        self.node_status: dict[str, NodeStatus] = {}
        # Whether Redis has answered this leader without a break since it stored `heard_since` (shared/
        # keys.py): false after a takeover or a failed Redis call, until the next pass stores its own
        # time there. A node's silence counts only from then: nobody could beat while Redis was out.
        self.hearing = False
        self.unreadable_nodes: set[str] = set()  # reported once each (as down) until readable again
        self.unblamed: set[str] = set()  # names that raise in reconcile but name no service: logged once
        # Autoscaling and the pass's own numbers for GET /metrics (scheduler/autoscaler.py, shared/telemetry.py).
        self.autoscaler = Autoscaler(self.store, settings.metrics_interval)
        self.telemetry = self.store.reconcile_telemetry(time.time())
        self.last_pass = 0.0  # seconds the latest pass took
        self.answered = False  # whether Redis answered since the loop last (re)connected

    def lead(self) -> bool:
        was = self.lease.token if self.lease.held else None
        asked = time.monotonic()
        leading = self.lease.acquire_or_renew()
        if time.monotonic() - asked > self.settings.heartbeat_interval:
            # Redis kept us waiting (hung, then back before our socket timeout): the beats waited too.
            self.hearing = False
        if leading and self.lease.token != was:
            # Taken, or taken again at once from a Redis that did not grant the one we held (a failover).
            self.hearing = False  # what happened before the takeover (a Redis outage, say) is unknown
            log.info("became leader (%s)", self.lease.token, extra=fields(leader=self.lease.token))
            self.store.emit(
                EventKind.LEADER_CHANGED, f"scheduler {self.lease.token[:8]} is the leader", leader=self.lease.token
            )
        elif was and not leading:
            log.warning("lost leadership")
        return leading

    def reconcile_once(self, now: float | None = None) -> Plan:
        """One pass: snapshot -> plan -> fenced write -> enqueue the jobs of its writes."""
        now = time.time() if now is None else now
        began = time.perf_counter()
        if not self.hearing:
            # Redis answered the lease just now (the loop renews it before each pass), so from now on
            # nodes could beat; a node is not down until it has been silent for the window since.
            self.store.write_heard_since(now, leader_token=self.lease.token)
            self.hearing = True
        heard_since = self.store.heard_since()  # as the API reads it, so both judge nodes alike
        services = self.store.read_services()
        stored_tasks = self.store.read_tasks()
        stored_nodes = self.store.read_nodes()
        tasks = list(stored_tasks.good.values())
        # A node that cannot be read is not among them: to reconcile it is down, and its replicas move.
        nodes = sorted(stored_nodes.good.values(), key=lambda node: node.id)
        self._node_events(nodes, stored_nodes.unreadable, now, heard_since)
        read = time.perf_counter()
        # A service that cannot be read, or whose reconciliation raises, is left as it is (frozen) and
        # marked failed; the others are reconciled all the same.
        plan, raised = reconcile_isolated(
            services.good, tasks, nodes, now, self.policy,
            frozen=services.unreadable.keys(), unreadable=list(stored_tasks.unreadable.values()),
            heard_since=heard_since,
        )
        self._record_faults(services, raised, now)
        planned = time.perf_counter()
        read_as = stored_tasks.good
        landed = self.store.write_assignments(
            [(w.task, w.record, read_as.get(w.task)) for w in plan.writes], leader_token=self.lease.token,
            events=[[(e.kind, e.message, e.data) for e in w.events] for w in plan.writes], now=now,
        )
        done = plan.writes[:landed]  # all of them, unless the lease moved on between chunks
        written = time.perf_counter()
        enqueue(self.jobs_redis, self.queues, (job for w in done for job in w.jobs))
        for w in done:
            # A pending replica is written (with its event) only when its reason changes: one line per change.
            if w.record is not None and any(e.kind is EventKind.TASK_PENDING for e in w.events):
                log.warning("task pending", extra=fields(task=w.task, service=w.record.service, reason=w.record.reason))
        for change in plan.services:
            if self.store.write_service(change.expected, change.record, leader_token=self.lease.token):
                self.store.emit_many(((e.kind, e.message, e.data) for e in change.events), now)
        for name in plan.forget:
            self.store.forget_service(services.good[name], leader_token=self.lease.token)
        self.last_pass = time.perf_counter() - began
        if plan.writes or plan.forget or plan.services:
            placed = sum(1 for w in done for e in w.events if e.kind in PLACEMENTS)
            log.info(
                "reconciled: %d writes (%d placements), %d services forgotten; %d tasks, %d nodes; "
                "%.3fs (read %.3f, plan %.3f, write with events %.3f, enqueue %.3f)",
                len(plan.writes),
                placed,
                len(plan.forget),
                len(tasks),
                len(nodes),
                time.perf_counter() - began,
                read - began,
                planned - read,
                written - planned,
                time.perf_counter() - written,
            )
        self.telemetry.record(time.perf_counter() - began, tasks, [e for w in done for e in w.events])
        return plan

    def _node_events(
        self, nodes: list[NodeRecord], unreadable: dict[str, Unreadable], now: float, heard_since: float
    ) -> None:
        misses = self.policy.heartbeat_misses
        for node in nodes:
            status = node.status(now, misses, heard_since)
            previous = self.node_status.get(node.id)
            kind = node_event(previous, status)
            if kind is not None:
                reason = node.reason(now, misses, heard_since)
                message = f"node {node.id} is {status.value}" + (f": {reason}" if reason else "")
                self.store.emit(kind, message, now, node=node.id, reason=reason)
                level = logging.INFO if status in (NodeStatus.READY, NodeStatus.DRAINING) else logging.WARNING
                was = previous.value if previous is not None else None
                log.log(level, "node %s", status.value, extra=fields(node=node.id, previous=was, reason=reason))
            self.node_status[node.id] = status
            self.unreadable_nodes.discard(node.id)
        for node_id, entry in unreadable.items():
            if node_id not in self.unreadable_nodes:
                message = f"node {node_id} cannot be read ({entry.error}): taken as down"
                log.warning("%s", message)
                self.store.emit(EventKind.NODE_UNREADABLE, message, now, node=node_id, reason=entry.error)
                self.unreadable_nodes.add(node_id)
            self.node_status[node_id] = NodeStatus.DOWN
        known = {node.id for node in nodes} | unreadable.keys()  # a removed node is forgotten here too
        self.node_status = {node_id: status for node_id, status in self.node_status.items() if node_id in known}
        self.unreadable_nodes &= known

    def _record_faults(self, services: Records[ServiceRecord], raised: dict[str, Exception], now: float) -> None:
        """Mark failed the services this pass could not handle and clear those it now handles; each
        failure is announced once (a `service_failed` event), and so is a recovery."""
        reasons = {name: entry.reason for name, entry in services.unreadable.items()}
        for name, exc in raised.items():
            if name in services.good:
                reasons[name] = f"cannot be scheduled: {describe(exc)}"
            elif name not in self.unblamed:  # only tasks carry the name: nothing to mark, but worth a log line
                log.error("tasks of %r (no such service) cannot be reconciled; left as they are", name, exc_info=exc)
                self.unblamed.add(name)
        known = self.store.faults()
        failed: dict[str, ServiceFault] = {}
        for name, reason in reasons.items():
            digest = record_digest(services.bodies[name])
            old = known.get(name)
            if old is not None and (old.record, old.reason) == (digest, reason):
                continue
            failed[name] = ServiceFault(reason=reason, since=now if old is None else old.since, record=digest)
            if old is None or old.record != digest:
                log.error("service %r failed: %s", name, reason, exc_info=raised.get(name))
                message = f"service {name} failed: {reason}"
                self.store.emit(EventKind.SERVICE_FAILED, message, now, service=name, reason=reason)
        cleared = [name for name in known if name not in reasons]
        self.store.write_faults(failed, cleared, leader_token=self.lease.token)
        for name in cleared:
            record = services.good.get(name)
            if record is not None and not record.deleting:
                log.info("service %r recovered", name)
                self.store.emit(EventKind.SERVICE_RECOVERED, f"service {name} is scheduled again", now, service=name)

    def run(self, stop: threading.Event) -> None:
        reconnect = Reconnect()
        while not stop.is_set():
            self.answered = False
            try:
                self._serve(stop)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.hearing = False  # the agents' beats may not have reached Redis either
                wait = reconnect.after_failure(answered=self.answered)
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, wait)
                stop.wait(wait)
        self.lease.release()

    def _serve(self, stop: threading.Event) -> None:
        pubsub = self.store.changes()
        self.answered = True
        try:
            while not stop.is_set():
                wait = self.settings.leader_lease / 3
                if self.lead():
                    try:
                        plan: Plan | None = self.reconcile_once()
                    except NotLeader:
                        self.lease.held = False
                        continue
                    except (redis.ConnectionError, redis.TimeoutError):
                        raise
                    except Exception as exc:  # noqa: BLE001 - the last resort: a pass that fails is tried again, never the end
                        log.exception("reconcile pass failed; trying again in %.1fs", self.settings.reconcile_interval)
                        if isinstance(exc, redis.RedisError):
                            self.hearing = False  # Redis refusing writes (MISCONF, OOM) refuses the beats too
                        plan = None
                    wait = min(wait, self.settings.reconcile_interval)
                    if plan is not None and plan.wake_at is not None:
                        wait = min(wait, max(plan.wake_at - time.time(), 0.01))
                    wait = min(wait, self.autoscaler.tick())
                if pubsub.get_message(timeout=wait) is not None:
                    # Rest as long as the last pass took: at most half a core goes to passes however
                    # fast notifications come (agents on many nodes), and the burst meanwhile is one pass.
                    # Capped at a sixth of the lease, so the lease is still renewed well before it expires.
                    stop.wait(min(self.last_pass, self.settings.leader_lease / 6))
                    while pubsub.get_message(timeout=0.005) is not None:
                        pass  # coalesce a burst of notifications into one pass
        finally:
            pubsub.close()
