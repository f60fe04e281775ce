"""The RQ jobs a node agent runs: start and stop one task at one gen (shared/dispatch.py enqueues them).

Expected failures (bad image, engine refusal, service gone) end as a FAILED task with a reason, not
as a raised exception: RQ would only file the job as failed where nobody looks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from shared import defaults, labels
from shared.config import ServiceSpec
from shared.dispatch import Action
from shared.errors import NotFound
from shared.hostaccess import HostAccessRefused
from shared.podnet import PodNetwork, network_name
from shared.records import TaskRecord, TaskState, Unreadable
from worker import fanout
from worker.containers import container_args, named_volumes
from worker.engine import EngineError, container_address, container_gen, container_incarnation, networks_of
from worker.host_access import bind_sources
from worker.node import Node, current, serving

log = logging.getLogger("rq.worker.gorchester")

STOPPED_ON_REQUEST = "stopped on request"
# How long a replica the cluster DNS answered for keeps serving after its task is retired: the DNS
# servers' poll of the records plus the TTL clients may cache an answer for, and a margin.
DISCOVERY_GRACE = defaults.DEFAULT_DISCOVERY_POLL_INTERVAL + defaults.DEFAULT_DNS_TTL + 0.3
FLUSH_SECONDS = 0.25  # a batch of starts reports RUNNING at least this often


Decision = tuple[str, int, str]  # (task id, gen, incarnation): one record of a slot at one gen


def start_task(task_id: str, gen: int, incarnation: str) -> None:
    start_tasks([(task_id, gen, incarnation)])


def run_batch(decisions: list[tuple[str, str, int, str]]) -> None:
    """Several decisions for this node in one job (shared/dispatch.py): stops, then starts, then halts.

    Stops first (several at once: each may wait out a graceful stop), so what they free (ports,
    resources) is free for the starts; each decision is fenced by its gen exactly as its single job
    would be.
    """
    by_action: dict[Action, list[Decision]] = defaultdict(list)
    for action, task_id, gen, incarnation in decisions:
        by_action[Action(action)].append((task_id, gen, incarnation))
    node = current()

    def stop(decision: Decision) -> None:
        with serving(node):  # the pool's threads serve this job's node (worker/hollow.py hosts many)
            stop_task(*decision)

    fanout.each(stop, by_action[Action.STOP])
    if by_action[Action.START]:
        start_tasks(by_action[Action.START])
    for task_id, gen, incarnation in by_action[Action.HALT]:
        halt_task(task_id, gen, incarnation)


def start_tasks(items: list[Decision]) -> None:
    """Start the containers of (task, gen) pairs; the Redis work is batched over all of them.

    STARTING is written for all in one compare-and-set, the specs are read once, what a service's
    containers need (image, volumes, network) is made once, and RUNNING is reported in batches (at
    least every FLUSH_SECONDS, so a slow engine still shows progress). A RUNNING report wakes the
    scheduler only when it waits for that replica to be ready: to release the container it replaces
    (start-first) or to go on replacing replicas one by one (an update or its rollback). No other
    decision depends on it, and at cluster scale a pass per report (each reading every task and
    node) was most of the control plane's work while replicas started.
    """
    node = current()
    incarnations = {task_id: incarnation for task_id, _, incarnation in items}
    tasks = node.report_many(
        [(task_id, gen, {"state": TaskState.STARTING}) for task_id, gen, _ in items],
        incarnations=incarnations,
        notify=False,
    )
    known = {task.id: task for task in tasks}  # as just written: RUNNING needs no fresh read
    starting = {task.id for task in tasks}
    for task_id, gen, _ in items:
        if task_id not in starting:
            log.info("start %s gen %s: the decision moved on; nothing to do", task_id, gen)
    if not tasks:
        return
    services = node.store.services_named({task.service for task in tasks})
    specs = {name: record.spec for name, record in services.items()}
    awaited = {
        task.id
        for task in tasks
        if task.previous is not None or (task.service in services and services[task.service].replacing)
    }
    prepared = _Prepared()
    ordered = sorted(tasks, key=lambda task: (task.service, task.slot))

    def attempt(task: TaskRecord) -> tuple[TaskRecord, dict[str, Any] | None, Exception | None]:
        try:
            return task, _start(node, task, specs, prepared, existing.get(task.id, [])), None
        except (EngineError, NotFound, HostAccessRefused) as exc:
            return task, None, exc

    running: list[tuple[str, int, dict[str, Any]]] = []
    flushed = time.monotonic()
    parallel = min(node.engine.parallel_starts, len(ordered))
    # Under the lock from the containers' starts until RUNNING is written: an exit seen on the event
    # stream meanwhile waits, and is then reported against RUNNING instead of being lost.
    with node.lock, ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="start") as pool:
        # One listing of the batch's containers (under the lock nothing else makes one).
        existing: dict[str, list[Any]] = defaultdict(list)
        try:
            for container in node.engine.containers(starting):
                existing[container.labels.get(labels.TASK, "")].append(container)
        except EngineError as listing:
            log.warning("start batch of %d: %s", len(ordered), listing)
            for task in ordered:
                node.report(
                    task.id, task.gen, incarnation=task.incarnation,
                    state=TaskState.FAILED, reason=str(listing), finished_at=time.time(),
                )
            return
        outcomes = (
            (future.result() for future in as_completed([pool.submit(attempt, task) for task in ordered]))
            if parallel > 1
            else map(attempt, ordered)
        )
        for task, fields, error in outcomes:
            if fields is not None:
                running.append((task.id, task.gen, fields))
            else:
                log.warning("start %s gen %s failed: %s", task.id, task.gen, error)
                node.report(
                    task.id, task.gen, incarnation=task.incarnation,
                    state=TaskState.FAILED, reason=str(error), finished_at=time.time(),
                )
            if running and time.monotonic() - flushed >= FLUSH_SECONDS:
                _report_running(node, running, known, awaited)
                running, flushed = [], time.monotonic()
        _report_running(node, running, known, awaited)


def _report_running(
    node: Node, running: list[tuple[str, int, dict[str, Any]]], known: dict[str, TaskRecord], awaited: set[str]
) -> None:
    notify = any(task_id in awaited for task_id, _, _ in running)
    incarnations = {task_id: known[task_id].incarnation for task_id, _, _ in running}
    node.report_many(running, incarnations=incarnations, when=TaskState.STARTING, known=known, notify=notify)


class _Prepared:
    """What a batch made for its services' containers (image and volumes once per service; the
    cluster's network once per batch)."""

    def __init__(self) -> None:
        self.services: set[str] = set()
        self.pod: PodNetwork | None = None
        self.lock = threading.Lock()

    def network(self, node: Node, spec: ServiceSpec) -> PodNetwork | None:
        """Make what `spec`'s containers need; returns the cluster's network when it joins it."""
        with self.lock:
            if spec.service_name not in self.services:
                _prepare(node, spec)
                self.services.add(spec.service_name)
            if spec.network is None:
                return None
            if self.pod is None:
                self.pod = node.pod_network()
            return self.pod


def _start(
    node: Node, task: TaskRecord, specs: dict[str, ServiceSpec], prepared: _Prepared, containers: list[Any]
) -> dict[str, Any]:
    """Make (or adopt) the task's container (`containers`: the task's on this node); returns the
    fields that report it RUNNING."""
    spec = specs.get(task.service)
    if spec is None:
        raise NotFound(f"service {task.service!r} not found, or its record cannot be read")
    same_gen = []
    kept = task.previous.gen if task.previous is not None and task.previous.node == node.id else None
    for container in containers:
        gen = container_gen(container)
        if container_incarnation(container) != task.incarnation:
            node.engine.remove(container)  # another record's of this slot (its service made again): never adopted
        elif gen < task.gen and gen != kept:  # the previous container serves until this one is ready
            node.engine.remove(container)
        elif gen == task.gen:
            same_gen.append(container)
    if same_gen:
        # A re-run of this job (say, after an agent crash): adopt the container it already made.
        container = same_gen[0]
        if container.status != "running":
            node.engine.start(container)
    else:
        binds = bind_sources(spec, node.host_access, node.id)  # this node's own check, before anything is made
        args = container_args(
            spec, task, cluster=node.cluster, node_id=node.id, node_address=node.address,
            pod=prepared.network(node, spec), bind_sources=binds,
        )
        container = node.engine.run(args)
    return {
        "state": TaskState.RUNNING,
        "container_id": container.id,
        "ports": node.engine.published_ports(container),
        "address": container_address(container.attrs),
        "started_at": time.time(),
        "finished_at": None,
        "exit_code": None,
        "reason": None,
    }


def _prepare(node: Node, spec: ServiceSpec) -> None:
    """Make what the service's containers need: the image, the named volumes."""
    node.engine.ensure_image(spec.image)
    for volume in named_volumes(spec):
        node.engine.ensure_volume(volume)


def halt_task(task_id: str, gen: int, incarnation: str) -> None:
    """The user's stop: the container stops but stays; the task is STOPPED, not a crash."""
    node = current()
    # Under the lock the container's `die` event cannot be reported as a failure first.
    with node.lock:
        exit_code = None
        try:
            for container in node.engine.containers({task_id}):
                if (container_gen(container), container_incarnation(container)) == (gen, incarnation):
                    node.engine.stop(container)
                    exit_code = ((node.engine.inspect(container.id) or {}).get("State") or {}).get("ExitCode")
        except EngineError as exc:
            log.warning("halt %s gen %s: %s", task_id, gen, exc)
            return
        node.report(
            task_id, gen, incarnation=incarnation, when=TaskState.RUNNING, state=TaskState.STOPPED,
            reason=STOPPED_ON_REQUEST, exit_code=exit_code, finished_at=time.time(),
        )


def stop_task(task_id: str, gen: int, incarnation: str) -> None:
    """Remove the containers of the task's record (`incarnation`) up to `gen`, then report them gone if
    the task is SHUTDOWN at `gen` (the scheduler drops it). Another record's containers of the slot are
    not this decision's."""
    node = current()
    try:
        task = node.store.read_task(task_id)
    except NotFound:
        task = None
    if isinstance(task, Unreadable):
        # What it says of the containers is unknown; once the scheduler replaced it, the sweep removes strays.
        log.warning("stop %s gen %s: its record cannot be read (%s); nothing removed", task_id, gen, task.error)
        return
    # A container the task still names as its previous one serves until the scheduler releases it.
    previous = task.previous if task is not None and task.incarnation == incarnation else None
    kept = previous.gen if previous is not None and previous.node == node.id else None
    try:
        doomed = [
            container for container in node.engine.containers({task_id})
            if container_incarnation(container) == incarnation and container_gen(container) <= gen
            and container_gen(container) != kept
        ]
        pod = network_name(node.cluster)
        if any(container.status == "running" and pod in networks_of(container.attrs) for container in doomed):
            # Its address was the cluster DNS's answer for its service until the task was retired: it
            # serves on until every DNS has seen that (its poll) and what clients cached has expired (TTL).
            time.sleep(DISCOVERY_GRACE)
        for container in doomed:
            node.engine.remove(container)
    except EngineError as exc:
        # The record stays SHUTDOWN, so the agent's sweep retries the removal.
        log.warning("stop %s gen %s: %s", task_id, gen, exc)
        return
    node.removed(task_id, gen, incarnation)
