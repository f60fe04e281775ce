"""What every role's view of the cluster's data shares: one Redis client, the key names, the parsed
records kept between reads, and the events and change notices every writer sends."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, Self, cast

import redis
from redis.client import Pipeline, PubSub
from redis.commands.core import Script
from redis.lock import Lock

from shared import defaults
from shared.event_kinds import EventKind
from shared.keys import Keys
from shared.parsed import ParsedRecords, Record, Records
from shared.records import NodeRecord, ServiceRecord
from shared.settings import Settings
from shared.storage import changelog, scripts
from shared.storage.connection import NotLeader, connect
from shared.task_parts import TaskReader

Event = tuple[EventKind, str, dict[str, Any]]  # kind, message, data


class Commands(Protocol):
    """The commands the storage package sends, as a client with `decode_responses=True` answers them
    (redis-py's own annotations cannot say a decoding client returns str)."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> bool | None: ...
    def hgetall(self, name: str) -> dict[str, str]: ...
    def hmget(self, name: str, keys: list[str]) -> list[str | None]: ...
    def hset(self, name: str, key: str | None = None, value: str | None = None,
             mapping: Mapping[str, str] | None = None) -> int: ...
    def exists(self, *names: str) -> int: ...
    def lrange(self, name: str, start: int, end: int) -> list[str]: ...
    def sismember(self, name: str, value: str) -> bool: ...
    def publish(self, channel: str, message: str) -> int: ...
    def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]: ...
    def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[str, dict[str, str]]]: ...
    def wait(self, num_replicas: int, timeout: int) -> int: ...
    def pipeline(self, transaction: bool = True) -> Pipeline: ...
    def pubsub(self, ignore_subscribe_messages: bool = False) -> PubSub: ...
    def lock(self, name: str, timeout: float | None = None, blocking_timeout: float | None = None) -> Lock: ...


class StoreBase:
    """One cluster's data in one Redis, through one client (and its pool). The role classes (shared/
    storage/reads.py and the writers beside it) add what each process may do with it."""

    def __init__(self, client: redis.Redis, cluster: str):
        self._bind(client)
        self._keys = Keys(cluster)
        # A snapshot (every scheduler pass, every list request) re-parses only what changed.
        self._services = ParsedRecords(ServiceRecord, lambda record: record.name)
        self._tasks = TaskReader()
        self._nodes = ParsedRecords(NodeRecord, lambda record: record.id)

    def _bind(self, client: redis.Redis) -> None:
        self._client = client
        self._redis = cast(Commands, client)
        self._write_assignments = self._script(scripts.WRITE_ASSIGNMENTS)
        self._write_statuses = self._script(scripts.WRITE_STATUSES)
        self._node_tasks = self._script(scripts.NODE_TASKS)
        self._service_tasks = self._script(scripts.SERVICE_TASKS)
        self._nodes_json = self._script(scripts.NODES_JSON)
        self._set_if_leader = self._script(scripts.SET_IF_LEADER)
        self._holds_lease = self._script(scripts.HOLDS_LEASE)
        self._lease_holder = self._script(scripts.LEASE_HOLDER)
        self._create_service = self._script(scripts.CREATE_SERVICE)
        self._last_change = self._script(scripts.LAST_CHANGE)

    def _script(self, text: str) -> Script:
        return self._client.register_script(text)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(connect(settings.redis_url), settings.cluster)

    @property
    def cluster(self) -> str:
        return self._keys.cluster

    @contextmanager
    def pinned(self) -> Iterator[Self]:
        """This store (its parsed records shared) on one connection of its pool, held until the block ends
        (so `wait_for_replica` after a write counts that write), then given back."""
        client = redis.Redis(connection_pool=self._client.connection_pool, single_connection_client=True)
        pinned = copy.copy(self)
        pinned._bind(client)
        try:
            yield pinned
        finally:
            client.close()

    def wait_for_replica(self, timeout_ms: int) -> bool:
        """Whether a replica has every write made on this connection within `timeout_ms` (WAIT 1)."""
        return self._redis.wait(1, timeout_ms) >= 1

    def close(self) -> None:
        self._client.close()

    def _read(
        self, client: Any, key: str, parsed: ParsedRecords[Record], fields: Collection[str] | None
    ) -> Records[Record]:
        """The records of hash `key` (only the `fields` that exist, when given) through `client`."""
        if fields is None:
            return parsed.parse(client.hgetall(key))
        wanted = list(fields)
        bodies = client.hmget(key, wanted) if wanted else []
        return parsed.parse({f: body for f, body in zip(wanted, bodies, strict=True) if body is not None}, whole=False)

    def _check_lease(self, pipe: Pipeline, leader_token: str) -> None:
        """Raise NotLeader unless `leader_token` holds the lease (on a pipeline watching the lease: a
        change before its EXEC fails the transaction)."""
        if not self._holds_lease(keys=[self._keys.leader], args=[leader_token], client=pipe):
            raise NotLeader("the lease moved on")

    # -- change notices and events ------------------------------------------------------------

    def touch(self) -> None:
        """Tell readers keeping copies that anything may have changed (the change log says `all`)."""
        with self._redis.pipeline(transaction=True) as pipe:
            changelog.append(pipe, self._keys.changelog, everything=True)
            pipe.execute()

    def notify(self, hint: str = "") -> None:
        self._redis.publish(self._keys.changes, hint)

    def emit(self, kind: EventKind, message: str, now: float | None = None, **data: Any) -> None:
        self.emit_many([(kind, message, data)], now)

    def emit_many(self, events: Iterable[Event], now: float | None = None) -> None:
        """Append events (kind, message, data) in pipelined round trips."""
        when = now if now is not None else time.time()
        with self._redis.pipeline(transaction=False) as pipe:
            for queued, event in enumerate(events, 1):
                add_event(pipe, self._keys, event, when)
                if queued % 1000 == 0:
                    pipe.execute()
            pipe.execute()


def add_event(pipe: Pipeline, keys: Keys, event: Event, when: float) -> None:
    """Queue one event on a pipeline (a write's own transaction sends its events with it)."""
    pipe.xadd(keys.events, {"event": event_json(event, when)}, maxlen=defaults.DEFAULT_EVENTS_MAXLEN,
              approximate=True)


def event_json(event: Event, when: float) -> str:
    """An event as the events stream stores it (its `event` field)."""
    kind, message, data = event
    return json.dumps({"type": kind, "time": when, "message": message, "data": data})


def token() -> str:
    return uuid.uuid4().hex
