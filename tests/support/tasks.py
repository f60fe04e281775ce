"""Tasks put into Redis as a test needs them, whatever state: the scheduler's assignment written as the
scheduler writes it, and what the agent would have reported written as its status."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from shared.records import TaskRecord
from shared.storage import Store
from shared.task_parts import REPORTED_STATES, status_of


def seed(store: Store, tasks: Iterable[TaskRecord]) -> None:
    """Store each task as it reads (its rev is the next one: a new record's is -1, stored as 0), in
    place of what is stored (the nodes' indexes follow)."""
    tasks = list(tasks)
    before = store.tasks_by_id([task.id for task in tasks])
    store.write_assignments([(task.id, task, before.get(task.id)) for task in tasks])
    reported = [task for task in tasks if task.node is not None and task.state in REPORTED_STATES]
    for task in reported:  # as its agent would: its status, and its node's revision replaced
        assert task.node is not None
        store._client.hset(store._keys.statuses, task.id, status_of(task).model_dump_json())
        store._client.set(store._keys.node_revision(task.node), uuid.uuid4().hex)
