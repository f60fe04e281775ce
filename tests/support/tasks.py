"""Tasks put into Redis as a test needs them, whatever state: the scheduler's assignment written as the
scheduler writes it, and what the agent would have reported written as its status."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from shared.records import TaskRecord
from shared.storage import Store
from shared.task_parts import REPORTED_STATES, TaskStatus, status_of


def seed(store: Store, tasks: Iterable[TaskRecord]) -> None:
    """Store each task as it reads (its rev is the next one: a new record's is -1, stored as 0), in
    place of what is stored (the nodes' indexes follow)."""
    tasks = list(tasks)
    before = store.tasks_by_id([task.id for task in tasks])
    store.write_assignments([(task.id, task, before.get(task.id)) for task in tasks])
    reported: dict[str, list[TaskStatus]] = defaultdict(list)
    for task in tasks:
        if task.node is not None and task.state in REPORTED_STATES:
            reported[task.node].append(status_of(task))
    for node, statuses in reported.items():  # as its agent would report them
        assert all(store.write_statuses(node, statuses)), f"a status of {node} did not match its assignment"
