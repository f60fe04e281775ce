"""Reading the cluster's data: what the scheduler's pass and the API's views snapshot, and what an
agent reads of its own node. Nothing here writes."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import Conflict, NotFound
from shared.parsed import Records
from shared.records import AutoscaleState, NodeRecord, ServiceFault, ServiceRecord, TaskRecord, Unreadable
from shared.storage import changelog, history, telemetry
from shared.storage.base import StoreBase
from shared.storage.changelog import Changes
from shared.task_parts import nodes_of
from shared.telemetry import TaskSample


@dataclass(frozen=True)
class Snapshot:
    """Services, their faults and tasks as read in one transaction, at `revision` (the change log's
    last id then; None: no log)."""

    revision: str | None
    services: Records[ServiceRecord]
    faults: dict[str, ServiceFault]
    tasks: Records[TaskRecord]


class Reads(StoreBase):
    def read_services(self, names: Collection[str] | None = None) -> Records[ServiceRecord]:
        """Every service (or the named ones that exist), each parsed on its own: one that cannot be
        read is in `unreadable`, never raised. Records are shared between calls: never mutate one."""
        return self._read(self._redis, self._keys.services, self._services, names)

    def services(self) -> dict[str, ServiceRecord]:
        """Every service that can be read, by name (never mutate one)."""
        return self.read_services().good

    def services_named(self, names: Collection[str]) -> dict[str, ServiceRecord]:
        """The named services that exist and can be read, in one round trip."""
        return self.read_services(names).good

    def read_service(self, name: str) -> ServiceRecord | Unreadable:
        entry = self.read_services([name]).entry(name)
        if entry is None:
            raise NotFound(f"service {name!r} not found")
        return entry

    def service(self, name: str) -> ServiceRecord:
        """A service; Conflict when its record cannot be read (it can be replaced or deleted)."""
        entry = self.read_service(name)
        if isinstance(entry, Unreadable):
            raise Conflict(unreadable_service(entry))
        return entry

    def history(self, name: str) -> list[history.Revision]:
        """A service's rollout history, newest first (what can be read of it)."""
        key = self._keys.history(name)
        return history.parse(key, self._redis.lrange(key, 0, history.KEPT - 1))

    # -- faults: services the scheduler cannot handle ----------------------------------------

    def faults(self) -> dict[str, ServiceFault]:
        """The scheduler's faults by service name (an entry that cannot be read is skipped)."""
        return _faults(self._redis.hgetall(self._keys.faults))

    # -- the change log (shared/storage/changelog.py) -----------------------------------------

    def revision(self) -> str | None:
        """The id of the change log's last entry, replaced by every write of services, tasks or faults
        (None: no log, as in a fresh or flushed Redis; nothing to key a cache on)."""
        last: str | None = self._last_change(keys=[self._keys.changelog])
        return last

    def changes_since(self, revision: str) -> Changes | None:
        """What the writes after `revision` changed, in one round trip (None: no log)."""
        entries = self._redis.xrange(self._keys.changelog, min=revision, count=changelog.MAX_FOLLOW + 1)
        return changelog.since(revision, entries)

    def snapshot(self, tasks: Collection[str] | None = None, services: Collection[str] | None = None) -> Snapshot:
        """Services (with their faults) and tasks as of one revision, in one transaction: all of them,
        or the named ones that exist when `tasks` and `services` are given."""
        some = tasks is not None or services is not None
        task_ids, names = list(tasks or ()), list(services or ())
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self._keys.changelog, count=1)
            for key in (self._keys.services, self._keys.faults):
                _read_hash(pipe, key, names if some else None)
            for key in (self._keys.assignments, self._keys.statuses, self._keys.stops):
                _read_hash(pipe, key, task_ids if some else None)
            last, *answers = pipe.execute()
        services_read, faults, assignments, statuses, stops = (
            _hash_answer(answer, wanted)
            for answer, wanted in zip(answers, (names, names, task_ids, task_ids, task_ids), strict=True)
        )
        return Snapshot(
            revision=last[0][0] if last else None,
            services=self._services.parse(services_read, whole=not some),
            faults=_faults(faults),
            tasks=self._tasks.join(assignments, statuses, stops, whole=not some),
        )

    def node_revision(self, node_id: str) -> str | None:
        """The token of the latest write of an assignment naming the node or of its tasks' status."""
        value: str | None = self._redis.get(self._keys.node_revision(node_id))
        return value

    # -- tasks: the scheduler's assignments, the agents' statuses, users' stop requests ------

    def read_tasks(self, task_ids: Collection[str] | None = None) -> Records[TaskRecord]:
        """Every task (or the named ones that exist): its assignment joined with its agent's status and
        a user's stop request (shared/task_parts.py), read in one transaction. A task whose assignment
        cannot be read is in `unreadable`, never raised; a status or stop request that cannot be read
        counts as none (its writer writes it afresh). `bodies` holds, per task, a key naming what was
        read of it. Records are shared between calls: never mutate one."""
        wanted = None if task_ids is None else list(task_ids)
        if wanted == []:
            return Records({}, {}, {})
        with self._redis.pipeline(transaction=True) as pipe:
            for key in (self._keys.assignments, self._keys.statuses, self._keys.stops):
                _read_hash(pipe, key, wanted)
            assignments, statuses, stops = (_hash_answer(answer, wanted or []) for answer in pipe.execute())
        return self._tasks.join(assignments, statuses, stops, whole=task_ids is None)

    def tasks(self) -> list[TaskRecord]:
        """Every task that can be read (never mutate one)."""
        return list(self.read_tasks().good.values())

    def tasks_by_id(self, task_ids: Collection[str]) -> dict[str, TaskRecord]:
        """The named tasks that exist and can be read, in one round trip."""
        return self.read_tasks(task_ids).good

    def read_task(self, task_id: str) -> TaskRecord | Unreadable:
        entry = self.read_tasks([task_id]).entry(task_id)
        if entry is None:
            raise NotFound(f"task {task_id!r} not found")
        return entry

    def task(self, task_id: str) -> TaskRecord:
        """A task; Conflict when its record cannot be read (the scheduler replaces it)."""
        entry = self.read_task(task_id)
        if isinstance(entry, Unreadable):
            raise Conflict(f"task {task_id!r} cannot be read ({entry.error}); the scheduler replaces it")
        return entry

    def node_tasks(self, node_id: str) -> Records[TaskRecord]:
        """The tasks whose assignment names this node (as its node or its previous container's), as
        `read_tasks` reads them, in one Lua call over the node's index: what an agent reads of the
        cluster's tasks, in proportion to its own. A task that left the node since it was indexed
        (an index of data gone back in time, an unreadable record's) is left out."""
        keys = [self._keys.node_tasks(node_id), self._keys.assignments, self._keys.statuses, self._keys.stops]
        read = self._joined(self._node_tasks(keys=keys))
        good = {task_id: task for task_id, task in read.good.items() if node_id in nodes_of(task)}
        return Records(good, read.unreadable, {task_id: read.bodies[task_id] for task_id in good})

    def service_tasks(self, names: Collection[str]) -> list[TaskRecord]:
        """The tasks of the named services that can be read, in one Lua call that picks them out in Redis
        (a view of one service reads its own tasks, not the cluster's)."""
        if not names:
            return []
        keys = [self._keys.assignments, self._keys.assignments, self._keys.statuses, self._keys.stops]
        return list(self._joined(self._service_tasks(keys=keys, args=[f"{name}." for name in names])).good.values())

    def _joined(self, flat: list[Any]) -> Records[TaskRecord]:
        """Tasks from a Lua call's flat answer: each task id, then its assignment, status and stop request."""
        parts: tuple[dict[str, str], dict[str, str], dict[str, str]] = ({}, {}, {})
        for at in range(0, len(flat), 4):
            task_id = flat[at]
            for part, body in zip(parts, flat[at + 1 : at + 4], strict=True):
                if body is not None:
                    part[task_id] = body
        return self._tasks.join(*parts, whole=False)

    def read_nodes(self) -> Records[NodeRecord]:
        """Every registered node, each parsed on its own: one Lua call returns each node's hash as one
        JSON object (its fields hold JSON already), so a thousand nodes are a thousand strings to parse.
        A node whose hash cannot be read is in `unreadable`."""
        flat = self._nodes_json(keys=[self._keys.nodes], args=[self._keys.node("")])
        # A member whose hash is gone ("{}") is no node (yet): an agent registering, or Redis' data lost.
        entries = zip(flat[::2], flat[1::2], strict=True)
        return self._nodes.parse({node_id: body for node_id, body in entries if body != "{}"})

    def nodes(self) -> list[NodeRecord]:
        """Every node that can be read, sorted by id."""
        return sorted(self.read_nodes().good.values(), key=lambda node: node.id)

    def node(self, node_id: str) -> NodeRecord:
        return self._node(node_id, self._redis.hgetall(self._keys.node(node_id)))

    def _node(self, node_id: str, fields: dict[str, str]) -> NodeRecord:
        if not fields:
            raise NotFound(f"node {node_id!r} not found")
        # Each field holds JSON already: one JSON object of them is parsed in one go.
        body = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}"
        entry = self._nodes.parse({node_id: body}, whole=False).entry(node_id)
        if isinstance(entry, Unreadable):
            raise Conflict(f"node {node_id!r} cannot be read ({entry.error}); its agent rewrites it when it registers")
        assert entry is not None
        return entry

    def heard_since(self) -> float:
        """Since when the leading scheduler has heard Redis without a break: it took the lease, or Redis
        answered it again, then (NodeRecord.down_at). The scheduler and the API both judge nodes by it.
        0 (nodes judged by their heartbeats alone) when no scheduler wrote it, or it is not a time."""
        raw = self._redis.get(self._keys.heard_since)
        try:
            value = float(raw) if raw is not None else 0.0
        except ValueError:
            return 0.0
        return value if math.isfinite(value) and value >= 0 else 0.0

    def leader(self) -> str | None:
        """The token of the scheduler holding the lease (shared/storage/lease.py), None while none does."""
        token = self._lease_holder(keys=[self._keys.leader])
        return token if isinstance(token, str) else None

    # -- the pod network ---------------------------------------------------------------------

    def subnets(self) -> dict[str, str]:
        """Each engine's subnet of the cluster's pod range, by engine id (shared/podnet.py)."""
        subnets: dict[str, str] = self._redis.hgetall(self._keys.subnets)
        return subnets

    def events(
        self, *, since: float | None = None, service: str | None = None, node: str | None = None, limit: int = 500
    ) -> list[dict]:
        """Events oldest first, those about `service` and `node` when given (an entry that is not an event
        as `emit` writes them is skipped)."""
        start = f"{int(since * 1000)}-0" if since else "-"
        raw = self._redis.xrange(self._keys.events, min=start, max="+")
        result = []
        for event_id, fields in raw:
            try:
                event = json.loads(fields["event"])
                if not isinstance(event.get("type"), str) or not isinstance(event.get("time"), int | float):
                    continue
                data = event.setdefault("data", {})
                message = event.setdefault("message", "")
            except (KeyError, ValueError, AttributeError):
                continue
            if not isinstance(data, dict) or not isinstance(message, str):
                continue
            if (service and data.get("service") != service) or (node and data.get("node") != node):
                continue
            event["id"] = event_id
            result.append(event)
        return result[-limit:]



    # -- what nodes and the autoscaler measured ----------------------------------------------

    def autoscale_states(self, names: Collection[str] | None = None) -> dict[str, AutoscaleState]:
        """The autoscaler's state of each service it keeps one for (or of the named ones that have one);
        a state that cannot be read starts afresh."""
        wanted = None if names is None else list(names)
        with self._redis.pipeline(transaction=False) as pipe:
            _read_hash(pipe, self._keys.autoscale, wanted)
            bodies = _hash_answer(pipe.execute()[0], wanted or [])
        states = {}
        for name, body in bodies.items():
            try:
                states[name] = AutoscaleState.model_validate_json(body)
            except ValueError:
                states[name] = AutoscaleState()
        return states

    def latest_samples(self, task_ids: Sequence[str]) -> dict[str, TaskSample]:
        """The newest usage sample of each task that has one."""
        return telemetry.latest_samples(self._redis, self._keys, task_ids)

    def telemetry(self) -> dict[str, list[tuple[str, dict[str, str], float]]]:
        """Every counter and histogram recorded: metric name -> [(suffix, labels, value)]."""
        return telemetry.read_telemetry(self._redis, self._keys)

    def queue_depths(self, node_ids: Sequence[str]) -> list[int]:
        """How many jobs wait in each node's RQ queue, in the order asked."""
        with self._redis.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.llen(f"rq:queue:{self._keys.queue(node_id)}")
            depths: list[Any] = pipe.execute()
        return [int(depth) for depth in depths]

    def registered(self, node_id: str) -> bool:
        """Whether the node is among the registered ones (it has joined the cluster once)."""
        return bool(self._redis.sismember(self._keys.nodes, node_id))

    def node_exists(self, node_id: str) -> bool:
        """Whether the node's record is there (Redis may have lost it: its agent registers again)."""
        return bool(self._redis.exists(self._keys.node(node_id)))


def unreadable_service(entry: Unreadable) -> str:
    return f"service {entry.key!r} cannot be read ({entry.error}); replace it (PUT) or delete it"


def _read_hash(pipe: Any, key: str, fields: list[str] | None) -> None:
    """Queue the read of hash `key`: whole (answers a dict), or `fields` (answers their values)."""
    if fields is None:
        pipe.hgetall(key)
    elif fields:
        pipe.hmget(key, fields)
    else:
        pipe.exists(key)  # a placeholder answer: no fields asked


def _hash_answer(answer: Any, fields: list[str]) -> dict[str, str]:
    """What `_read_hash` queued answered, as field -> value (fields that exist only)."""
    if isinstance(answer, dict):
        return answer
    if isinstance(answer, list):
        return {field: value for field, value in zip(fields, answer, strict=True) if value is not None}
    return {}


def _faults(bodies: dict[str, str]) -> dict[str, ServiceFault]:
    result = {}
    for name, body in bodies.items():
        try:
            result[name] = ServiceFault.model_validate_json(body)
        except ValueError:
            continue
    return result
