"""The Redis adapter shared by the API, the scheduler and the node agents.

Services, tasks and nodes are JSON documents in Redis hashes (layout in shared/keys.py). Task
writes are compare-and-set on the task's `rev`, in one Lua call per batch, optionally fenced by
the scheduler's leader lease, so concurrent writers never lose each other's decisions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from shared import defaults
from shared.config import Config, ServiceSpec
from shared.errors import Conflict, NotFound, Unavailable
from shared.keys import Keys
from shared.records import Availability, NodeRecord, ServiceRecord, TaskRecord, TaskState
from shared.settings import Settings

# KEYS[1] tasks hash, KEYS[2] leader key (optional). ARGV[1] leader token ('' = unfenced),
# then triples (task id, expected rev or -1 for "absent", new JSON or '' to delete).
CAS_TASKS = """
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTLEADER')
end
local out = {}
for i = 2, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local rev = -1
  if current then rev = cjson.decode(current)['rev'] or 0 end
  if rev == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


class NotLeader(Exception):
    """The scheduler's lease was lost before its plan was written; nothing was written."""


def connect(url: str, *, timeout: float = defaults.DEFAULT_REDIS_TIMEOUT, decode: bool = True) -> redis.Redis:
    """A client that fails fast (seconds, not forever) and retries briefly with back-off."""
    return redis.Redis.from_url(
        url,
        decode_responses=decode,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@contextmanager
def unavailable_on_redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"redis unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        if "LOADING" in str(exc) or "MISCONF" in str(exc):
            raise Unavailable(f"redis unavailable: {exc}") from exc
        raise


class Store:
    def __init__(self, client: redis.Redis, cluster: str):
        # Typed loosely: redis-py's stubs cannot tell a decode_responses=True client returns str.
        self.redis: Any = client
        self.keys = Keys(cluster)
        self._cas = client.register_script(CAS_TASKS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(connect(settings.redis_url), settings.cluster)

    # -- services -----------------------------------------------------------------------------

    def services(self) -> dict[str, ServiceRecord]:
        raw = self.redis.hgetall(self.keys.services)
        return {name: ServiceRecord.model_validate_json(body) for name, body in raw.items()}

    def service(self, name: str) -> ServiceRecord:
        body = self.redis.hget(self.keys.services, name)
        if body is None:
            raise NotFound(f"service {name!r} not found")
        return ServiceRecord.model_validate_json(body)

    def create_service(self, spec: ServiceSpec, now: float) -> ServiceRecord:
        record = ServiceRecord(spec=spec, created_at=now, updated_at=now)
        if not self.redis.hsetnx(self.keys.services, spec.service_name, record.model_dump_json()):
            existing = self.service(spec.service_name)
            state = "is being deleted" if existing.deleting else "already exists"
            raise Conflict(f"service {spec.service_name!r} {state}")
        self.notify()
        return record

    def _change_service(
        self, name: str, change: Callable[[ServiceRecord | None], ServiceRecord | None]
    ) -> tuple[ServiceRecord | None, ServiceRecord | None]:
        """Read-modify-write one service atomically (WATCH/MULTI), retried on a concurrent write.

        `change` gets the current record (None if absent) and returns the new one, or None to write
        nothing; a change is published on the changes channel in the same transaction. Returns
        (old, new).
        """
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.keys.services)
                    body = pipe.hget(self.keys.services, name)
                    old = ServiceRecord.model_validate_json(body) if body is not None else None
                    new = change(old)
                    if new is None:
                        pipe.reset()
                        return old, None
                    pipe.multi()
                    pipe.hset(self.keys.services, name, new.model_dump_json())
                    pipe.publish(self.keys.changes, f"service:{name}")
                    pipe.execute()
                    return old, new
                except redis.WatchError:
                    continue

    def update_service(
        self, spec: ServiceSpec, now: float, *, create: bool = False, expected_version: int | None = None
    ) -> tuple[ServiceRecord, str]:
        """Replace a service's spec; returns the record and `created`, `updated` or `unchanged`.

        With `expected_version`, raise Conflict unless the stored service is still at that version
        (the autoscaler must not overwrite a change made since it read the spec).
        """
        name = spec.service_name

        def replace(old: ServiceRecord | None) -> ServiceRecord | None:
            if old is None:
                if not create:
                    raise NotFound(f"service {name!r} not found")
                return ServiceRecord(spec=spec, created_at=now, updated_at=now)
            if old.deleting:
                raise Conflict(f"service {name!r} is being deleted")
            if expected_version is not None and old.version != expected_version:
                raise Conflict(f"service {name!r} changed meanwhile (version {old.version}, not {expected_version})")
            if old.spec == spec:
                return None
            return old.with_spec(spec, now)  # a changed template starts a rolling update

        old, new = self._change_service(name, replace)
        if new is None:
            assert old is not None
            return old, "unchanged"
        return new, "updated" if old is not None else "created"

    def delete_service(self, name: str, now: float) -> tuple[ServiceRecord, bool]:
        """Mark for deletion; the scheduler stops its tasks and then drops the record.

        Returns the record and whether this call marked it (False: it was being deleted already).
        """
        def mark(old: ServiceRecord | None) -> ServiceRecord | None:
            if old is None:
                raise NotFound(f"service {name!r} not found")
            return None if old.deleting else old.model_copy(update={"deleting": True, "updated_at": now})

        old, new = self._change_service(name, mark)
        if new is not None:
            return new, True
        assert old is not None
        return old, False

    def write_service(self, expected: ServiceRecord, record: ServiceRecord, *, leader_token: str | None = None) -> bool:
        """The scheduler's write of a service (update progress, rollback): only if the stored record
        still equals `expected` and, with a token, the lease is still held. Publishes a change."""
        name = expected.name
        watched = [self.keys.services] + ([self.keys.leader] if leader_token else [])
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(*watched)
                if leader_token and pipe.get(self.keys.leader) != leader_token:
                    raise NotLeader("the lease moved on")
                body = pipe.hget(self.keys.services, name)
                if body is None or ServiceRecord.model_validate_json(body) != expected:
                    pipe.reset()
                    return False
                pipe.multi()
                pipe.hset(self.keys.services, name, record.model_dump_json())
                pipe.publish(self.keys.changes, f"service:{name}")
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def forget_service(self, name: str) -> None:
        """Drop a deleted service's record once nothing of it runs (the scheduler's last step)."""
        self.redis.hdel(self.keys.services, name)

    def apply(self, config: Config, now: float, *, prune: bool = False) -> dict[str, list[str]]:
        outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "deleted": []}
        for spec in config.services:
            _, what = self.update_service(spec, now, create=True)
            outcome[what].append(spec.service_name)
        if prune:
            named = {spec.service_name for spec in config.services}
            for name, record in self.services().items():
                if name not in named and not record.deleting:
                    self.delete_service(name, now)
                    outcome["deleted"].append(name)
        return outcome

    # -- tasks --------------------------------------------------------------------------------

    def tasks(self) -> list[TaskRecord]:
        return [TaskRecord.model_validate_json(body) for body in self.redis.hvals(self.keys.tasks)]

    def task(self, task_id: str) -> TaskRecord:
        body = self.redis.hget(self.keys.tasks, task_id)
        if body is None:
            raise NotFound(f"task {task_id!r} not found")
        return TaskRecord.model_validate_json(body)

    def write_tasks(
        self,
        writes: Iterable[tuple[str, int, TaskRecord | None]],
        *,
        leader_token: str | None = None,
    ) -> list[bool]:
        """Compare-and-set tasks: (id, expected rev or -1 if new, new record or None to delete).

        Each new record gets rev = expected + 1. With a leader token, nothing is written unless the
        lease is still held by that token (raises NotLeader).
        """
        args: list[Any] = [leader_token or ""]
        count = 0
        for task_id, expected, record in writes:
            body = ""
            if record is not None:
                record.rev = max(expected, 0) + 1
                body = record.model_dump_json()
            args += [task_id, expected, body]
            count += 1
        if not count:
            return []
        keys = [self.keys.tasks] + ([self.keys.leader] if leader_token else [])
        try:
            result = self._cas(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOTLEADER" in str(exc):
                raise NotLeader(str(exc)) from None
            raise
        return [bool(flag) for flag in result]

    def update_task(self, task_id: str, gen: int, **fields: Any) -> TaskRecord | None:
        """An agent's write: apply `fields` while the task is still at `gen`; None if it moved on."""
        while True:
            body = self.redis.hget(self.keys.tasks, task_id)
            if body is None:
                return None
            task = TaskRecord.model_validate_json(body)
            if task.gen != gen:
                return None
            updated = task.model_copy(update={**fields, "updated_at": time.time()})
            if self.write_tasks([(task_id, task.rev, updated)])[0]:
                return updated

    def request_stop(self, task_id: str) -> TaskRecord:
        """Mark a running task as stopped by its user (the agent stops it); unless-stopped keeps it so."""
        task = self.task(task_id)
        if task.state is not TaskState.RUNNING or task.node is None:
            raise Conflict(f"task {task_id!r} is {task.state.value}, not running")
        updated = self.update_task(task_id, task.gen, stop_requested=True)
        if updated is None:
            raise Conflict(f"task {task_id!r} changed meanwhile; try again")
        return updated

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

    def heartbeat(self, node_id: str, now: float, usage: dict[str, Any] | None = None) -> None:
        fields = {"last_heartbeat": json.dumps(now)}
        if usage is not None:
            fields["usage"] = json.dumps(usage)
        self.redis.hset(self.keys.node(node_id), mapping=fields)

    def nodes(self) -> list[NodeRecord]:
        ids = sorted(self.redis.smembers(self.keys.nodes))
        with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(self.keys.node(node_id))
            raw = pipe.execute()
        return [_node(fields) for fields in raw if fields]

    def node(self, node_id: str) -> NodeRecord:
        fields = self.redis.hgetall(self.keys.node(node_id))
        if not fields:
            raise NotFound(f"node {node_id!r} not found")
        return _node(fields)

    def set_availability(self, node_id: str, availability: Availability) -> NodeRecord:
        self.node(node_id)
        self.redis.hset(self.keys.node(node_id), "availability", json.dumps(availability.value))
        self.notify(f"node:{node_id}")
        return self.node(node_id)

    # -- notifications and events -------------------------------------------------------------

    def notify(self, hint: str = "") -> None:
        self.redis.publish(self.keys.changes, hint)

    def emit(self, kind: str, message: str, now: float | None = None, **data: Any) -> None:
        event = {"type": kind, "time": now if now is not None else time.time(), "message": message, "data": data}
        self.redis.xadd(
            self.keys.events,
            {"event": json.dumps(event)},
            maxlen=defaults.DEFAULT_EVENTS_MAXLEN,
            approximate=True,
        )

    def events(self, *, since: float | None = None, service: str | None = None, limit: int = 500) -> list[dict]:
        start = f"{int(since * 1000)}-0" if since else "-"
        raw = self.redis.xrange(self.keys.events, min=start, max="+")
        result = []
        for event_id, fields in raw:
            event = json.loads(fields["event"])
            if service and event["data"].get("service") != service:
                continue
            event["id"] = event_id
            result.append(event)
        return result[-limit:]


def _node(fields: dict[str, str]) -> NodeRecord:
    return NodeRecord.model_validate({name: json.loads(value) for name, value in fields.items()})
