"""The running agent's state shared by its job thread and its event, sweep and heartbeat threads.

The agent writes only its node's tasks' status (shared/task_parts.py), and every write goes through
`report_many` under one lock, so a job's create-start-RUNNING sequence and an exit seen on the event
stream (or by the sweep) can never interleave into a stale state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import defaults, process_logs
from shared.errors import NotFound
from shared.event_kinds import EventKind
from shared.hostaccess import HostAccess
from shared.podnet import PodNetwork, PodRangeError, network_name
from shared.records import TaskRecord, TaskState
from shared.storage import AgentStore
from shared.task_parts import TRANSITIONS, TaskStatus, status_of
from worker.container_engine import ContainerEngine
from worker.engine import EngineError

log = logging.getLogger("rq.worker.gorchester")

# Task states an agent reports that are worth an event of their own.
TRANSITION_EVENTS = {TaskState.RUNNING: EventKind.TASK_STARTED, TaskState.FAILED: EventKind.TASK_FAILED}


@dataclass
class Node:
    id: str
    address: str
    store: AgentStore
    engine: ContainerEngine
    host_access: HostAccess = HostAccess()  # what of this host its containers may use (worker/host_access.py)
    pod_cidr: str = defaults.DEFAULT_POD_CIDR  # the cluster's container addresses (shared/podnet.py)
    # Reentrant: the job and the sweep report while already holding it.
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def cluster(self) -> str:
        return self.store.cluster

    def task(self, task_id: str) -> TaskRecord | None:
        """The task's record; None when it is gone or cannot be read (an agent acts on no record it
        cannot read: the scheduler replaces it)."""
        try:
            entry = self.store.read_task(task_id)
        except NotFound:
            return None
        return entry if isinstance(entry, TaskRecord) else None

    def report(
        self, task_id: str, gen: int, *, incarnation: str, when: TaskState | None = None, **fields: Any
    ) -> TaskRecord | None:
        """Report what this node found of the task's decision at `gen` (the record `incarnation`), if the
        task is still this node's at that decision (and, with `when`, in that state); then notify.

        Returns the task as reported, or None when nothing was written (the decision moved on, or
        the report would be a transition the table refuses)."""
        written = self.report_many([(task_id, gen, fields)], incarnations={task_id: incarnation}, when=when)
        return written[0] if written else None

    def report_many(
        self,
        updates: Sequence[tuple[str, int, dict[str, Any]]],
        *,
        incarnations: Mapping[str, str],
        when: TaskState | None = None,
        known: dict[str, TaskRecord] | None = None,
        notify: bool = True,
    ) -> list[TaskRecord]:
        """Write this node's status of many tasks at once: one read (none with `known`, the tasks as
        this agent last reported them: it alone writes their status), one Lua call, one notification
        and one pipeline of events (RUNNING and FAILED are announced).

        Each (task id, gen, fields) is written if the task is this node's, the record of
        `incarnations[task id]` at gen, (with `when`, in that state,) and the change of state is one
        shared/task_parts.py's TRANSITIONS allows: a refused one is logged, naming both states.
        `notify=False` for a state no scheduler decision depends on (STARTING; RUNNING mostly, see
        worker/jobs.py), which spares it a pass.
        """
        if not updates:
            return []
        with self.lock:
            wanted = [task_id for task_id, _, _ in updates]
            current = known if known is not None and all(task_id in known for task_id in wanted) else None
            if current is None:
                current = self.store.tasks_by_id(wanted)
            reports: list[tuple[TaskRecord, TaskRecord, TaskStatus]] = []
            for task_id, gen, fields in updates:
                task = current.get(task_id)
                if task is None or task.node != self.id or (task.gen, task.incarnation) != (gen, incarnations[task_id]):
                    continue  # the decision moved on
                if when is not None and task.state is not when:
                    continue
                state = fields.get("state", task.state)
                if state not in TRANSITIONS[task.state]:
                    log.warning("%s gen %s: %s -> %s refused (not an allowed transition)",
                                task_id, gen, task.state.value, TaskState(state).value)
                    continue
                after = task.model_copy(update={**fields, "updated_at": time.time()})
                reports.append((task, after, status_of(after, removed=task.state is TaskState.SHUTDOWN)))
            applied = self.store.write_statuses(self.id, [status for _, _, status in reports])
            written = [(before, after) for (before, after, _), ok in zip(reports, applied, strict=True) if ok]
        for before, after in written:
            if after.state is TaskState.FAILED and before.state is not TaskState.FAILED:
                log.warning("task failed", extra=process_logs.fields(
                    task=after.id, service=after.service, gen=after.gen, exit_code=after.exit_code, reason=after.reason,
                ))
        if written:
            self.store.emit_many(
                self._transition_event(after) for before, after in written
                if after.state in TRANSITION_EVENTS and after.state is not before.state
            )
        if written and notify:
            self.store.notify(f"node:{self.id}")
        return [after for _, after in written]

    def _transition_event(self, task: TaskRecord) -> tuple[EventKind, str, dict[str, Any]]:
        kind = TRANSITION_EVENTS[task.state]
        detail = f": {task.reason}" if task.state is TaskState.FAILED and task.reason else ""
        data = {"service": task.service, "task": task.id, "node": self.id, "gen": task.gen, "exit_code": task.exit_code}
        return kind, f"{task.id} {task.state.value} on {self.id}{detail}", data

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

    def removed(self, task_id: str, gen: int, incarnation: str) -> bool:
        """Report that the containers of a task SHUTDOWN at `gen` (that record: `incarnation`) are gone:
        the scheduler then drops the slot's records."""
        return self.report(task_id, gen, incarnation=incarnation, when=TaskState.SHUTDOWN,
                           state=TaskState.STOPPED) is not None


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
