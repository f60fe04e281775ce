"""A node agent's writes: the status of its node's tasks (each only while the task's assignment is
still the decision it reports on), its node's record and beats, usage samples, and its engine's
share of the pod network."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any, cast

import redis
from redis.lock import Lock

from shared.podnet import pick_subnet, usable
from shared.records import EngineHealth, NodeRecord
from shared.storage import telemetry
from shared.storage.base import StoreBase, token
from shared.task_parts import TaskStatus
from shared.telemetry import TaskSample

ENGINE_LOCK_SECONDS = 30.0  # a network or volume is made in well under a second


class StatusWrites(StoreBase):
    def write_statuses(self, node_id: str, statuses: Sequence[TaskStatus]) -> list[bool]:
        """An agent's reports about its node's tasks: each is written only while the task's assignment is
        still its decision (node, gen, incarnation), in one Lua call. Returns which were written."""
        if not statuses:
            return []
        args: list[Any] = [node_id, token()]
        for status in statuses:
            args += [status.id, status.gen, status.incarnation, status.model_dump_json()]
        keys = [self._keys.assignments, self._keys.statuses, self._keys.changelog, self._keys.node_revision(node_id)]
        flags = self._write_statuses(keys=keys, args=args)
        return [bool(flag) for flag in flags]

    def register_node(self, node: NodeRecord) -> None:
        key = self._keys.node(node.id)
        fields: dict[Any, str] = {name: json.dumps(value) for name, value in node.model_dump(mode="json").items()}
        if self._redis.exists(key):
            # A returning node keeps the availability an operator gave it (drain survives restarts).
            fields.pop("availability", None)
        with self._redis.pipeline() as pipe:
            pipe.hset(key, mapping=fields)
            pipe.sadd(self._keys.nodes, node.id)
            pipe.publish(self._keys.changes, f"node:{node.id}")
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
        self._redis.hset(self._keys.node(node_id), mapping=fields)

    def heartbeat_many(self, node_ids: Iterable[str], now: float) -> None:
        """Heartbeats of several nodes (a process hosting many, worker/hollow.py) in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for node_id in node_ids:
                pipe.hset(self._keys.node(node_id), "last_heartbeat", json.dumps(now))
            pipe.execute()

    def claim_subnet(self, engine_id: str, subnet: str) -> None:
        """Record the subnet an engine's bridge of the cluster has (found on the engine as it is)."""
        self._redis.hset(self._keys.subnets, engine_id, subnet)

    def allocate_subnet(self, engine_id: str, cidr: str, clashes: Collection[str]) -> str:
        """The engine's subnet of the pod range `cidr`: the one it has, else the lowest /24 no other engine
        of the cluster has and overlapping none of `clashes` (the engine's other networks), recorded in one
        compare-and-set. Callers hold the engine's lock (engine_lock)."""
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._keys.subnets)
                    current = cast(dict[str, str], pipe.hgetall(self._keys.subnets))  # watching: answered at once
                    taken = [subnet for engine, subnet in current.items() if engine != engine_id]
                    mine = current.get(engine_id)
                    if mine is not None and usable(mine, taken, clashes):
                        pipe.reset()
                        return mine
                    chosen = pick_subnet(cidr, taken, clashes)
                    pipe.multi()
                    pipe.hset(self._keys.subnets, engine_id, chosen)
                    pipe.execute()
                    return chosen
                except redis.WatchError:
                    continue


    def engine_lock(self, engine_id: str, what: str) -> Lock:
        """A lock on making `what` on one Docker engine (agents sharing an engine must not both make
        it); waits up to ENGINE_LOCK_SECONDS, and lapses after that long if its holder dies."""
        lock: Lock = self._redis.lock(
            self._keys.engine_lock(engine_id, what), timeout=ENGINE_LOCK_SECONDS, blocking_timeout=ENGINE_LOCK_SECONDS
        )
        return lock


    def write_usage(
        self, node_id: str, samples: Sequence[TaskSample], usage: dict[str, Any], interval: float,
        counts: Iterable[tuple[str, float, dict[str, str]]],
    ) -> bool:
        """A sampling round of a node: its tasks' samples, the node's usage and the counters (name, amount,
        labels) in one round trip. False, with nothing written, while the node is not registered (its
        heartbeat registers it again)."""
        node_key = self._keys.node(node_id)
        if not self._redis.exists(node_key):
            return False
        with self._redis.pipeline(transaction=False) as pipe:
            telemetry.write_samples(pipe, self._keys, samples, interval)
            pipe.hset(node_key, "usage", json.dumps(usage))
            for name, amount, labels in counts:
                telemetry.count(pipe, self._keys, name, amount, **labels)
            pipe.execute()
        return True
