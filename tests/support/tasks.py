"""Tasks put into Redis as a test needs them, whatever state: the scheduler's assignment written as the
scheduler writes it, and what the agent would have reported written as its status."""

from __future__ import annotations

from collections.abc import Iterable

from shared.records import TaskRecord
from shared.store import Store
from shared.task_parts import REPORTED_STATES, status_of


def seed(store: Store, tasks: Iterable[TaskRecord]) -> None:
    """Store each task as it reads (its rev is the next one: a new record's is -1, stored as 0)."""
    tasks = list(tasks)
    store.write_assignments([(task.id, task) for task in tasks])
    statuses = {
        task.id: status_of(task).model_dump_json()
        for task in tasks
        if task.node is not None and task.state in REPORTED_STATES
    }
    if statuses:
        store.redis.hset(store.keys.statuses, mapping=statuses)
