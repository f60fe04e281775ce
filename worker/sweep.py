"""The agent's periodic reconciliation of its containers with the task records.

Events can be missed (agent down, stream broken) and jobs can be lost; the sweep makes the node
agree with the records anyway: strays go, exits become states, vanished containers become FAILED,
and a network of the cluster found twice on the engine is settled on one.
"""

from __future__ import annotations

import time

from docker.models.containers import Container

from shared import labels
from shared.podnet import network_name
from shared.records import TaskRecord, TaskState
from worker import fanout
from worker.engine import container_address, container_gen, container_incarnation
from worker.exits import REMOVED, exit_fields
from worker.node import Node

INTERVAL = 10.0

# Under the node's lock no job is between making a container and reporting it, so a container of a
# task still ASSIGNED or STARTING was made by a job that died with its agent: adopt it at once
# rather than wait for the scheduler to send the start again. A FAILED report is final for its gen
# (shared/task_parts.py TRANSITIONS): the scheduler's restart makes a new one, and this container
# then goes as a stray.
ADOPTABLE = frozenset({TaskState.ASSIGNED, TaskState.STARTING, TaskState.RUNNING})


def sweep(node: Node) -> None:
    strays: list[tuple[Container, TaskRecord | None]] = []
    # Under the lock a job cannot create a container between the listing and the decisions below.
    with node.lock:
        containers = node.engine.containers()
        stored = node.store.node_tasks(node.id)
        tasks, unreadable = dict(stored.good), dict(stored.unreadable)
        # A container of a task the node's index does not name (its record gone, or the index behind
        # the records after Redis went back in time) is looked up by its own id before it is a stray.
        labelled = {container.labels.get(labels.TASK, "") for container in containers}
        unindexed = labelled - tasks.keys() - unreadable.keys()
        if unindexed:
            found = node.store.read_tasks(unindexed)
            tasks.update(found.good)
            unreadable.update(found.unreadable)
        present: set[str] = set()
        for container in containers:
            task_id = container.labels.get(labels.TASK, "")
            if task_id in unreadable:
                continue  # what its record says is unknown: never removed for that alone (the scheduler replaces it)
            task = tasks.get(task_id)
            if task is not None and _is_previous(task, node, container):
                continue  # start-first: it serves until the task's new gen is ready
            if task is None or not _made_for(task, node, container) or task.state is TaskState.SHUTDOWN:
                strays.append((container, task))
                continue
            present.add(task.id)
            if task.state in ADOPTABLE:
                _adopt(node, task, container)
        for task in tasks.values():
            if task.node == node.id and task.state is TaskState.RUNNING and task.id not in present:
                node.report(
                    task.id, task.gen, incarnation=task.incarnation, when=TaskState.RUNNING,
                    state=TaskState.FAILED, reason=REMOVED, finished_at=time.time(),
                )
    fanout.each(lambda stray: _remove(node, *stray), strays)
    # A network made twice on this engine (agents racing before its lock, another process) makes
    # every start on it fail as ambiguous: settle on one, the other goes once it is empty.
    if network_name(node.cluster) in node.engine.duplicate_networks():
        node.pod_network()


def _made_for(task: TaskRecord, node: Node, container: Container) -> bool:
    """Whether the container is the one of the task's current decision: this node, this record, this gen."""
    return (
        task.node == node.id
        and task.gen == container_gen(container)
        and task.incarnation == container_incarnation(container)
    )


def _remove(node: Node, container: Container, task: TaskRecord | None) -> None:
    node.engine.remove(container)
    if task is not None and task.node == node.id and task.incarnation == container_incarnation(container) \
            and container_gen(container) <= task.gen:
        # Does what a lost stop job would have: a SHUTDOWN record goes with its containers.
        node.removed(task.id, task.gen, task.incarnation)


def _is_previous(task: TaskRecord, node: Node, container: Container) -> bool:
    previous = task.previous
    return (
        previous is not None
        and previous.node == node.id
        and previous.gen == container_gen(container)
        and task.incarnation == container_incarnation(container)
        and task.state is not TaskState.SHUTDOWN
    )


def _adopt(node: Node, task: TaskRecord, container: Container) -> None:
    """Make the record say what the container does, without restarting anything."""
    running = container.status == "running"
    if running and task.state is not TaskState.RUNNING:
        node.report(
            task.id, task.gen, incarnation=task.incarnation, when=task.state, state=TaskState.RUNNING,
            container_id=container.id,
            ports=node.engine.published_ports(container), address=container_address(container.attrs),
            reason=None, exit_code=None, finished_at=None,
        )
    elif not running and task.state is TaskState.RUNNING:
        state = container.attrs.get("State") or {}
        fields = exit_fields(int(state.get("ExitCode", -1)), oom=bool(state.get("OOMKilled")))
        node.report(task.id, task.gen, incarnation=task.incarnation, when=TaskState.RUNNING, **fields)
