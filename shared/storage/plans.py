"""The leading scheduler's writes: its decisions about tasks (the assignments), its changes of
services (update progress, rollback, the end of a deletion), its faults and autoscaling state. Each
fenced by its lease: a deposed leader writes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import redis

from shared import defaults
from shared.records import MAX_COUNT, AutoscaleState, ServiceFault, ServiceRecord, TaskRecord
from shared.storage import changelog, history, telemetry
from shared.storage.base import Event, StoreBase, event_json, token
from shared.storage.connection import NotLeader
from shared.storage.lease import Lease
from shared.task_parts import assignment_json, nodes_of

WRITE_CHUNK = 2000  # task writes per Lua call: a huge plan must not block Redis for long at once


class PlanWrites(StoreBase):
    def lease(self, seconds: float) -> Lease:
        """The scheduler's lease on leading this cluster (shared/storage/lease.py)."""
        return Lease(self._client, self._keys.leader, seconds)

    def write_assignments(
        self,
        writes: Iterable[tuple[str, TaskRecord | None, TaskRecord | None]],
        *,
        leader_token: str | None = None,
        events: Sequence[Iterable[Event]] = (),
        now: float | None = None,
    ) -> int:
        """The scheduler's decisions: (task id, the task as decided or None to drop it, the task as the
        scheduler read it or None when new or unreadable), and `events[i]` the events of the i-th
        (written with it, at `now`). Only the assignment is written (the agent's part of the record is
        its status), each with the next rev, and the nodes' indexes follow it. With a leader token,
        nothing is written unless the lease is still held by that token (raises NotLeader); a plan
        larger than WRITE_CHUNK is written in chunks, each fenced. Returns how many of the writes
        landed, in order: all, or those of the chunks before the lease moved on."""
        keys = [self._keys.assignments, self._keys.statuses, self._keys.stops, self._keys.changelog, self._keys.events]
        keys += [self._keys.leader] if leader_token else []
        pending = list(writes)
        when = now if now is not None else time.time()
        for start in range(0, len(pending), WRITE_CHUNK):
            chunk = pending[start : start + WRITE_CHUNK]
            args: list[Any] = [leader_token or "", token(), defaults.DEFAULT_EVENTS_MAXLEN, len(chunk)]
            touched: set[str] = set()
            for at, (task_id, record, before) in enumerate(chunk, start):
                old, new = nodes_of(before), nodes_of(record)
                if record is None:
                    args += [task_id, "", 0]
                else:
                    record.rev = record.rev + 1 if 0 <= record.rev < MAX_COUNT else 0
                    settled = record.gen if record.stop_requested else record.gen - 1
                    args += [task_id, assignment_json(record), settled]
                told = [event_json(event, when) for event in events[at]] if at < len(events) else []
                args += [len(told), *told]
                args += [len(old - new), *(self._keys.node_tasks(n) for n in sorted(old - new))]
                args += [len(new), *(self._keys.node_tasks(n) for n in sorted(new))]
                touched |= old | new
            args += [self._keys.node_revision(n) for n in sorted(touched)]
            try:
                self._write_assignments(keys=keys, args=args)
            except redis.ResponseError as exc:
                if "NOTLEADER" not in str(exc):
                    raise
                if not start:
                    raise NotLeader(str(exc)) from None
                return start  # deposed between chunks: what was written stands (each chunk was fenced)
        return len(pending)

    def write_service(self, expected: ServiceRecord, record: ServiceRecord, *, leader_token: str | None = None) -> bool:
        """The scheduler's write of a service (update progress, rollback): only if the stored record
        still equals `expected` and, with a token, the lease is still held. Publishes a change."""
        return self._swap_service(expected, record, leader_token)

    def forget_service(self, expected: ServiceRecord, *, leader_token: str | None = None) -> bool:
        """Drop a deleted service's record once nothing of it runs (the scheduler's last step), if it
        is still the record the scheduler read."""
        return self._swap_service(expected, None, leader_token)

    def _swap_service(self, expected: ServiceRecord, record: ServiceRecord | None, leader_token: str | None) -> bool:
        name = expected.name
        watched = [self._keys.services] + ([self._keys.leader] if leader_token else [])
        with self._redis.pipeline() as pipe:
            try:
                pipe.watch(*watched)
                if leader_token:
                    self._check_lease(pipe, leader_token)
                if self._read(pipe, self._keys.services, self._services, [name]).good.get(name) != expected:
                    pipe.reset()
                    return False
                pipe.multi()
                if record is None:
                    pipe.hdel(self._keys.services, name)
                    pipe.delete(self._keys.history(name))
                else:
                    pipe.hset(self._keys.services, name, record.model_dump_json())
                    pipe.publish(self._keys.changes, f"service:{name}")
                    reason = record.update.reason if record.update else None
                    entry = history.revision(expected, record, record.updated_at, history.Cause.ROLLED_BACK, reason)
                    if entry is not None:  # the scheduler changes a template only to roll it back
                        history.push(pipe, self._keys.history(name), entry)
                changelog.append(pipe, self._keys.changelog, services=[name])
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def write_faults(
        self, failed: dict[str, ServiceFault], cleared: Collection[str], *, leader_token: str | None = None
    ) -> None:
        """The scheduler's record of which services it cannot handle; with a token, only while it
        holds the lease. In the change log, so copies of the views show it."""
        if not failed and not cleared:
            return
        with self._redis.pipeline() as pipe:
            if leader_token:
                pipe.watch(self._keys.leader)
                self._check_lease(pipe, leader_token)
            pipe.multi()
            if failed:
                pipe.hset(self._keys.faults, mapping={name: fault.model_dump_json() for name, fault in failed.items()})
            if cleared:
                pipe.hdel(self._keys.faults, *cleared)
            changelog.append(pipe, self._keys.changelog, services=[*failed, *cleared])
            try:
                pipe.execute()
            except redis.WatchError:
                raise NotLeader("the lease moved on") from None

    def write_heard_since(self, when: float, *, leader_token: str) -> None:
        """The leader's `heard_since`, written only while `leader_token` holds the lease (else NotLeader)."""
        try:
            self._set_if_leader(keys=[self._keys.leader, self._keys.heard_since], args=[leader_token, json.dumps(when)])
        except redis.ResponseError as exc:
            if "NOTLEADER" not in str(exc):
                raise
            raise NotLeader(str(exc)) from None


    def write_autoscale_states(self, states: dict[str, AutoscaleState], gone: Collection[str] = ()) -> None:
        """The autoscaler's state of each service it looked at, and none for the services it no longer scales."""
        with self._redis.pipeline(transaction=False) as pipe:
            if gone:
                pipe.hdel(self._keys.autoscale, *gone)
            if states:
                pipe.hset(self._keys.autoscale, mapping={name: s.model_dump_json() for name, s in states.items()})
            pipe.execute()

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to one of the cluster's counters (shared/telemetry.py TELEMETRY)."""
        telemetry.count(self._redis, self._keys, name, amount, **labels)

    def reconcile_telemetry(self, since: float) -> telemetry.ReconcileTelemetry:
        """What the passes of a scheduler leading since `since` measure, recorded for GET /metrics."""
        return telemetry.ReconcileTelemetry(self._client, self._keys, since)

    def changes(self) -> redis.client.PubSub:
        """A subscription to the cluster's change notices (every write of services, tasks or nodes)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self._keys.changes)
        return pubsub
