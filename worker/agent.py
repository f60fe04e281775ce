"""The node agent: an RQ worker that runs this node's task jobs and keeps the node's records true.

Run as `rq worker -w worker.agent.NodeAgent node-1`: the queue name given is the node id; the
worker listens on the cluster's queue for that node and finds Redis through GORCHESTER_REDIS_URL
(and GORCHESTER_REDIS_PASSWORD_FILE). Its jobs are JSON and only the cluster's own (shared/dispatch.py),
whatever serializer rq's command line names. Besides jobs it runs daemon threads: heartbeat, Docker
event stream, the sweep, metrics, health checks and the API's logs and exec requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job

from shared import process_logs
from shared.defaults import DEFAULT_POD_NETWORK_INTERVAL
from shared.dispatch import SERIALIZER, TaskJob
from shared.event_kinds import EventKind
from shared.keys import Keys
from shared.node_requests import MAX_NODE_REQUESTS
from shared.records import EngineHealth, NodeRecord
from shared.redis_access import check_access
from shared.redis_url import current_server
from shared.settings import Settings
from shared.storage import AgentStore
from shared.storage.connection import connect
from worker import sweep
from worker.engine import Engine, EngineError
from worker.events import EventWatcher
from worker.health import HealthMonitor
from worker.identity import node_record
from worker.loops import MAX_BACKOFF, repeat, spawn
from worker.node import Node, current, install
from worker.pod_network import FOLLOW_INTERVAL, PodNetworkUpkeep
from worker.request_server import RequestServer
from worker.usage_sampler import Sampler

__all__ = ["NodeAgent", "current"]

log = logging.getLogger("rq.worker.gorchester")

# `rq worker` checks for suspension on its own connection before it builds the worker, and without
# --url that is REDIS_URL or localhost:6379; point it at the cluster's Redis, with its password, so
# the agent needs no --url (which `ps` would show). A wrong password or TLS setting stops the agent
# here, named, rather than as rq's bare connection error.
process_logs.configure("agent")  # before rq's command line sets up its own format (it keeps ours if there)
_settings = Settings.from_env()
os.environ["REDIS_URL"] = current_server(_settings.redis_url)  # rq's command line takes one server
check_access(_settings.redis_url, _settings.cluster, "node agent")

T = TypeVar("T")
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class NodeAgent(SimpleWorker):
    """SimpleWorker: jobs run in this process, without a fork each, so a start takes milliseconds.

    RQ's work loop retries a lost Redis only while it waits for a job; a Redis error anywhere else
    in the loop makes it quit. An agent must outlive a Redis restart, so every other step of the
    loop that talks to Redis waits the outage out with back-off instead.
    """

    max_connection_wait_time = MAX_BACKOFF  # RQ's own dequeue retries: back to work soon after Redis

    def __init__(self, queues: str | Queue | Sequence[str] | Sequence[Queue], *args: Any, **kwargs: Any):
        first = queues if isinstance(queues, str | Queue) else queues[0]
        node_id = first if isinstance(first, str) else first.name
        process_logs.configure("agent", node_id)  # every line of the agent names its node from here on
        self.settings = Settings.from_env()
        self.store = AgentStore(connect(self.settings.redis_url), self.settings.cluster)
        self.record: NodeRecord = node_record(node_id, self.settings, os.environ, time.time())
        self.stopping = threading.Event()
        self.engine_health = EngineHealth()  # what the last heartbeat found of the engine
        kwargs["connection"] = connect(self.settings.redis_url, decode=False)  # RQ's payloads are zlib-compressed
        kwargs["serializer"], kwargs["job_class"] = SERIALIZER, TaskJob  # never pickle, only our jobs
        super().__init__([Keys(self.settings.cluster).queue(node_id)], *args, **kwargs)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        process_logs.configure("agent", self.record.id)  # undo the level rq's bootstrap sets on its loggers
        node = Node(
            id=self.record.id,
            address=self.record.address,
            store=self.store,
            engine=Engine.from_env(self.settings.cluster, self.record.id),
            host_access=self.settings.host_access,
            pod_cidr=self.settings.pod_cidr,
        )
        install(node)
        self.engine = node.engine
        self.register()
        # Heartbeat first: the first sweep may gracefully stop stale containers for many seconds,
        # and a node that does not beat meanwhile would be declared down again (found by bench/chaos.py).
        interval = self.settings.heartbeat_interval
        # Tried again every interval, without back-off: after a Redis outage the node must beat within an
        # interval, as the scheduler gives it only the heartbeat window from Redis' return (NodeRecord.down_at).
        spawn("heartbeat", lambda: repeat(self.stopping, interval, self.beat, "heartbeat", max_backoff=interval))
        spawn("docker-events", lambda: EventWatcher(node).run(self.stopping))
        spawn("sweep", lambda: repeat(self.stopping, sweep.INTERVAL, lambda: sweep.sweep(node), "sweep"))
        sampler = Sampler(node, self.record, self.settings.metrics_interval)  # worker/usage_sampler.py: usage samples
        spawn("metrics", lambda: repeat(self.stopping, self.settings.metrics_interval, sampler.step, "metrics"))
        spawn("health", lambda: HealthMonitor(node).run(self.stopping))
        # The API's logs and exec requests (worker/request_server.py), on an engine client of their own.
        request_engine = Engine.from_env(self.settings.cluster, self.record.id, connections=MAX_NODE_REQUESTS)
        spawn("requests", RequestServer(node, request_engine, self.settings.redis_url, self.stopping).run)
        # Routes and firewall rules of the cluster's pod network on this host (worker/pod_network.py).
        upkeep = PodNetworkUpkeep(node, self.stopping, every=DEFAULT_POD_NETWORK_INTERVAL)
        look = lambda: upkeep.tick(time.monotonic())  # noqa: E731 - the loop's step
        spawn("pod-network", lambda: repeat(self.stopping, FOLLOW_INTERVAL, look, "pod network"))

    def register(self) -> None:
        first_time = not self.store.registered(self.record.id)
        now = time.time()
        self.store.register_node(self.record.model_copy(update={"registered_at": now, "last_heartbeat": now}))
        if first_time:
            message = f"node {self.record.id} joined at {self.record.address}"
            self.store.emit(EventKind.NODE_ADDED, message, node=self.record.id)
        log.info("node %s registered (%s)", self.record.id, self.record.address)

    def beat(self) -> None:
        # Re-register when the node's hash vanished (Redis lost its data): a bare HSET would leave a stub.
        if not self.store.node_exists(self.record.id):
            self.register()
        # Each beat also says whether the engine answers: a node whose engine is gone is not ready at
        # once, and down (its replicas move) once that has lasted the heartbeat window.
        now = time.time()
        health = self.engine_health.observe(self.engine.health(), now)
        if health.error is not None and self.engine_health.error is None:
            log.warning("node %s: the engine does not answer: %s", self.record.id, health.error)
        elif health.error is None and self.engine_health.error is not None:
            log.info("node %s: the engine answers again", self.record.id)
        self.engine_health = health
        engine_id = None
        if health.error is None:
            with contextlib.suppress(EngineError):
                engine_id = self.engine.engine_id  # asked once (then remembered): which engine this node uses
        self.store.heartbeat(self.record.id, now, engine=health, engine_id=engine_id)

    def check_for_suspension(self, burst: bool) -> None:
        step = super().check_for_suspension
        self._outlive_redis(lambda: step(burst), "suspension check")

    def run_maintenance_tasks(self) -> None:
        self._outlive_redis(super().run_maintenance_tasks, "maintenance")

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        step = super().heartbeat
        self._outlive_redis(lambda: step(timeout, pipeline), "worker heartbeat")

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # The job's outcome may be lost with Redis; the scheduler sends again a job that left no trace.
            log.warning("job %s interrupted: redis unavailable (%s)", job.id, exc)
            self._outlive_redis(self.connection.ping, "reconnect")

    def _outlive_redis(self, step: Callable[[], T], what: str) -> T:
        delay = 0.2
        while True:
            try:
                return step()
            except REDIS_DOWN as exc:
                log.warning("%s: redis unavailable (%s); retrying in %.1fs", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def teardown(self) -> None:
        self.stopping.set()
        super().teardown()
