"""The Redis adapter shared by the API, the scheduler and the node agents.

Services, tasks and nodes are JSON documents in Redis hashes (layout in shared/keys.py). A task is
the scheduler's assignment and its agent's status, each with one writer (shared/task_parts.py): the
scheduler's batches are fenced by its leader lease, an agent's only land while the assignment is
still the decision they report on, each batch in one Lua call.
"""

from __future__ import annotations

import copy
import json
import math
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.lock import Lock
from redis.retry import Retry

from shared import defaults, lease, redis_url
from shared.config import Config, ServiceSpec
from shared.errors import Conflict, NotFound, Unavailable
from shared.event_kinds import EventKind
from shared.keys import Keys
from shared.parsed import ParsedRecords, Record, Records
from shared.podnet import pick_subnet, usable
from shared.records import (
    MAX_COUNT,
    Availability,
    EngineHealth,
    NodeRecord,
    ServiceFault,
    ServiceOutcome,
    ServiceRecord,
    TaskRecord,
    TaskState,
    Unreadable,
)
from shared.settings import Settings
from shared.task_parts import StopRequest, TaskReader, TaskStatus, assignment_json, nodes_of

# The scheduler's writes of assignments (shared/task_parts.py). KEYS[1] assignments, KEYS[2] statuses,
# KEYS[3] stop requests, KEYS[4] the revision key, KEYS[5] the leader key (optional). ARGV[1] the
# leader's token ('' = unfenced), ARGV[2] a fresh revision token, ARGV[3] how many writes, then each:
# task id, assignment JSON or '' to drop the task, the gen up to which a user's stop request is
# settled, then a count and that many node index keys it leaves (SREM), a count and that many it joins
# (SADD). Then the node revision keys to replace. A dropped task's status and stop request go with it.
WRITE_ASSIGNMENTS = lease.LUA + """
if KEYS[5] and not holds(KEYS[5], ARGV[1]) then
  return redis.error_reply('NOTLEADER')
end
local stops = redis.call('HLEN', KEYS[3]) > 0
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local id, body, settled = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  if body == '' then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  else
    redis.call('HSET', KEYS[1], id, body)
    local stop = stops and redis.call('HGET', KEYS[3], id)
    if stop then
      local ok, request = pcall(cjson.decode, stop)
      local gen = ok and type(request) == 'table' and tonumber(request.gen) or nil
      if gen == nil or gen <= settled then redis.call('HDEL', KEYS[3], id) end
    end
  end
  for _ = 1, tonumber(ARGV[i]) do
    i = i + 1
    redis.call('SREM', ARGV[i], id)
  end
  i = i + 1
  for _ = 1, tonumber(ARGV[i]) do
    i = i + 1
    redis.call('SADD', ARGV[i], id)
  end
  i = i + 1
end
for j = i, #ARGV do redis.call('SET', ARGV[j], ARGV[2]) end
redis.call('SET', KEYS[4], ARGV[2])
return 1
"""

# An agent's status reports. KEYS[1] assignments, KEYS[2] statuses, KEYS[3] the revision key, KEYS[4]
# the node's revision key; ARGV[1] the agent's node, ARGV[2] a fresh revision token, then quadruples
# (task id, gen, incarnation, status JSON). Each is written only while the task's assignment is that
# decision on that node: 1, else 0.
WRITE_STATUSES = """
local out = {}
local wrote = false
for i = 3, #ARGV, 4 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local ok, assignment = false, nil
  if current then ok, assignment = pcall(cjson.decode, current) end
  if ok and type(assignment) == 'table' and assignment.node == ARGV[1]
      and tonumber(assignment.gen) == tonumber(ARGV[i + 1]) and (assignment.incarnation or '') == ARGV[i + 2] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 3])
    out[#out + 1] = 1
    wrote = true
  else
    out[#out + 1] = 0
  end
end
if wrote then
  redis.call('SET', KEYS[3], ARGV[2])
  redis.call('SET', KEYS[4], ARGV[2])
end
return out
"""

# Readers of some tasks: `emit` appends a task id and its three stored parts (nil where absent) from
# KEYS[2..4], the assignments, statuses and stop requests.
TASK_PARTS = """
local function emit(out, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
end
local out = {}
"""

# The tasks of some services. KEYS[1] the assignments (again); ARGV the services' task id prefixes
# (`web.`: a service name has no dot).
SERVICE_TASKS = TASK_PARTS + """
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  for _, prefix in ipairs(ARGV) do
    if string.sub(id, 1, #prefix) == prefix then
      emit(out, id)
      break
    end
  end
end
return out
"""

# An agent's read of its node's tasks. KEYS[1] the node's index.
NODE_TASKS = TASK_PARTS + """
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do emit(out, id) end
return out
"""

# KEYS[1] the nodes set; ARGV[1] the node hash key prefix. Each node's id, then its hash as one
# JSON object (field names are NodeRecord's identifiers; values are JSON already).
NODES_JSON = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  local parts = {}
  for i = 1, #fields, 2 do
    parts[#parts + 1] = '"' .. fields[i] .. '":' .. fields[i + 1]
  end
  out[#out + 1] = id
  out[#out + 1] = '{' .. table.concat(parts, ',') .. '}'
end
return out
"""

# KEYS[1] the leader key, KEYS[2] a key only the leader writes; ARGV[1] the leader's token, ARGV[2] the value.
SET_IF_LEADER = lease.LUA + """
if not holds(KEYS[1], ARGV[1]) then
  return redis.error_reply('NOTLEADER')
end
return redis.call('SET', KEYS[2], ARGV[2])
"""

# KEYS[1] the leader key; ARGV[1] the leader's token. 1 while that token holds the lease, else 0.
HOLDS_LEASE = lease.LUA + """
if holds(KEYS[1], ARGV[1]) then return 1 end
return 0
"""

ENGINE_LOCK_SECONDS = 30.0  # a network or volume is made in well under a second
WRITE_CHUNK = 2000  # task writes per Lua call: a huge plan must not block Redis for long at once

Outcome = TypeVar("Outcome")


class NotLeader(Exception):
    """The scheduler's lease was lost before its plan was written; nothing was written."""


def connect(
    url: str, *, timeout: float = defaults.DEFAULT_REDIS_TIMEOUT, decode: bool = True, retry_on_timeout: bool = True
) -> redis.Redis:
    """A client that fails fast (seconds, not forever) and retries briefly with back-off.

    Without `retry_on_timeout` a call to a hanging Redis ends after one `timeout` (the API's bound);
    a dropped connection is still retried."""
    retried = (redis.ConnectionError, redis.TimeoutError) if retry_on_timeout else (redis.ConnectionError,)
    return redis_url.client(
        url,
        decode_responses=decode,
        # Bytes that are not UTF-8 (a record written by hand) read as U+FFFD: that record is then
        # unreadable, rather than the whole reply of the hash it is in.
        encoding_errors="replace",
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2, supported_errors=retried),
        retry_on_error=list(retried),
    )


TRANSIENT_REFUSALS = ("LOADING", "MISCONF", "NOREPLICAS", "MASTERDOWN", "READONLY")


@contextmanager
def unavailable_on_redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"redis unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        # Redis loading its data, unable to persist, refusing writes without replicas, a replica, or
        # one whose master is down (in a failover): each passes.
        if str(exc).startswith(TRANSIENT_REFUSALS) or isinstance(exc, redis.exceptions.ReadOnlyError):
            raise Unavailable(f"redis unavailable: {exc}") from exc
        raise


class Store:
    def __init__(self, client: redis.Redis, cluster: str):
        self._bind(client)
        self.keys = Keys(cluster)
        # A snapshot (every scheduler pass, every list request) re-parses only what changed.
        self._services = ParsedRecords(ServiceRecord, lambda record: record.name)
        self._tasks = TaskReader()
        self._nodes = ParsedRecords(NodeRecord, lambda record: record.id)

    def _bind(self, client: redis.Redis) -> None:
        # Typed loosely: redis-py's stubs cannot tell a decode_responses=True client returns str.
        self.redis: Any = client
        self._write_assignments = client.register_script(WRITE_ASSIGNMENTS)
        self._write_statuses = client.register_script(WRITE_STATUSES)
        self._node_tasks = client.register_script(NODE_TASKS)
        self._service_tasks = client.register_script(SERVICE_TASKS)
        self._nodes_json = client.register_script(NODES_JSON)
        self._set_if_leader = client.register_script(SET_IF_LEADER)
        self._holds_lease = client.register_script(HOLDS_LEASE)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings.redis_url), settings.cluster)

    @contextmanager
    def pinned(self) -> Iterator[Store]:
        """This Store (its parsed records shared) on one connection of its pool, held until the block ends
        (so a WAIT after a write counts that write), then given back."""
        client = redis.Redis(connection_pool=self.redis.connection_pool, single_connection_client=True)
        pinned = copy.copy(self)
        pinned._bind(client)
        try:
            yield pinned
        finally:
            client.close()

    # -- services -----------------------------------------------------------------------------

    def read_services(self, names: Collection[str] | None = None) -> Records[ServiceRecord]:
        """Every service (or the named ones that exist), each parsed on its own: one that cannot be
        read is in `unreadable`, never raised. Records are shared between calls: never mutate one."""
        return self._read(self.redis, self.keys.services, self._services, names)

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

    def create_service(self, spec: ServiceSpec, now: float) -> ServiceRecord:
        record = ServiceRecord(spec=spec, created_at=now, updated_at=now)
        if not self.redis.hsetnx(self.keys.services, spec.service_name, record.model_dump_json()):
            existing = self.read_service(spec.service_name)
            if isinstance(existing, Unreadable):
                raise Conflict(f"service {spec.service_name!r} already exists; {unreadable_service(existing)}")
            state = "is being deleted" if existing.deleting else "already exists"
            raise Conflict(f"service {spec.service_name!r} {state}")
        self.touch()
        self.notify(f"service:{spec.service_name}")
        return record

    def _write_services(
        self,
        names: Collection[str] | None,
        decide: Callable[[Records[ServiceRecord]], tuple[dict[str, ServiceRecord], list[str], Outcome]],
    ) -> Outcome:
        """Read-modify-write of services in one WATCH/MULTI transaction, retried on a concurrent write.

        `decide` gets the services read (the named ones, or all) and returns the records to write, the
        names to drop and what to answer; it may raise to write nothing, and runs again on a retry.
        A change is published on the changes channel in the same transaction.
        """
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.keys.services)
                    writes, drops, outcome = decide(self._read(pipe, self.keys.services, self._services, names))
                    if not writes and not drops:
                        pipe.reset()
                        return outcome
                    pipe.multi()
                    if writes:
                        pipe.hset(self.keys.services, mapping={n: r.model_dump_json() for n, r in writes.items()})
                    if drops:
                        pipe.hdel(self.keys.services, *drops)
                    pipe.set(self.keys.revision, _token())
                    changed = [*writes, *drops]
                    pipe.publish(self.keys.changes, f"service:{changed[0]}" if len(changed) == 1 else "services")
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue

    def update_service(
        self, spec: ServiceSpec, now: float, *, create: bool = False, expected_version: int | None = None
    ) -> tuple[ServiceRecord, ServiceOutcome]:
        """Replace a service's spec; returns the record and `created`, `updated` or `unchanged`.

        With `expected_version`, raise Conflict unless the stored service is still at that version
        (the autoscaler must not overwrite a change made since it read the spec). A record that
        cannot be read is replaced whole.
        """
        name = spec.service_name

        def replace(current: Records[ServiceRecord]) -> tuple[dict[str, ServiceRecord], list[str], Revised]:
            record, outcome, changed = revise(name, current.entry(name), spec, now, create, expected_version)
            return ({name: record} if changed else {}), [], (record, outcome)

        return self._write_services([name], replace)

    def change_spec(
        self, name: str, respec: Callable[[ServiceSpec], ServiceSpec], now: float
    ) -> tuple[ServiceRecord, ServiceOutcome]:
        """Change a service's spec as `respec` says, from the spec read in the same transaction (a
        scale keeps a concurrent change of anything else); returns the record and the outcome."""

        def change(current: Records[ServiceRecord]) -> tuple[dict[str, ServiceRecord], list[str], Revised]:
            entry = current.entry(name)
            if isinstance(entry, Unreadable):
                raise Conflict(unreadable_service(entry))
            if entry is None:
                raise NotFound(f"service {name!r} not found")
            record, outcome, changed = revise(name, entry, respec(entry.spec), now, False, None)
            return ({name: record} if changed else {}), [], (record, outcome)

        return self._write_services([name], change)

    def delete_service(self, name: str, now: float) -> tuple[ServiceRecord | Unreadable, bool]:
        """Mark for deletion; the scheduler stops its tasks and then drops the record. A record that
        cannot be read is dropped at once (its tasks are then those of a service gone: stopped).

        Returns the record and whether this call deleted it (False: it was being deleted already).
        """
        Deleted = tuple[ServiceRecord | Unreadable, bool]

        def mark(current: Records[ServiceRecord]) -> tuple[dict[str, ServiceRecord], list[str], Deleted]:
            entry = current.entry(name)
            if entry is None:
                raise NotFound(f"service {name!r} not found")
            if isinstance(entry, Unreadable):
                return {}, [name], (entry, True)
            if entry.deleting:
                return {}, [], (entry, False)
            marked = entry.model_copy(update={"deleting": True, "updated_at": now})
            return {name: marked}, [], (marked, True)

        return self._write_services([name], mark)

    def apply(self, config: Config, now: float, *, prune: bool = False) -> dict[str, list[str]]:
        """Make the services match `config` in one transaction: whole or not at all. A service being
        deleted fails the whole apply (Conflict) with nothing written; `prune` deletes the others."""
        Outcomes = dict[str, list[str]]

        def converge(current: Records[ServiceRecord]) -> tuple[dict[str, ServiceRecord], list[str], Outcomes]:
            outcome: dict[str, list[str]] = {kind: [] for kind in ServiceOutcome}
            writes: dict[str, ServiceRecord] = {}
            drops: list[str] = []
            for spec in config.services:
                name = spec.service_name
                record, what, changed = revise(name, current.entry(name), spec, now, True, None)
                outcome[what].append(name)
                if changed:
                    writes[name] = record
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
            return writes, drops, outcome

        return self._write_services(None, converge)

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
        watched = [self.keys.services] + ([self.keys.leader] if leader_token else [])
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(*watched)
                if leader_token:
                    self._check_lease(pipe, leader_token)
                if self._read(pipe, self.keys.services, self._services, [name]).good.get(name) != expected:
                    pipe.reset()
                    return False
                pipe.multi()
                if record is None:
                    pipe.hdel(self.keys.services, name)
                else:
                    pipe.hset(self.keys.services, name, record.model_dump_json())
                    pipe.publish(self.keys.changes, f"service:{name}")
                pipe.set(self.keys.revision, _token())
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def _check_lease(self, pipe: Any, leader_token: str) -> None:
        """Raise NotLeader unless `leader_token` holds the lease (on a pipeline watching the lease: a
        change before its EXEC fails the transaction)."""
        if not self._holds_lease(keys=[self.keys.leader], args=[leader_token], client=pipe):
            raise NotLeader("the lease moved on")

    def _read(
        self, client: Any, key: str, parsed: ParsedRecords[Record], fields: Collection[str] | None
    ) -> Records[Record]:
        """The records of hash `key` (only the `fields` that exist, when given) through `client`."""
        if fields is None:
            return parsed.parse(client.hgetall(key))
        wanted = list(fields)
        bodies = client.hmget(key, wanted) if wanted else []
        return parsed.parse({f: body for f, body in zip(wanted, bodies, strict=True) if body is not None}, whole=False)

    # -- faults: services the scheduler cannot handle ----------------------------------------

    def faults(self) -> dict[str, ServiceFault]:
        """The scheduler's faults by service name (an entry that cannot be read is skipped)."""
        result = {}
        for name, body in self.redis.hgetall(self.keys.faults).items():
            try:
                result[name] = ServiceFault.model_validate_json(body)
            except ValueError:
                continue
        return result

    def write_faults(
        self, failed: dict[str, ServiceFault], cleared: Collection[str], *, leader_token: str | None = None
    ) -> None:
        """The scheduler's record of which services it cannot handle; with a token, only while it
        holds the lease. Replaces the revision, so cached views show it."""
        if not failed and not cleared:
            return
        with self.redis.pipeline() as pipe:
            if leader_token:
                pipe.watch(self.keys.leader)
                self._check_lease(pipe, leader_token)
            pipe.multi()
            if failed:
                pipe.hset(self.keys.faults, mapping={name: fault.model_dump_json() for name, fault in failed.items()})
            if cleared:
                pipe.hdel(self.keys.faults, *cleared)
            pipe.set(self.keys.revision, _token())
            try:
                pipe.execute()
            except redis.WatchError:
                raise NotLeader("the lease moved on") from None

    def touch(self) -> None:
        """Mark services or tasks as changed for readers caching views by the revision."""
        self.redis.set(self.keys.revision, _token())

    def revision(self) -> str | None:
        """The token of the latest write of services or tasks (None: unknown; do not cache)."""
        value: str | None = self.redis.get(self.keys.revision)
        return value

    def node_revision(self, node_id: str) -> str | None:
        """The token of the latest write of an assignment naming the node or of its tasks' status."""
        value: str | None = self.redis.get(self.keys.node_revision(node_id))
        return value

    # -- tasks: the scheduler's assignments, the agents' statuses, users' stop requests ------

    def read_tasks(self, task_ids: Collection[str] | None = None) -> Records[TaskRecord]:
        """Every task (or the named ones that exist): its assignment joined with its agent's status and
        a user's stop request (shared/task_parts.py), read in one transaction. A task whose assignment
        cannot be read is in `unreadable`, never raised; a status or stop request that cannot be read
        counts as none (its writer writes it afresh). `bodies` holds, per task, a key naming what was
        read of it. Records are shared between calls: never mutate one."""
        keys = (self.keys.assignments, self.keys.statuses, self.keys.stops)
        with self.redis.pipeline(transaction=True) as pipe:
            if task_ids is None:
                for key in keys:
                    pipe.hgetall(key)
                assignments, statuses, stops = pipe.execute()
            else:
                wanted = list(task_ids)
                if not wanted:
                    return Records({}, {}, {})
                for key in keys:
                    pipe.hmget(key, wanted)
                assignments, statuses, stops = (
                    {task_id: body for task_id, body in zip(wanted, bodies, strict=True) if body is not None}
                    for bodies in pipe.execute()
                )
        return self._tasks.join(assignments, statuses, stops, whole=task_ids is None)

    def tasks(self) -> list[TaskRecord]:
        """Every task that can be read (never mutate one)."""
        return list(self.read_tasks().good.values())

    def task_entries(self) -> list[tuple[str, TaskRecord]]:
        """Every task that can be read with a key naming what was read of it (readers may key caches on it)."""
        read = self.read_tasks()
        return [(read.bodies[task_id], task) for task_id, task in read.good.items()]

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

    def write_assignments(
        self, writes: Iterable[tuple[str, TaskRecord | None, TaskRecord | None]], *, leader_token: str | None = None
    ) -> int:
        """The scheduler's decisions: (task id, the task as decided or None to drop it, the task as the
        scheduler read it or None when new or unreadable). Only the assignment is written (the agent's
        part of the record is its status), each with the next rev, and the nodes' indexes follow it.
        With a leader token, nothing is written unless the lease is still held by that token (raises
        NotLeader); a plan larger than WRITE_CHUNK is written in chunks, each fenced. Returns how many
        of the writes landed, in order: all, or those of the chunks before the lease moved on."""
        keys = [self.keys.assignments, self.keys.statuses, self.keys.stops, self.keys.revision]
        keys += [self.keys.leader] if leader_token else []
        pending = list(writes)
        for start in range(0, len(pending), WRITE_CHUNK):
            chunk = pending[start : start + WRITE_CHUNK]
            args: list[Any] = [leader_token or "", _token(), len(chunk)]
            touched: set[str] = set()
            for task_id, record, before in chunk:
                old, new = nodes_of(before), nodes_of(record)
                if record is None:
                    args += [task_id, "", 0]
                else:
                    record.rev = record.rev + 1 if 0 <= record.rev < MAX_COUNT else 0
                    settled = record.gen if record.stop_requested else record.gen - 1
                    args += [task_id, assignment_json(record), settled]
                args += [len(old - new), *(self.keys.node_tasks(n) for n in sorted(old - new))]
                args += [len(new), *(self.keys.node_tasks(n) for n in sorted(new))]
                touched |= old | new
            args += [self.keys.node_revision(n) for n in sorted(touched)]
            try:
                self._write_assignments(keys=keys, args=args)
            except redis.ResponseError as exc:
                if "NOTLEADER" not in str(exc):
                    raise
                if not start:
                    raise NotLeader(str(exc)) from None
                return start  # deposed between chunks: what was written stands (each chunk was fenced)
        return len(pending)

    def node_tasks(self, node_id: str) -> Records[TaskRecord]:
        """The tasks whose assignment names this node (as its node or its previous container's), as
        `read_tasks` reads them, in one Lua call over the node's index: what an agent reads of the
        cluster's tasks, in proportion to its own. A task that left the node since it was indexed
        (an index of data gone back in time, an unreadable record's) is left out."""
        keys = [self.keys.node_tasks(node_id), self.keys.assignments, self.keys.statuses, self.keys.stops]
        read = self._joined(self._node_tasks(keys=keys))
        good = {task_id: task for task_id, task in read.good.items() if node_id in nodes_of(task)}
        return Records(good, read.unreadable, {task_id: read.bodies[task_id] for task_id in good})

    def service_tasks(self, names: Collection[str]) -> list[TaskRecord]:
        """The tasks of the named services that can be read, in one Lua call that picks them out in Redis
        (a view of one service reads its own tasks, not the cluster's)."""
        if not names:
            return []
        keys = [self.keys.assignments, self.keys.assignments, self.keys.statuses, self.keys.stops]
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

    def write_statuses(self, node_id: str, statuses: Sequence[TaskStatus]) -> list[bool]:
        """An agent's reports about its node's tasks: each is written only while the task's assignment is
        still its decision (node, gen, incarnation), in one Lua call. Returns which were written."""
        if not statuses:
            return []
        args: list[Any] = [node_id, _token()]
        for status in statuses:
            args += [status.id, status.gen, status.incarnation, status.model_dump_json()]
        keys = [self.keys.assignments, self.keys.statuses, self.keys.revision, self.keys.node_revision(node_id)]
        flags = self._write_statuses(keys=keys, args=args)
        return [bool(flag) for flag in flags]

    def request_stop(self, task_id: str, now: float) -> TaskRecord:
        """A user's stop of a running task: recorded for the decision it runs at, which the scheduler
        folds in and sends to the node (unless-stopped keeps it stopped). Returns the task as it now reads."""
        task = self.task(task_id)
        if task.state is not TaskState.RUNNING or task.node is None:
            raise Conflict(f"task {task_id!r} is {task.state.value}, not running")
        request = StopRequest(id=task.id, gen=task.gen, incarnation=task.incarnation, at=now)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.stops, task.id, request.model_dump_json())
            pipe.set(self.keys.revision, _token())
            pipe.publish(self.keys.changes, f"task:{task.id}")
            pipe.execute()
        return task.model_copy(update={"stop_requested": True})

    # -- nodes --------------------------------------------------------------------------------

    def register_node(self, node: NodeRecord) -> None:
        key = self.keys.node(node.id)
        fields = {name: json.dumps(value) for name, value in node.model_dump(mode="json").items()}
        if self.redis.exists(key):
            # A returning node keeps the availability an operator gave it (drain survives restarts).
            fields.pop("availability", None)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=fields)
            pipe.sadd(self.keys.nodes, node.id)
            pipe.publish(self.keys.changes, f"node:{node.id}")
            pipe.execute()

    def heartbeat(
        self,
        node_id: str,
        now: float,
        usage: dict[str, Any] | None = None,
        *,
        engine: EngineHealth | None = None,
        engine_id: str | None = None,
    ) -> None:
        """The agent's beat; with `engine`, what it found of its Docker engine (NodeRecord.engine_error),
        and with `engine_id`, which engine that is (known once it has answered)."""
        fields = {"last_heartbeat": json.dumps(now)}
        if usage is not None:
            fields["usage"] = json.dumps(usage)
        if engine is not None:
            fields["engine_error"] = json.dumps(engine.error)
            fields["engine_error_since"] = json.dumps(engine.since)
        if engine_id is not None:
            fields["engine_id"] = json.dumps(engine_id)
        self.redis.hset(self.keys.node(node_id), mapping=fields)

    def heartbeat_many(self, node_ids: Iterable[str], now: float) -> None:
        """Heartbeats of several nodes (a process hosting many, worker/hollow.py) in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.hset(self.keys.node(node_id), "last_heartbeat", json.dumps(now))
            pipe.execute()

    def read_nodes(self) -> Records[NodeRecord]:
        """Every registered node, each parsed on its own: one Lua call returns each node's hash as one
        JSON object (its fields hold JSON already), so a thousand nodes are a thousand strings to parse.
        A node whose hash cannot be read is in `unreadable`."""
        flat = self._nodes_json(keys=[self.keys.nodes], args=[self.keys.node("")])
        # A member whose hash is gone ("{}") is no node (yet): an agent registering, or Redis' data lost.
        entries = zip(flat[::2], flat[1::2], strict=True)
        return self._nodes.parse({node_id: body for node_id, body in entries if body != "{}"})

    def nodes(self) -> list[NodeRecord]:
        """Every node that can be read, sorted by id."""
        return sorted(self.read_nodes().good.values(), key=lambda node: node.id)

    def node(self, node_id: str) -> NodeRecord:
        return self._node(node_id, self.redis.hgetall(self.keys.node(node_id)))

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

    def set_availability(self, node_id: str, availability: Availability) -> NodeRecord:
        """Drain or activate a node that exists and can be read (checked and written in one transaction)."""
        key = self.keys.node(node_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    node = self._node(node_id, pipe.hgetall(key))
                    pipe.multi()
                    pipe.hset(key, "availability", json.dumps(availability.value))
                    pipe.publish(self.keys.changes, f"node:{node_id}")
                    pipe.execute()
                    return node.model_copy(update={"availability": availability})
                except redis.WatchError:
                    continue

    def heard_since(self) -> float:
        """Since when the leading scheduler has heard Redis without a break: it took the lease, or Redis
        answered it again, then (NodeRecord.down_at). The scheduler and the API both judge nodes by it.
        0 (nodes judged by their heartbeats alone) when no scheduler wrote it, or it is not a time."""
        raw = self.redis.get(self.keys.heard_since)
        try:
            value = float(raw) if raw is not None else 0.0
        except ValueError:
            return 0.0
        return value if math.isfinite(value) and value >= 0 else 0.0

    def write_heard_since(self, when: float, *, leader_token: str) -> None:
        """The leader's `heard_since`, written only while `leader_token` holds the lease (else NotLeader)."""
        try:
            self._set_if_leader(keys=[self.keys.leader, self.keys.heard_since], args=[leader_token, json.dumps(when)])
        except redis.ResponseError as exc:
            if "NOTLEADER" not in str(exc):
                raise
            raise NotLeader(str(exc)) from None

    # -- the pod network ---------------------------------------------------------------------

    def subnets(self) -> dict[str, str]:
        """Each engine's subnet of the cluster's pod range, by engine id (shared/podnet.py)."""
        subnets: dict[str, str] = self.redis.hgetall(self.keys.subnets)
        return subnets

    def claim_subnet(self, engine_id: str, subnet: str) -> None:
        """Record the subnet an engine's bridge of the cluster has (found on the engine as it is)."""
        self.redis.hset(self.keys.subnets, engine_id, subnet)

    def allocate_subnet(self, engine_id: str, cidr: str, clashes: Collection[str]) -> str:
        """The engine's subnet of the pod range `cidr`: the one it has, else the lowest /24 no other engine
        of the cluster has and overlapping none of `clashes` (the engine's other networks), recorded in one
        compare-and-set. Callers hold the engine's lock (Store.engine_lock)."""
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.keys.subnets)
                    current: dict[str, str] = pipe.hgetall(self.keys.subnets)
                    taken = [subnet for engine, subnet in current.items() if engine != engine_id]
                    mine = current.get(engine_id)
                    if mine is not None and usable(mine, taken, clashes):
                        pipe.reset()
                        return mine
                    chosen = pick_subnet(cidr, taken, clashes)
                    pipe.multi()
                    pipe.hset(self.keys.subnets, engine_id, chosen)
                    pipe.execute()
                    return chosen
                except redis.WatchError:
                    continue

    # -- locks ---------------------------------------------------------------------------------

    def engine_lock(self, engine_id: str, what: str) -> Lock:
        """A lock on making `what` on one Docker engine (agents sharing an engine must not both make
        it); waits up to ENGINE_LOCK_SECONDS, and lapses after that long if its holder dies."""
        lock: Lock = self.redis.lock(
            self.keys.engine_lock(engine_id, what), timeout=ENGINE_LOCK_SECONDS, blocking_timeout=ENGINE_LOCK_SECONDS
        )
        return lock

    # -- notifications and events -------------------------------------------------------------

    def notify(self, hint: str = "") -> None:
        self.redis.publish(self.keys.changes, hint)

    def emit(self, kind: EventKind, message: str, now: float | None = None, **data: Any) -> None:
        self.emit_many([(kind, message, data)], now)

    def emit_many(self, events: Iterable[tuple[EventKind, str, dict[str, Any]]], now: float | None = None) -> None:
        """Append events (kind, message, data) in pipelined round trips."""
        when = now if now is not None else time.time()
        with self.redis.pipeline(transaction=False) as pipe:
            for queued, (kind, message, data) in enumerate(events, 1):
                event = {"type": kind, "time": when, "message": message, "data": data}
                pipe.xadd(
                    self.keys.events,
                    {"event": json.dumps(event)},
                    maxlen=defaults.DEFAULT_EVENTS_MAXLEN,
                    approximate=True,
                )
                if queued % 1000 == 0:
                    pipe.execute()
            pipe.execute()

    def events(self, *, since: float | None = None, service: str | None = None, limit: int = 500) -> list[dict]:
        """Events oldest first (an entry that is not an event as `emit` writes them is skipped)."""
        start = f"{int(since * 1000)}-0" if since else "-"
        raw = self.redis.xrange(self.keys.events, min=start, max="+")
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
            if service and data.get("service") != service:
                continue
            event["id"] = event_id
            result.append(event)
        return result[-limit:]


Revised = tuple[ServiceRecord, ServiceOutcome]  # a service record and the outcome: created, updated or unchanged


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
    if expected_version is not None and current.version != expected_version:
        raise Conflict(f"service {name!r} changed meanwhile (version {current.version}, not {expected_version})")
    if current.spec == spec:
        return current, ServiceOutcome.UNCHANGED, False
    return current.with_spec(spec, now), ServiceOutcome.UPDATED, True  # a changed template starts a rolling update


def unreadable_service(entry: Unreadable) -> str:
    return f"service {entry.key!r} cannot be read ({entry.error}); replace it (PUT) or delete it"


def _token() -> str:
    return uuid.uuid4().hex
