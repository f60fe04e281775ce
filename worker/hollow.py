"""Hollow nodes: many simulated node agents in one process, the real job code with a fake engine.

As Kubernetes' kubemark runs hollow kubelets, a hollow process registers N nodes, heartbeats for all
of them (one pipelined round trip per beat), and consumes their real RQ queues with one RQ worker
listening on all of them. Each job runs the real `worker.jobs` code against the node whose queue it
came from (`worker.node.serving`), with `FakeEngine` in place of Docker: containers are in-memory
records that "run" the moment they are started. Used by bench/scale.py and the hollow integration
test; a scheduler cannot tell a hollow node from a real one.

    GORCHESTER_REDIS_URL=... GORCHESTER_CLUSTER=... python -m worker.hollow --prefix h0- --nodes 250

Not simulated: Docker's event stream (hollow containers never exit on their own) and the periodic
sweep (it reads every task per node; at 1,000 nodes that is load no real node would add at once).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from rq import Queue, SimpleWorker
from rq.job import Job

from shared import labels, process_logs
from shared.dispatch import SERIALIZER, TaskJob
from shared.keys import Keys
from shared.records import NodeRecord, PublishedPort
from shared.settings import Settings
from shared.storage import AgentStore
from shared.storage.connection import connect
from worker.engine import ExecResult
from worker.loops import repeat, spawn
from worker.node import Node, serving

log = logging.getLogger("rq.worker.gorchester")

GIB = 1024**3


@dataclass
class FakeContainer:
    """What the jobs read of a docker SDK Container: id, name, labels, status, attrs."""

    id: str
    name: str
    labels: dict[str, str]
    status: str = "created"
    ports: list[PublishedPort] = field(default_factory=list)

    @property
    def attrs(self) -> dict[str, Any]:
        return {"State": {"Status": self.status, "ExitCode": 0, "OOMKilled": False}}


class FakeEngine:
    """worker/container_engine.py's ContainerEngine in memory: one hollow node's containers, which run
    the moment they start, pass every health check and use nothing."""

    _ids = itertools.count(1)
    _ports = itertools.count(30000)
    parallel_starts = 1  # nothing to overlap in memory; threads would only cost

    def __init__(self, cluster: str, node_id: str):
        self.cluster = cluster
        self.node_id = node_id
        self.by_name: dict[str, FakeContainer] = {}
        self.images: set[str] = set()
        self.volumes: set[str] = set()
        self.networks: dict[str, tuple[str, str]] = {}  # name -> (id, subnet)

    def ensure_image(self, image: str) -> None:
        self.images.add(image)

    @property
    def engine_id(self) -> str:
        return f"hollow-{self.node_id}"  # an engine of its own per hollow node

    def health(self) -> str | None:
        return None

    def ensure_network(self, name: str, subnet_for: Callable[[list[str]], str]) -> tuple[str, str]:
        if name not in self.networks:
            self.networks[name] = (f"net-{name}", subnet_for([]))
        return self.networks[name]

    def duplicate_networks(self) -> list[str]:
        return []

    def ensure_volume(self, name: str) -> None:
        self.volumes.add(name)

    def run(self, args: dict[str, Any]) -> FakeContainer:
        if args["name"] in self.by_name:
            raise_conflict(args["name"])
        ports = [
            PublishedPort(
                host_ip=address,
                host_port=host_port or next(self._ports),
                container_port=int(key.partition("/")[0]),
                protocol=key.partition("/")[2] or "tcp",
            )
            for key, (address, host_port) in (args.get("ports") or {}).items()
        ]
        container = FakeContainer(f"hollow{next(self._ids):012d}", args["name"], dict(args["labels"]), ports=ports)
        self.by_name[container.name] = container
        self.start(container)
        return container

    def start(self, container: Any) -> None:
        container.status = "running"

    def stop(self, container: Any) -> None:
        container.status = "exited"

    def remove(self, container: Any) -> None:
        self.by_name.pop(container.name, None)

    def containers(self, tasks: Collection[str] | None = None) -> list[Any]:
        return [c for c in self.by_name.values() if tasks is None or c.labels.get(labels.TASK) in tasks]

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        found = next((c for c in self.by_name.values() if c.id == container_id), None)
        return None if found is None else found.attrs

    def published_ports(self, container: Any) -> list[PublishedPort]:
        return list(container.ports)

    def exec(
        self, container_id: str, argv: list[str], timeout: float, *, limit: int,
        waiting: Callable[[], bool] = lambda: True,
    ) -> ExecResult:
        return ExecResult(exit_code=0, output=b"", truncated=False)

    def stats(self, container_id: str) -> dict[str, Any]:
        return {}

    def events(self, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        return iter(())  # its containers never exit on their own


def raise_conflict(name: str) -> None:
    from worker.engine import EngineError

    raise EngineError(f"create container {name}: Conflict. The container name is already in use")


class HollowWorker(SimpleWorker):
    """One RQ worker consuming the queues of all hollow nodes of this process."""

    def __init__(self, nodes: list[Node], connection: Any):
        self.by_queue = {Keys(node.cluster).queue(node.id): node for node in nodes}
        super().__init__(list(self.by_queue), connection=connection, serializer=SERIALIZER, job_class=TaskJob)

    def execute_job(self, job: Job, queue: Queue) -> None:
        with serving(self.by_queue[queue.name]):
            super().execute_job(job, queue)


def hollow_nodes(store: AgentStore, settings: Settings, prefix: str, count: int) -> list[Node]:
    nodes = []
    for i in range(count):
        engine = FakeEngine(settings.cluster, f"{prefix}{i}")
        nodes.append(
            Node(id=f"{prefix}{i}", address="127.0.0.1", store=store, engine=engine, host_access=settings.host_access)
        )
    return nodes


def register(store: AgentStore, settings: Settings, nodes: list[Node], cpu: int, memory: int) -> None:
    now = time.time()
    for node in nodes:
        store.register_node(
            NodeRecord(
                id=node.id,
                address=node.address,
                cpu_millicores=cpu,
                memory_bytes=memory,
                labels={"hollow": "true"},
                heartbeat_interval=settings.heartbeat_interval,
                last_heartbeat=now,
                registered_at=now,
            )
        )


def beat(store: AgentStore, nodes: list[Node]) -> None:
    store.heartbeat_many([node.id for node in nodes], time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="hollow-", help="node ids are <prefix>0, <prefix>1, ...")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cpu", type=int, default=64_000, help="millicores per node")
    parser.add_argument("--memory", type=int, default=256 * GIB, help="bytes per node")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    process_logs.configure("agent", level=args.log_level)
    settings = Settings.from_env()
    store = AgentStore(connect(settings.redis_url), settings.cluster)
    nodes = hollow_nodes(store, settings, args.prefix, args.nodes)
    register(store, settings, nodes, args.cpu, args.memory)
    stopping = threading.Event()
    interval = settings.heartbeat_interval  # retried every interval, as the agent's (worker/agent.py)
    spawn("heartbeat", lambda: repeat(stopping, interval, lambda: beat(store, nodes), "heartbeat", interval))
    print(f"hollow: {len(nodes)} nodes {args.prefix}0..{args.prefix}{len(nodes) - 1} (pid {os.getpid()})", flush=True)
    worker = HollowWorker(nodes, connect(settings.redis_url, decode=False))
    try:
        worker.work(logging_level=None, with_scheduler=False)  # the level is configure's (rq's would replace it)
    finally:
        stopping.set()


if __name__ == "__main__":
    main()
