"""Users' changes, as the API (and a scheduler given a config file) makes them: services created,
replaced, scaled, deleted or applied from a config, a running task's stop, a node's drain. Each is one
transaction with the change notice and the events it makes, so a change is never without its event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from shared import defaults
from shared.config import Config, ServiceSpec
from shared.errors import Conflict, NotFound
from shared.event_kinds import EventKind
from shared.parsed import Records
from shared.records import (
    Availability,
    NodeRecord,
    Rebalance,
    ServiceOutcome,
    ServiceRecord,
    TaskRecord,
    TaskState,
    Unreadable,
    UpdateState,
    record_digest,
)
from shared.storage import changelog, history
from shared.storage.base import Event, add_event
from shared.storage.reads import Reads, unreadable_service
from shared.task_parts import StopRequest

INDEX_LENGTH = 16  # hex digits of a check index
Outcome = TypeVar("Outcome")
Revised = tuple[ServiceRecord, ServiceOutcome]  # a service record and the outcome: created, updated or unchanged
# What a read-modify-write of services decides: the records to write, the names to drop, the answer and the events.
Decided = tuple[dict[str, ServiceRecord], list[str], Outcome, list[Event]]
Announce = Callable[[ServiceRecord, ServiceOutcome], list[Event]] | None

EVENT_MESSAGES = {
    ServiceOutcome.CREATED: (EventKind.SERVICE_CREATED, "service {name} created"),
    ServiceOutcome.UPDATED: (EventKind.SERVICE_UPDATED, "service {name} updated"),
    ServiceOutcome.DELETED: (EventKind.SERVICE_DELETED, "service {name} marked for deletion"),
}
AVAILABILITY_EVENTS = {
    Availability.DRAIN: (EventKind.NODE_DRAINING, "node {id} draining: its tasks move elsewhere"),
    Availability.ACTIVE: (EventKind.NODE_ACTIVATED, "node {id} active: it takes new tasks again"),
}


def announced(name: str, outcome: ServiceOutcome, record: ServiceRecord | None = None) -> list[Event]:
    """What a user's change of a service says in the events: created, updated (and, when the change
    starts a rolling update, that), or marked for deletion; nothing when unchanged."""
    if outcome not in EVENT_MESSAGES:
        return []
    kind, message = EVENT_MESSAGES[outcome]
    events: list[Event] = [(kind, message.format(name=name), {"service": name})]
    update = record.update if record is not None else None
    started = record is not None and update is not None and update.version == record.version and record.updating
    if outcome is ServiceOutcome.UPDATED and record is not None and started:
        text = f"service {name}: rolling update to version {record.version} started"
        events.append((EventKind.SERVICE_UPDATE_STARTED, text, {"service": name, "version": record.version}))
    return events


def announcing(name: str) -> Callable[[ServiceRecord, ServiceOutcome], list[Event]]:
    return lambda record, outcome: announced(name, outcome, record)


@dataclass(frozen=True)
class Applied:
    """What an apply did: the names per outcome, and the version each named service's record has now
    (a rolling update it started rolls out that version)."""

    outcome: dict[ServiceOutcome, list[str]]
    versions: dict[str, int]


class UserWrites(Reads):
    def create_service(self, spec: ServiceSpec, now: float) -> ServiceRecord:
        """A new service, with its event, in one round trip; Conflict when the name is taken."""
        name = spec.service_name
        record = ServiceRecord(spec=spec, created_at=now, updated_at=now)
        (_, message, data), = announced(name, ServiceOutcome.CREATED)
        event = json.dumps({"type": EventKind.SERVICE_CREATED, "time": now, "message": message, "data": data})
        keys = [self._keys.services, self._keys.changelog, self._keys.events, self._keys.history(name)]
        created = history.revision(None, record, now, history.Cause.CREATED)
        assert created is not None
        args: list[str | int] = [
            name, record.model_dump_json(), self._keys.changes, event, defaults.DEFAULT_EVENTS_MAXLEN,
            created.model_dump_json(),
        ]
        if not self._create_service(keys=keys, args=args):
            existing = self.read_service(name)
            if isinstance(existing, Unreadable):
                raise Conflict(f"service {name!r} already exists; {unreadable_service(existing)}")
            state = "is being deleted" if existing.deleting else "already exists"
            raise Conflict(f"service {name!r} {state}")
        return record

    def _write_services(
        self, names: Collection[str] | None, decide: Callable[[Records[ServiceRecord]], Decided[Outcome]], now: float,
        *, cause: tuple[history.Cause, str | None] = (history.Cause.UPDATED, None),
    ) -> Outcome:
        """Read-modify-write of services in one WATCH/MULTI transaction, retried on a concurrent write.

        `decide` gets the services read (the named ones, or all) and returns the records to write, the
        names to drop, what to answer and the events to add; it may raise to write nothing, and runs
        again on a retry. The change notice, the events and the history entries of new templates (made
        for `cause`) go in the same transaction.
        """
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._keys.services)
                    current = self._read(pipe, self._keys.services, self._services, names)
                    writes, drops, outcome, events = decide(current)
                    if not writes and not drops:
                        pipe.reset()
                        return outcome
                    pipe.multi()
                    if writes:
                        pipe.hset(self._keys.services, mapping={n: r.model_dump_json() for n, r in writes.items()})
                        self._add_history(pipe, current, writes, now, cause)
                    if drops:
                        pipe.hdel(self._keys.services, *drops)
                        pipe.delete(*(self._keys.history(name) for name in drops))
                    changed = [*writes, *drops]
                    changelog.append(pipe, self._keys.changelog, services=changed)
                    pipe.publish(self._keys.changes, f"service:{changed[0]}" if len(changed) == 1 else "services")
                    for event in events:
                        add_event(pipe, self._keys, event, now)
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue

    def _add_history(
        self, pipe: Any, current: Records[ServiceRecord], writes: dict[str, ServiceRecord], now: float,
        cause: tuple[history.Cause, str | None],
    ) -> None:
        """The history entries of the written records that start a version of a new template; a record
        made afresh (new, or replacing one that could not be read) starts its history afresh."""
        for name, record in writes.items():
            before = current.entry(name)
            if not isinstance(before, ServiceRecord):
                pipe.delete(self._keys.history(name))
                before = None
            entry = history.revision(before, record, now, *cause)
            if entry is not None:
                history.push(pipe, self._keys.history(name), entry)

    def update_service(
        self, spec: ServiceSpec, now: float, *, create: bool = False, expected_version: int | None = None,
        events: Announce = None,
    ) -> tuple[ServiceRecord, ServiceOutcome]:
        """Replace a service's spec; returns the record and `created`, `updated` or `unchanged`. The events
        of a change are `events(record, outcome)` (default: `announced`), written with it.

        With `expected_version`, raise Conflict unless the stored service is still at that version
        (the autoscaler must not overwrite a change made since it read the spec). A record that
        cannot be read is replaced whole.
        """
        name = spec.service_name
        events = events or announcing(name)

        def replace(current: Records[ServiceRecord]) -> Decided[Revised]:
            record, outcome, changed = revise(name, current.entry(name), spec, now, create, expected_version)
            return ({name: record} if changed else {}), [], (record, outcome), events(record, outcome)

        return self._write_services([name], replace, now)

    def change_spec(
        self, name: str, respec: Callable[[ServiceSpec], ServiceSpec], now: float, *, events: Announce = None,
        cause: tuple[history.Cause, str | None] = (history.Cause.UPDATED, None),
    ) -> tuple[ServiceRecord, ServiceOutcome]:
        """Change a service's spec as `respec` says, from the spec read in the same transaction (a
        scale keeps a concurrent change of anything else); returns the record and the outcome. The
        events of a change are `events(record, outcome)` (default: `announced`), written with it; a new
        template's history entry says `cause`."""
        events = events or announcing(name)

        def change(current: Records[ServiceRecord]) -> Decided[Revised]:
            entry = _existing(current, name)
            record, outcome, changed = revise(name, entry, respec(entry.spec), now, False, None)
            return ({name: record} if changed else {}), [], (record, outcome), events(record, outcome)

        return self._write_services([name], change, now, cause=cause)

    def request_rebalance(self, name: str, now: float) -> ServiceRecord:
        """Ask the scheduler to spread the service's replicas evenly (scheduler/rebalance.py), with its
        event; a rebalance under way is left as it is."""

        def change(current: Records[ServiceRecord]) -> Decided[ServiceRecord]:
            entry = current.entry(name)
            record = requested_rebalance(name, entry, now)
            if record is entry:
                return {}, [], record, []
            event = (EventKind.SERVICE_REBALANCE_STARTED, f"service {name}: rebalance asked for", {"service": name})
            return {name: record}, [], record, [event]

        return self._write_services([name], change, now)

    def set_paused(self, name: str, paused: bool, now: float) -> ServiceRecord:
        """Pause the rolling update under way (no more replicas are replaced), or resume a paused one
        (from a fresh start: a replica of it that failed before is replaced again). Conflict when there
        is none to pause or resume."""

        def change(current: Records[ServiceRecord]) -> Decided[ServiceRecord]:
            record = _existing(current, name)
            update = record.update
            wanted = UpdateState.UPDATING if paused else UpdateState.PAUSED
            if update is None or update.state is not wanted:
                last = f"its last update is {update.state.value}" if update else "it was never updated"
                raise Conflict(f"service {name!r} has no rolling update {'under way' if paused else 'paused'}: {last}")
            if paused:
                changed = update.model_copy(update={"state": UpdateState.PAUSED, "reason": "paused by a user"})
                event = (EventKind.SERVICE_UPDATE_PAUSED, f"service {name}: rolling update paused by a user")
            else:
                changed = update.model_copy(
                    update={"state": UpdateState.UPDATING, "reason": None, "started_at": now, "next_batch_at": None}
                )
                event = (EventKind.SERVICE_UPDATE_RESUMED, f"service {name}: rolling update resumed")
            written = record.model_copy(update={"update": changed})
            data = {"service": name, "version": update.version}
            return {name: written}, [], written, [(*event, data)]

        return self._write_services([name], change, now)

    def delete_service(self, name: str, now: float) -> tuple[ServiceRecord | Unreadable, bool]:
        """Mark for deletion; the scheduler stops its tasks and then drops the record. A record that
        cannot be read is dropped at once (its tasks are then those of a service gone: stopped).

        Returns the record and whether this call deleted it (False: it was being deleted already).
        """
        Deleted = tuple[ServiceRecord | Unreadable, bool]

        def mark(current: Records[ServiceRecord]) -> Decided[Deleted]:
            entry = current.entry(name)
            if entry is None:
                raise NotFound(f"service {name!r} not found")
            deleted = announced(name, ServiceOutcome.DELETED)
            if isinstance(entry, Unreadable):
                return {}, [name], (entry, True), deleted
            if entry.deleting:
                return {}, [], (entry, False), []
            marked = entry.model_copy(update={"deleting": True, "updated_at": now})
            return {name: marked}, [], (marked, True), deleted

        return self._write_services([name], mark, now)

    def apply(self, config: Config, now: float, *, prune: bool = False, check_index: str | None = None) -> Applied:
        """Make the services match `config` in one transaction: whole or not at all. A service being
        deleted fails the whole apply (Conflict) with nothing written; `prune` deletes the others. With
        `check_index` (a plan's), Conflict unless the services are still as that plan saw them."""

        def converge(current: Records[ServiceRecord]) -> Decided[Applied]:
            if check_index is not None and (now_index := services_index(current)) != check_index:
                raise Conflict(
                    f"the services changed since the plan (check index {check_index}, now {now_index}): plan again"
                )
            applied = Applied({kind: [] for kind in ServiceOutcome}, {})
            outcome = applied.outcome
            writes: dict[str, ServiceRecord] = {}
            drops: list[str] = []
            events: list[Event] = []
            for spec in config.services:
                name = spec.service_name
                record, what, changed = revise(name, current.entry(name), spec, now, True, None)
                outcome[what].append(name)
                applied.versions[name] = record.version
                if changed:
                    writes[name] = record
                    events += announced(name, what, record)
            if prune:
                named = {spec.service_name for spec in config.services}
                for name in sorted(current.bodies.keys() - named):
                    entry = current.entry(name)
                    if isinstance(entry, Unreadable):
                        drops.append(name)
                    elif entry is not None and not entry.deleting:
                        writes[name] = entry.model_copy(update={"deleting": True, "updated_at": now})
                    else:
                        continue
                    outcome[ServiceOutcome.DELETED].append(name)
                    events += announced(name, ServiceOutcome.DELETED)
            return writes, drops, applied, events

        return self._write_services(None, converge, now)


    def request_stop(self, task_id: str, now: float) -> TaskRecord:
        """A user's stop of a running task: recorded for the decision it runs at, which the scheduler
        folds in and sends to the node (unless-stopped keeps it stopped). Returns the task as it now reads."""
        task = self.task(task_id)
        if task.state is not TaskState.RUNNING or task.node is None:
            raise Conflict(f"task {task_id!r} is {task.state.value}, not running")
        request = StopRequest(id=task.id, gen=task.gen, incarnation=task.incarnation, at=now)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.stops, task.id, request.model_dump_json())
            changelog.append(pipe, self._keys.changelog, tasks=[task.id])
            pipe.publish(self._keys.changes, f"task:{task.id}")
            message = f"{task.id} stop requested on {task.node}"
            data = {"service": task.service, "task": task.id, "node": task.node}
            add_event(pipe, self._keys, (EventKind.TASK_STOP_REQUESTED, message, data), now)
            pipe.execute()
        return task.model_copy(update={"stop_requested": True})

    def set_availability(self, node_id: str, availability: Availability, now: float) -> NodeRecord:
        """Drain or activate a node that exists and can be read (checked and written in one transaction,
        with its event)."""
        kind, message = AVAILABILITY_EVENTS[availability]
        key = self._keys.node(node_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    node = self._node(node_id, cast(dict[str, str], pipe.hgetall(key)))  # watching: answered at once
                    pipe.multi()
                    pipe.hset(key, "availability", json.dumps(availability.value))
                    pipe.publish(self._keys.changes, f"node:{node_id}")
                    add_event(pipe, self._keys, (kind, message.format(id=node_id), {"node": node_id}), now)
                    pipe.execute()
                    return node.model_copy(update={"availability": availability})
                except redis.WatchError:
                    continue


    def remove_node(self, node_id: str, now: float, keep: Callable[[NodeRecord], str | None]) -> NodeRecord | None:
        """Forget a node, as `docker node rm`: its record, its place among the nodes, its task index and
        revision go, with its event, in one transaction; refused (Conflict saying why) while `keep(node)`
        gives a reason, judged on the record read in that transaction. Returns the record as it was (None
        when it could not be read: nothing to keep). NotFound when it is neither registered nor recorded.
        Its tasks are then on no node: the scheduler places them again."""
        key = self._keys.node(node_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, self._keys.nodes)
                    fields = cast(dict[str, str], pipe.hgetall(key))  # watching: answered at once
                    if not fields and not pipe.sismember(self._keys.nodes, node_id):
                        raise NotFound(f"node {node_id!r} not found")
                    node = self._readable_node(node_id, fields)
                    why = keep(node) if node is not None else None
                    if why:
                        raise Conflict(why)
                    pipe.multi()
                    pipe.delete(key, self._keys.node_tasks(node_id), self._keys.node_revision(node_id))
                    pipe.srem(self._keys.nodes, node_id)
                    pipe.publish(self._keys.changes, f"node:{node_id}")
                    event = (EventKind.NODE_REMOVED, f"node {node_id} removed", {"node": node_id})
                    add_event(pipe, self._keys, event, now)
                    pipe.execute()
                    return node
                except redis.WatchError:
                    continue

    def _readable_node(self, node_id: str, fields: dict[str, str]) -> NodeRecord | None:
        if not fields:
            return None
        try:
            return self._node(node_id, fields)
        except Conflict:  # a record that cannot be read
            return None


def requested_rebalance(name: str, current: ServiceRecord | Unreadable | None, now: float) -> ServiceRecord:
    """The service with a rebalance asked for now (as it is, when one is under way already). NotFound;
    Conflict for a record that cannot be read, one being deleted, a global service (one replica per
    node: nothing to spread) or a rolling update under way (the update places its replicas)."""
    if isinstance(current, Unreadable):
        raise Conflict(unreadable_service(current))
    if current is None:
        raise NotFound(f"service {name!r} not found")
    if current.deleting:
        raise Conflict(f"service {name!r} is being deleted")
    if current.spec.is_global:
        raise Conflict(f"service {name!r} is global: it runs one replica per node, nothing to rebalance")
    if current.updating:
        assert current.update is not None
        raise Conflict(
            f"service {name!r} has a rolling update {current.update.state.value}: rebalance once it has ended"
        )
    if current.rebalancing:
        return current
    return current.model_copy(update={"rebalance": Rebalance(requested_at=now)})


def services_index(current: Records[ServiceRecord]) -> str:
    """A plan's check index: a digest of every service's name, version and deletion (of a record that
    cannot be read, its digest). A user's change, a rollback or the autoscaler changes it; an update's
    progress does not."""
    marks = sorted(
        f"{name}:{entry.version}:{int(entry.deleting)}" if isinstance(entry, ServiceRecord)
        else f"{name}:{record_digest(current.bodies[name])}"
        for name in current.bodies
        if (entry := current.entry(name)) is not None
    )
    return hashlib.sha256("\n".join(marks).encode()).hexdigest()[:INDEX_LENGTH]


def _existing(current: Records[ServiceRecord], name: str) -> ServiceRecord:
    """The service as read, or NotFound, or Conflict when its record cannot be read."""
    entry = current.entry(name)
    if isinstance(entry, Unreadable):
        raise Conflict(unreadable_service(entry))
    if entry is None:
        raise NotFound(f"service {name!r} not found")
    return entry


def revise(
    name: str,
    current: ServiceRecord | Unreadable | None,
    spec: ServiceSpec,
    now: float,
    create: bool,
    expected_version: int | None,
) -> tuple[ServiceRecord, ServiceOutcome, bool]:
    """A user's new spec for a service as stored now: (the record, `created` / `updated` /
    `unchanged`, whether to write it). A record that cannot be read is replaced whole."""
    if current is None:
        if not create:
            raise NotFound(f"service {name!r} not found")
        return ServiceRecord(spec=spec, created_at=now, updated_at=now), ServiceOutcome.CREATED, True
    if isinstance(current, Unreadable):
        if expected_version is not None:
            raise Conflict(unreadable_service(current))
        return ServiceRecord(spec=spec, created_at=now, updated_at=now), ServiceOutcome.UPDATED, True
    if current.deleting:
        raise Conflict(f"service {name!r} is being deleted")
    if current.spec.mode is not spec.mode:
        raise Conflict(
            f"service {name!r}: mode cannot change from {current.spec.mode.value} to {spec.mode.value} "
            "(delete the service and create it again)"
        )
    if expected_version is not None and current.version != expected_version:
        raise Conflict(f"service {name!r} changed meanwhile (version {current.version}, not {expected_version})")
    if current.spec == spec:
        return current, ServiceOutcome.UNCHANGED, False
    return current.with_spec(spec, now), ServiceOutcome.UPDATED, True  # a changed template starts a rolling update
