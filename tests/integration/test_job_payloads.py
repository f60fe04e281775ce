"""Job payloads on the wire: JSON, never pickle, and a node agent runs only the cluster's own jobs.

Whoever can write to Redis must not get code run on the nodes: a pickled payload pushed by hand onto
a node's queue is never unpickled, a JSON one naming another function is never called, and the
agent goes on working.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from rq import Queue
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from shared.dispatch import Action, Decision, enqueue, job_spec, queue
from shared.records import TaskState
from shared.storage import Store
from shared.storage.connection import connect
from tests.integration.test_agent import NODE, Scheduler, service
from tests.support.procs import Processes, wait_for


class Marker:
    """Unpickling one creates its file: proof that a payload was unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


def stored_payload(redis_url: str, job_id: str) -> Any:
    raw = connect(redis_url, decode=False).hget(f"rq:job:{job_id}", "data")
    return json.loads(zlib.decompress(raw))


def test_enqueued_jobs_are_json(store: Store, redis_server: Any) -> None:
    jobs = connect(redis_server.url, decode=False)
    enqueue(jobs, store._keys, [Decision("n1", Action.START, "web.1", 3, "i1")])
    enqueue(jobs, store._keys, [
        Decision("n2", Action.STOP, "web.2", 4, "i2"), Decision("n2", Action.START, "db.1", 1, "i3"),
    ])

    [single] = queue(jobs, store._keys.queue("n1")).job_ids
    assert stored_payload(redis_server.url, single) == ["worker.jobs.start_task", None, ["web.1", 3, "i1"], {}]
    [batch] = queue(jobs, store._keys.queue("n2")).job_ids
    assert stored_payload(redis_server.url, batch) == [
        "worker.jobs.run_batch", None, [[["stop", "web.2", 4, "i2"], ["start", "db.1", 1, "i3"]]], {}
    ]


@pytest.mark.parametrize("decisions", [
    [Decision("n1", Action.START, "web.1", 3, "i1")],
    [Decision("n1", Action.STOP, "web.2", 4, "i2"), Decision("n1", Action.START, "db.1", 1, "")],
], ids=["single", "batch"])
def test_an_enqueued_job_is_stored_as_rqs_own_enqueue_stores_it(
    store: Store, redis_server: Any, decisions: list[Decision]
) -> None:
    """`enqueue` writes RQ's job layout itself (shared/dispatch.py `job_fields`): the same fields and
    values as the job RQ's `Queue.enqueue` stores for the same call, but the times of their making,
    and a worker's RQ reads it back as that call."""
    jobs = connect(redis_server.url, decode=False)
    enqueue(jobs, store._keys, decisions)
    [ours] = queue(jobs, store._keys.queue("n1")).job_ids
    spec = job_spec(store._keys, decisions)
    theirs = queue(jobs, store._keys.queue("n2")).enqueue(
        spec["function"], *spec["args"], job_id=f"theirs-{ours}", job_timeout=spec["timeout"], result_ttl=0,
        failure_ttl=3600,
    )
    stored = {job_id: jobs.hgetall(f"rq:job:{job_id}") for job_id in (ours, theirs.id)}
    made_at = {b"created_at", b"enqueued_at", b"origin"}
    assert {k: v for k, v in stored[ours].items() if k not in made_at} == {
        k: v for k, v in stored[theirs.id].items() if k not in made_at
    }
    assert stored[ours].keys() == stored[theirs.id].keys()
    assert stored[ours][b"origin"] == store._keys.queue("n1").encode()
    assert jobs.smembers(Queue.redis_queues_keys) >= {
        f"rq:queue:{store._keys.queue(node)}".encode() for node in ("n1", "n2")
    }
    fetched = [queue(jobs, store._keys.queue(node)).fetch_job(job_id) for node, job_id in (("n1", ours),
                                                                                         ("n2", theirs.id))]
    assert [(job.func_name, job.args, job.timeout, job.get_status()) for job in fetched if job is not None] == [
        (theirs.func_name, fetched[1].args, theirs.timeout, JobStatus.QUEUED)
    ] * 2


@pytest.fixture
def agent(procs: Processes, store: Store) -> Processes:
    procs.agent(NODE, "127.0.0.2")
    wait_for(lambda: store.node(NODE), what="the agent to register")
    return procs


def test_a_hand_made_job_is_never_unpickled_nor_run(
    agent: Processes, store: Store, redis_server: Any, tmp_path: Path
) -> None:
    raw = connect(redis_server.url, decode=False)
    node_queue = store._keys.queue(NODE)
    pickled = Queue(node_queue, connection=raw)  # RQ's default serializer: pickle
    data_marker, meta_marker, call_marker = tmp_path / "data", tmp_path / "meta", tmp_path / "called"
    hostile = [
        pickled.enqueue("worker.jobs.start_task", Marker(data_marker), 1),
        pickled.enqueue("worker.jobs.start_task", "web.9", 1, meta={"x": Marker(meta_marker)}),
        # JSON, but naming a function that is not one of the cluster's jobs.
        Queue(node_queue, connection=raw, serializer=JSONSerializer).enqueue("os.system", f"touch {call_marker}"),
    ]
    assert not data_marker.exists() and not meta_marker.exists()  # building them here did not unpickle

    # Queued after the hostile jobs, so the agent has been through them when it starts this one.
    scheduler = Scheduler(store, redis_server.url)
    task_id = scheduler.start(service(command=["sh", "-c", "while true; do sleep 1; done"]))
    scheduler.wait_state(task_id, TaskState.RUNNING)

    assert agent.procs[NODE].poll() is None, agent.log(NODE)
    assert not data_marker.exists() and not meta_marker.exists() and not call_marker.exists()
    for job in hostile:
        status = RQJob.fetch(job.id, connection=raw, serializer=JSONSerializer).get_status()
        assert status == JobStatus.FAILED, (job.id, status)
    assert os.listdir(tmp_path) == [f"{NODE}.log"]
