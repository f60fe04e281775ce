"""The running agent's state shared by its job thread and its event, sweep and heartbeat threads.

Every task write goes through `report` under one lock, so a job's create-start-RUNNING sequence and
an exit seen on the event stream (or by the sweep) can never interleave into a stale state.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import defaults
from shared.errors import NotFound
from shared.event_kinds import EventKind
from shared.hostaccess import HostAccess
from shared.podnet import PodNetwork, PodRangeError, network_name
from shared.records import TaskRecord, TaskState
from shared.store import Store
from worker.engine import Engine, EngineError

# Task states an agent reports that are worth an event of their own.
TRANSITION_EVENTS = {TaskState.RUNNING: EventKind.TASK_STARTED, TaskState.FAILED: EventKind.TASK_FAILED}


@dataclass
class Node:
    id: str
    address: str
    store: Store
    engine: Engine
    host_access: HostAccess = HostAccess()  # what of this host its containers may use (worker/host_access.py)
    pod_cidr: str = defaults.DEFAULT_POD_CIDR  # the cluster's container addresses (shared/podnet.py)
    # Reentrant: the job and the sweep report while already holding it.
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def cluster(self) -> str:
        return self.store.keys.cluster

    def task(self, task_id: str) -> TaskRecord | None:
        """The task's record; None when it is gone or cannot be read (an agent acts on no record it
        cannot read: the scheduler replaces it)."""
        try:
            entry = self.store.read_task(task_id)
        except NotFound:
            return None
        return entry if isinstance(entry, TaskRecord) else None

    def report(
        self, task_id: str, gen: int, states: Collection[TaskState], *, incarnation: str, **fields: Any
    ) -> TaskRecord | None:
        """Write `fields` if the task is still this node's, the same record (`incarnation`) at `gen`,
        in one of `states`; then notify.

        Returns the written record, or None when the decision moved on (nothing is written then).
        """
        with self.lock:
            outcome = self.store.update_task(
                task_id,
                gen,
                accept=lambda task: task.incarnation == incarnation and task.node == self.id and task.state in states,
                **fields,
            )
        if outcome is None:
            return None
        before, updated = outcome
        if updated.state is not before.state and updated.state in TRANSITION_EVENTS:
            self._announce(updated)
        self.store.notify(f"task:{task_id}")
        return updated

    def _announce(self, task: TaskRecord) -> None:
        self.store.emit_many([self._transition_event(task)])

    def _transition_event(self, task: TaskRecord) -> tuple[EventKind, str, dict[str, Any]]:
        kind = TRANSITION_EVENTS[task.state]
        detail = f": {task.reason}" if task.state is TaskState.FAILED and task.reason else ""
        data = {"service": task.service, "task": task.id, "node": self.id, "gen": task.gen, "exit_code": task.exit_code}
        return kind, f"{task.id} {task.state.value} on {self.id}{detail}", data

    def report_many(
        self,
        updates: Sequence[tuple[str, int, dict[str, Any]]],
        states: Collection[TaskState],
        *,
        incarnations: Mapping[str, str],
        known: dict[str, TaskRecord] | None = None,
        notify: bool = True,
    ) -> list[TaskRecord]:
        """`report` for many tasks at once: a few Redis round trips, one notification and one pipeline
        of events (the transitions `report` announces) in all.

        Each (task id, gen, fields) is written if the task is still this node's, the record of
        `incarnations[task id]`, at gen, in `states`.
        `known` are records this node just wrote (skips a read); `notify=False` for a state no
        scheduler decision depends on (STARTING; RUNNING mostly, see worker/jobs.py), which spares it a pass.
        """
        if not updates:
            return []
        with self.lock:

            def accept(task: TaskRecord) -> bool:
                return task.node == self.id and task.state in states and task.incarnation == incarnations[task.id]

            written = self.store.update_tasks(updates, accept, known=known)
        if written:
            # A written record left one of `states`; it is a transition unless its state is one of them.
            self.store.emit_many(
                self._transition_event(task)
                for task in written
                if task.state in TRANSITION_EVENTS and task.state not in states
            )
        if written and notify:
            self.store.notify(f"node:{self.id}")
        return written

    def pod_network(self) -> PodNetwork:
        """The cluster's network on this node's engine (shared/podnet.py), made with the subnet the control
        plane allocates to the engine, by one agent of the cluster at a time per engine (agents sharing an
        engine would otherwise make it twice); a duplicate found is settled on one."""
        name = network_name(self.cluster)
        engine_id = self.engine.engine_id
        try:
            with self.store.engine_lock(engine_id, f"network:{name}"):
                network_id, subnet = self.engine.ensure_network(
                    name, lambda clashes: self.store.allocate_subnet(engine_id, self.pod_cidr, clashes)
                )
                self.store.claim_subnet(engine_id, subnet)  # as the engine has it (made before, or just now)
        except redis.exceptions.LockError as exc:
            raise EngineError(f"network {name}: its lock on this engine is busy ({exc})") from None
        except PodRangeError as exc:
            raise EngineError(f"network {name}: {exc}") from None
        return PodNetwork(network_id, subnet)

    def forget(self, task_id: str, gen: int, incarnation: str) -> bool:
        """Delete a task record that is SHUTDOWN at `gen` (that record: `incarnation`): its container is
        gone, so is the slot."""
        with self.lock:
            task = self.task(task_id)
            same = task is not None and (task.gen, task.incarnation) == (gen, incarnation)
            if task is None or not same or task.state is not TaskState.SHUTDOWN:
                return False
            deleted = self.store.write_tasks([(task_id, task.rev, None)])[0]
        if deleted:
            self.store.notify(f"task:{task_id}")
        return deleted


_current: Node | None = None
_serving = threading.local()  # the node whose job this thread runs, where a process hosts several


def install(node: Node) -> None:
    global _current
    _current = node


@contextmanager
def serving(node: Node) -> Iterator[None]:
    """Run a job for `node` on this thread (a process hosting many nodes, as worker/hollow.py does)."""
    previous = getattr(_serving, "node", None)
    _serving.node = node
    try:
        yield
    finally:
        _serving.node = previous


def current() -> Node:
    """The node whose job runs: the one this thread serves, else the agent this process runs."""
    node: Node | None = getattr(_serving, "node", None) or _current
    if node is None:
        raise RuntimeError("no node agent runs in this process (start one with `rq worker -w worker.agent.NodeAgent`)")
    return node
