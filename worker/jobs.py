"""The RQ jobs a node agent runs: start and stop one task at one gen (shared/dispatch.py enqueues them).

Expected failures (bad image, engine refusal, service gone) end as a FAILED task with a reason, not
as a raised exception: RQ would only file the job as failed where nobody looks.
"""

from __future__ import annotations

import logging
import time

from shared.config import ServiceSpec
from shared.errors import NotFound
from shared.records import TaskRecord, TaskState
from worker.containers import container_args, named_volumes
from worker.engine import EngineError, container_address, container_gen
from worker.node import Node, current

log = logging.getLogger("rq.worker.gorchester")

STARTABLE = frozenset({TaskState.ASSIGNED, TaskState.STARTING})
STOPPED_ON_REQUEST = "stopped on request"


def start_task(task_id: str, gen: int) -> None:
    node = current()
    task = node.report(task_id, gen, STARTABLE, state=TaskState.STARTING)
    if task is None:
        log.info("start %s gen %s: the decision moved on; nothing to do", task_id, gen)
        return
    try:
        _start(node, task)
    except (EngineError, NotFound) as exc:
        log.warning("start %s gen %s failed: %s", task_id, gen, exc)
        node.report(task_id, gen, STARTABLE, state=TaskState.FAILED, reason=str(exc), finished_at=time.time())


def _start(node: Node, task: TaskRecord) -> None:
    spec = node.store.service(task.service).spec
    same_gen = []
    kept = task.previous.gen if task.previous is not None and task.previous.node == node.id else None
    for container in node.engine.containers(task.id):
        gen = container_gen(container)
        if gen < task.gen and gen != kept:  # the previous container serves until this one is ready
            node.engine.remove(container)
        elif gen == task.gen:
            same_gen.append(container)
    network_id = None if same_gen else _prepare(node, spec)
    with node.lock:
        if same_gen:
            # A re-run of this job (say, after an agent crash): adopt the container it already made.
            container = same_gen[0]
            if container.status != "running":
                node.engine.start(container)
        else:
            args = container_args(
                spec, task, cluster=node.cluster, node_id=node.id, node_address=node.address, network_id=network_id
            )
            container = node.engine.run(args)
        node.report(
            task.id,
            task.gen,
            {TaskState.STARTING},
            state=TaskState.RUNNING,
            container_id=container.id,
            ports=node.engine.published_ports(container),
            address=container_address(container.attrs),
            started_at=time.time(),
            finished_at=None,
            exit_code=None,
            reason=None,
        )


def _prepare(node: Node, spec: ServiceSpec) -> str | None:
    """Make what the container needs; returns the id of its bridge network, if it has one."""
    node.engine.ensure_image(spec.image)
    for volume in named_volumes(spec):
        node.engine.ensure_volume(volume)
    network = spec.effective_network()
    return node.engine.ensure_network(network) if network is not None else None


def halt_task(task_id: str, gen: int) -> None:
    """The user's stop: the container stops but stays; the task is STOPPED, not a crash."""
    node = current()
    # Under the lock the container's `die` event cannot be reported as a failure first.
    with node.lock:
        exit_code = None
        try:
            for container in node.engine.containers(task_id):
                if container_gen(container) == gen:
                    node.engine.stop(container)
                    exit_code = ((node.engine.inspect(container.id) or {}).get("State") or {}).get("ExitCode")
        except EngineError as exc:
            log.warning("halt %s gen %s: %s", task_id, gen, exc)
            return
        node.report(
            task_id, gen, {TaskState.RUNNING}, state=TaskState.STOPPED, reason=STOPPED_ON_REQUEST,
            exit_code=exit_code, finished_at=time.time(),
        )


def stop_task(task_id: str, gen: int) -> None:
    node = current()
    task = node.task(task_id)
    # A container the task still names as its previous one serves until the scheduler releases it.
    kept = task.previous.gen if task is not None and task.previous is not None and task.previous.node == node.id \
        else None
    try:
        for container in node.engine.containers(task_id):
            if container_gen(container) <= gen and container_gen(container) != kept:
                node.engine.remove(container)
    except EngineError as exc:
        # The record stays SHUTDOWN, so the agent's sweep retries the removal.
        log.warning("stop %s gen %s: %s", task_id, gen, exc)
        return
    node.forget(task_id, gen)
