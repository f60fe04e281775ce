"""Enqueueing task jobs on a node's RQ queue; used by the scheduler (and by tests that play it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import redis
from rq import Queue

from shared import defaults
from shared.keys import Keys


class Action(StrEnum):
    START = "start"  # make and start the container of (task, gen)
    STOP = "stop"  # stop and remove the task's containers up to gen; drop the record if still at gen
    HALT = "halt"  # a user's stop: stop the container of (task, gen), keep it, report STOPPED


JOB_FUNCTIONS = {
    Action.START: "worker.jobs.start_task",
    Action.STOP: "worker.jobs.stop_task",
    Action.HALT: "worker.jobs.halt_task",
}


@dataclass(frozen=True)
class Job:
    node: str
    action: Action
    task: str
    gen: int


def enqueue(connection: redis.Redis, keys: Keys, jobs: Iterable[Job]) -> int:
    """Enqueue jobs in one pipeline per node; returns how many were sent.

    `connection` must not decode responses (RQ stores pickled payloads).
    """
    by_node: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_node[job.node].append(job)
    sent = 0
    for node, node_jobs in by_node.items():
        queue = Queue(keys.queue(node), connection=connection)
        data = [
            Queue.prepare_data(
                JOB_FUNCTIONS[job.action],
                args=(job.task, job.gen),
                job_id=keys.job_id(job.action.value, job.task, job.gen),
                timeout=defaults.DEFAULT_JOB_TIMEOUT,
                result_ttl=0,
                failure_ttl=3600,
            )
            for job in node_jobs
        ]
        with connection.pipeline() as pipe:
            queue.enqueue_many(data, pipeline=pipe)
            pipe.execute()
        sent += len(node_jobs)
    return sent
