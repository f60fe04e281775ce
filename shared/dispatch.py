"""Enqueueing task jobs on a node's RQ queue; used by the scheduler (and by tests that play it).

A node gets one RQ job per call: a single decision is the job of its action (`start_task` ...);
several decisions for one node are one batch job (`run_batch`) carrying them all. RQ costs several
Redis round trips per job on both sides, so at cluster scale (thousands of decisions in one pass)
a job per decision would dominate; a batch per node keeps that cost proportional to the nodes
touched. Batches are as idempotent as single jobs: each decision inside is fenced by its gen, and
the batch's job id is derived from its content, so the same decisions are never two jobs.

Payloads are JSON (RQ's JSONSerializer), never pickle, on every queue of the cluster, and a worker
runs only the job functions below (TaskJob): whoever can write to Redis must not thereby run code
on every node.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import get_call_string, now, utcformat

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
BATCH_FUNCTION = "worker.jobs.run_batch"
RUNNABLE = frozenset({*JOB_FUNCTIONS.values(), BATCH_FUNCTION})
SERIALIZER = JSONSerializer  # every queue and worker of the cluster: enqueue, the API, agents, hollow nodes
# Nodes' jobs per Lua call when a pass touches many nodes: bounds how long one blocks Redis (~10 ms
# per 1,000 jobs), and is large enough that agents, woken by the first chunk, do not compete with the
# scheduler for the CPU while it builds the rest (1,000 nodes: one chunk).
JOB_CHUNK = 1000
FAILURE_TTL = 3600  # seconds RQ keeps a failed job


class UnknownJobFunction(Exception):
    """A job on a node's queue names a function that is not one of the cluster's jobs."""


class TaskJob(RQJob):
    """An RQ job that can run only one of the cluster's job functions, and no callbacks or webhooks.

    Anything else found on a queue (written by hand into Redis) fails as a job, and is never called."""

    @property
    def func(self) -> Any:
        if self.func_name not in RUNNABLE:
            raise UnknownJobFunction(f"job {self.id}: {self.func_name!r} is not a gorchester job; not run")
        return super().func

    def restore(self, raw_data: Any) -> None:
        super().restore(raw_data)
        # Ours never have any; a stored name would be imported and called like the job's function.
        self._success_callback_name = self._failure_callback_name = self._stopped_callback_name = None
        self.webhooks = []


def queue(connection: redis.Redis, name: str) -> Queue:
    """An RQ queue of the cluster: JSON payloads, TaskJob jobs. `connection` must not decode responses
    (RQ stores payloads zlib-compressed)."""
    return Queue(name, connection=connection, job_class=TaskJob, serializer=SERIALIZER)


@dataclass(frozen=True)
class Decision:
    node: str
    action: Action
    task: str
    gen: int
    incarnation: str  # the task record's (shared/records.py): a decision is about one record of the slot


def by_node(jobs: Iterable[Decision]) -> dict[str, list[Decision]]:
    """The decisions grouped per node, in their order, each decision once."""
    grouped: dict[str, list[Decision]] = defaultdict(list)
    seen: set[Decision] = set()
    for job in jobs:
        if job not in seen:
            seen.add(job)
            grouped[job.node].append(job)
    return dict(grouped)


def batch_id(keys: Keys, jobs: Sequence[Decision]) -> str:
    """A batch job's id: derived from the decisions it carries (order-independent)."""
    text = "\n".join(sorted(f"{job.action.value} {job.task} {job.gen} {job.incarnation}" for job in jobs))
    return keys.batch_job_id(hashlib.sha256(text.encode()).hexdigest()[:24])


def job_spec(keys: Keys, jobs: Sequence[Decision]) -> dict[str, Any]:
    """What to enqueue on the node of `jobs` (all for one node): one job for all of them."""
    args: tuple[Any, ...]
    if len(jobs) == 1:
        job = jobs[0]
        function, args, job_id = JOB_FUNCTIONS[job.action], (job.task, job.gen, job.incarnation), keys.job_id(
            job.action.value, job.task, job.gen, job.incarnation
        )
    else:
        decisions = [(job.action.value, job.task, job.gen, job.incarnation) for job in jobs]
        function, args, job_id = BATCH_FUNCTION, (decisions,), batch_id(keys, jobs)
    # A batch of container starts may take a while on a real engine: its timeout grows with it.
    timeout = defaults.DEFAULT_JOB_TIMEOUT + 30 * (len(jobs) - 1)
    return {"function": function, "args": args, "job_id": job_id, "timeout": timeout}


def enqueue(connection: redis.Redis, keys: Keys, jobs: Iterable[Decision]) -> int:
    """Enqueue one job per node (a batch when a node has several decisions); returns the decisions sent.

    Each job is stored as RQ's `Queue.enqueue` stores it (the job's hash, its id pushed on its queue,
    the queue registered; tests/integration/test_job_payloads.py holds them equal), from the fields
    below rather than through RQ's Job and Queue objects, whose making cost more than the rest of a
    pass at 1,000 nodes. One Lua call per JOB_CHUNK nodes' jobs. `connection` must not decode
    responses (RQ stores payloads zlib-compressed).
    """
    grouped = list(by_node(jobs).items())
    put = connection.register_script(PUT_JOBS)
    sent = 0
    for start in range(0, len(grouped), JOB_CHUNK):
        common = _common_fields(utcformat(now()))
        args: list[Any] = [len(common), *(item for pair in common.items() for item in pair), len(_OWN), *_OWN]
        for node, node_jobs in grouped[start : start + JOB_CHUNK]:
            spec = job_spec(keys, node_jobs)
            queue_name = keys.queue(node)
            args += [TaskJob.key_for(spec["job_id"]), Queue.redis_queue_namespace_prefix + queue_name, spec["job_id"]]
            args += _own_fields(spec, queue_name)
            sent += len(node_jobs)
        put(keys=[Queue.redis_queues_keys], args=args)
    return sent


# Jobs put on their queues as RQ's `Queue.enqueue_job` does, in one call. KEYS[1] RQ's set of queues;
# ARGV: a count and that many field and value pairs every job has, a count and that many names of the
# fields each job has of its own, then per job: its key, its queue's key, its id and those fields' values.
PUT_JOBS = """
local n = tonumber(ARGV[1])
local common = {unpack(ARGV, 2, 1 + 2 * n)}
local m = tonumber(ARGV[2 + 2 * n])
local names = {unpack(ARGV, 3 + 2 * n, 2 + 2 * n + m)}
local i = 3 + 2 * n + m
while i <= #ARGV do
  local fields = {unpack(common)}
  for j = 1, m do
    fields[#fields + 1] = names[j]
    fields[#fields + 1] = ARGV[i + 2 + j]
  end
  redis.call('HSET', ARGV[i], unpack(fields))
  redis.call('RPUSH', ARGV[i + 1], ARGV[i + 2])
  redis.call('SADD', KEYS[1], ARGV[i + 1])
  i = i + 3 + m
end
return 1
"""

# RQ's stored job (`Job.to_dict` of the job `Queue.enqueue` makes), each value made by RQ's own helpers:
# what every job of a call has, and what each has of its own.
_OWN = ("data", "origin", "description", "timeout")


def _common_fields(when: str) -> dict[str, str | int]:
    unset = ("success_callback_name", "failure_callback_name", "stopped_callback_name", "started_at", "ended_at",
             "last_heartbeat", "worker_name", "group_id")  # empty for a job not yet run, without callbacks
    return {
        "created_at": when, "enqueued_at": when, **dict.fromkeys(unset, ""), "result_ttl": 0,
        "failure_ttl": FAILURE_TTL, "status": JobStatus.QUEUED.value,
    }


def _own_fields(spec: dict[str, Any], queue_name: str) -> list[bytes | str | int]:
    """The values of _OWN's fields for the job of `spec` on queue `queue_name`."""
    function, args = spec["function"], spec["args"]
    data = zlib.compress(SERIALIZER.dumps((function, None, args, {})))
    return [data, queue_name, get_call_string(function, args, {}, max_length=75) or "", spec["timeout"]]
