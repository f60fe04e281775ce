"""The version of a cluster's Redis layout (docs/redis-layout.md), kept with its data.

`gorchester:<cluster>:schema` holds the layout version the cluster's data is written in. Every
process (API, scheduler, node agent) checks it as it starts: a cluster without one (new, or written
before versions were kept, which is version 1) is marked with this code's; the same version starts;
another refuses to start, naming both, rather than read records it would take for unreadable and
write records the others could not read. A change of layout raises VERSION and comes with the
migration of the older data, run here under the check, in the same commit. Processes of the older
version must be stopped first (they would go on writing the old layout).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from shared.keys import Keys
from shared.records import TaskRecord
from shared.settings import SettingError
from shared.storage import changelog
from shared.task_parts import REPORTED_STATES, assignment_json, nodes_of, status_of

log = logging.getLogger(__name__)

# 1: a task was one record (`tasks`) written by the scheduler and the agents alike.
# 2: a task is the scheduler's assignment and its agent's status (shared/task_parts.py).
# 3: writes name what they changed in the change log (shared/storage/changelog.py), not a token.
VERSION = 3


def check(client: Any, keys: Keys, component: str) -> None:
    """Mark a cluster without a version, migrate one of an older version (1, 2), or raise SettingError when its data
    is of another version."""
    if client.get(keys.schema) is None and not client.exists(keys.legacy_tasks):
        client.set(keys.schema, VERSION, nx=True)
    stored = client.get(keys.schema)
    found = "1" if stored is None else stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)
    if found == "1":
        migrate_from_1(client, keys, component)
        found = "2"
    if found == "2":
        migrate_from_2(client, keys, component)
        return
    if found == str(VERSION):
        return
    newer = found.isdigit() and int(found) > VERSION
    advice = ("upgrade gorchester on this host to the version the rest of the cluster runs" if newer
              else "its data was not written by gorchester; check GORCHESTER_CLUSTER")
    raise SettingError(
        f"{component}: cluster {keys.cluster!r} keeps its data in Redis layout version {found[:40]!r}, and this "
        f"gorchester reads version {VERSION}: {advice} (docs/redis-layout.md)"
    )


def migrate_from_1(client: Any, keys: Keys, component: str) -> None:
    """Version 1 -> 2: each task record split into the scheduler's assignment and its agent's status, and
    indexed under the nodes it names, in one transaction (another process migrating at once makes this
    one's retry find version 2). A record that cannot be read moves as it is: the scheduler replaces it
    as it did."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.schema, keys.legacy_tasks)
                if pipe.get(keys.schema) not in (None, "1", b"1"):
                    pipe.reset()
                    return
                legacy: dict[Any, Any] = pipe.hgetall(keys.legacy_tasks)
                assignments: dict[Any, Any] = {}
                statuses: dict[Any, str] = {}
                indexed: dict[str, set[Any]] = {}  # node -> the tasks its index names
                for task_id, body in legacy.items():
                    try:
                        task = TaskRecord.model_validate_json(body)
                    except ValueError:
                        assignments[task_id] = body
                        continue
                    assignments[task_id] = assignment_json(task)
                    for node in nodes_of(task):
                        indexed.setdefault(node, set()).add(task_id)
                    if task.node is not None and task.state in REPORTED_STATES:
                        statuses[task_id] = status_of(task).model_dump_json()
                pipe.multi()
                if assignments:
                    pipe.hset(keys.assignments, mapping=assignments)
                if statuses:
                    pipe.hset(keys.statuses, mapping=statuses)
                for node, members in indexed.items():
                    pipe.sadd(keys.node_tasks(node), *members)
                pipe.delete(keys.legacy_tasks)
                pipe.set(keys.schema, 2)
                pipe.execute()
                log.warning("%s: cluster %r migrated from Redis layout version 1 to 2 (%d tasks)",
                            component, keys.cluster, len(legacy))
                return
            except redis.WatchError:
                continue


def migrate_from_2(client: Any, keys: Keys, component: str) -> None:
    """Version 2 -> 3: the revision token gives way to the change log, which starts with an entry that
    says `all` (a reader keeping a copy reads everything once)."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.schema)
                if pipe.get(keys.schema) not in ("2", b"2"):
                    pipe.reset()
                    return
                pipe.multi()
                pipe.delete(keys.legacy_revision)
                changelog.append(pipe, keys.changelog, everything=True)
                pipe.set(keys.schema, VERSION)
                pipe.execute()
                log.warning("%s: cluster %r migrated from Redis layout version 2 to %d",
                            component, keys.cluster, VERSION)
                return
            except redis.WatchError:
                continue
