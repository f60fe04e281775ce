"""Agents' Redis work: commands and bytes per agent per second, at 1,000 hollow nodes x 10,000 replicas.

A hollow cluster (bench/scale.py's: API, scheduler, hollow node processes on a redis-server of its
own) runs 10,000 replicas on 1,000 nodes. Then `--observers` of its nodes also get the agent's own
periodic readers, as `rq worker` runs them for a real node: the health monitor (its scan every 0.5 s),
the sweep (every 10 s) and the usage sampler (every 5 s), the product's own code, each node with a
Redis connection of its own whose commands and bytes are counted on the client side (redis-server
7.0 keeps no per-client totals). The observers' engines are in memory, mirroring their node's
running replicas before each sweep (read on another, uncounted connection). Measured twice for
`--seconds` each: with the cluster idle, and under churn (a service scaled between 1 and 2 replicas
every 0.5 s through the API: a write somewhere in the cluster, as heartbeats of tasks are).

Run it from a checkout to measure that checkout (the layout it reads is its own):

    .venv/bin/python -m bench.agent_reads --label after
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from bench import harness
from bench.harness import log
from bench.scale import HollowCluster
from shared import labels
from shared.records import NodeRecord, TaskState
from shared.storage import Store
from tests.support.procs import wait_for
from worker.health import POLL, HealthMonitor
from worker.hollow import FakeContainer, FakeEngine
from worker.node import Node
from worker.sweep import INTERVAL, sweep
from worker.usage_sampler import Sampler

NODES, REPLICAS, SERVICES = 1_000, 10_000, 100
SAMPLER_INTERVAL = 5.0  # the agent's default (GORCHESTER_METRICS_INTERVAL)
CHURN_PERIOD = 0.5


@dataclass
class Meter:
    """What one agent's connection sent and read."""

    commands: int = 0
    read: int = 0
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, commands: int = 0, read: int = 0, sent: int = 0) -> None:
        with self.lock:
            self.commands += commands
            self.read += read
            self.sent += sent

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.commands, self.read, self.sent


class CountingSocket:
    """A socket that counts the bytes through it (the rest is the socket's own)."""

    def __init__(self, sock: socket.socket, meter: Meter):
        self._sock, self._meter = sock, meter

    def recv_into(self, buffer: Any, *args: Any) -> int:
        count = self._sock.recv_into(buffer, *args)
        self._meter.add(read=count)
        return count

    def recv(self, *args: Any) -> bytes:
        data = self._sock.recv(*args)
        self._meter.add(read=len(data))
        return data

    def sendall(self, data: Any, *args: Any) -> None:
        self._meter.add(sent=len(data))
        self._sock.sendall(data, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def metered_client(url: str, meter: Meter) -> redis.Redis:
    class Counting(redis.Connection):
        def _connect(self) -> Any:
            return CountingSocket(super()._connect(), meter)

        def pack_commands(self, commands: Any) -> Any:
            meter.add(commands=len(commands))
            return super().pack_commands(commands)

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            meter.add(commands=1)
            super().send_command(*args, **kwargs)

    pool = redis.ConnectionPool.from_url(
        url, connection_class=Counting, decode_responses=True, encoding_errors="replace", socket_timeout=10
    )
    return redis.Redis(connection_pool=pool)


class Observer:
    """One node's periodic readers, on a metered connection of its own."""

    def __init__(self, cluster: HollowCluster, node_id: str, plain: Store):
        self.meter = Meter()
        store = Store(metered_client(cluster.redis.url, self.meter), cluster.name)
        self.engine = FakeEngine(cluster.name, node_id)
        self.node = Node(id=node_id, address="127.0.0.1", store=store, engine=self.engine)  # type: ignore[arg-type]
        self.plain = plain  # uncounted: the engine's mirror is not the agent's work
        record = NodeRecord(id=node_id, address="127.0.0.1", cpu_millicores=4000, memory_bytes=8 << 30)
        self.monitor = HealthMonitor(self.node)
        self.sampler = Sampler(self.node, record, SAMPLER_INTERVAL)

    def mirror(self) -> None:
        """The engine holds this node's running replicas' containers, as the hollow process's does."""
        self.engine.by_name = {
            task.id: FakeContainer(
                task.container_id or "", task.id,
                {labels.TASK: task.id, labels.GEN: str(task.gen), labels.INCARNATION: task.incarnation,
                 labels.NODE: self.node.id},
                status="running",
            )
            for task in self.plain.tasks()
            if task.node == self.node.id and task.state is TaskState.RUNNING
        }

    def swept(self) -> None:
        self.mirror()
        sweep(self.node)


def loop(stop: threading.Event, interval: float, step: Any, failures: list[str]) -> None:
    """As the agent's own loops: every `interval`, a failure noted and the loop carried on."""
    while not stop.wait(interval):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - counted and shown, as the agent logs and carries on
            failures.append(f"{getattr(step, '__qualname__', step)}: {type(exc).__name__}: {exc}")


def window(observers: list[Observer], seconds: float) -> dict[str, float]:
    """Per agent per second over `seconds` of the observers' loops."""
    stop = threading.Event()
    threads = []
    failures: list[str] = []
    for observer in observers:
        for interval, step in ((POLL, observer.monitor.scan), (INTERVAL, observer.swept),
                               (SAMPLER_INTERVAL, observer.sampler.sample_once)):
            threads.append(threading.Thread(target=loop, args=(stop, interval, step, failures), daemon=True))
    before = [observer.meter.snapshot() for observer in observers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    after = [observer.meter.snapshot() for observer in observers]
    total = [sum(a[i] - b[i] for a, b in zip(after, before, strict=True)) for i in range(3)]
    per = len(observers) * elapsed
    if failures:
        log(f"{len(failures)} steps failed, first: {failures[0]}")
    return {"commands": total[0] / per, "read": total[1] / per, "sent": total[2] / per, "failed": len(failures)}


def churn(url: str, stop: threading.Event) -> None:
    replicas = 1
    while not stop.wait(CHURN_PERIOD):
        replicas = 3 - replicas
        httpx.post(f"{url}/v1/services/churn/scale", json={"replicas": replicas}, timeout=10).raise_for_status()


def measure(observed: int, seconds: float, keep_logs: bool) -> dict[str, dict[str, float]]:
    with harness.workdir(keep_logs) as path:
        cluster = HollowCluster(path, NODES, 2)
        try:
            cluster.start()
            cluster.apply(REPLICAS)
            wait_for(lambda: cluster.all_tasks(REPLICAS, "running"), timeout=180, interval=0.5,
                     what=f"{REPLICAS} replicas running")
            spec = {"service_name": "churn", "image": harness.IMAGE, "replicas": 1, "command": harness.COMMAND}
            httpx.post(f"{cluster.url}/v1/services", json=spec, timeout=10).raise_for_status()
            plain = Store(redis.Redis.from_url(cluster.redis.url, decode_responses=True), cluster.name)
            observers = [Observer(cluster, f"h0-{i}", plain) for i in range(observed)]
            for observer in observers:  # a first look, as an agent starting up takes: not counted
                observer.monitor.scan()
                observer.swept()
                observer.sampler.sample_once()
            results = {"idle": window(observers, seconds)}
            stop = threading.Event()
            churner = threading.Thread(target=churn, args=(cluster.url, stop), daemon=True)
            churner.start()
            try:
                results["churn"] = window(observers, seconds)
            finally:
                stop.set()
                churner.join()
            for kind, got in results.items():
                log(f"{kind}: {got['commands']:.1f} commands/s, {got['read'] / 1024:.1f} KiB/s read, "
                    f"{got['sent'] / 1024:.2f} KiB/s sent per agent")
            return results
        finally:
            cluster.close()


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--observers", type=int, default=20, help="nodes whose agent readers are measured")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each window")
    parser.add_argument("--label", default="", help="what this checkout is (shown in the report)")


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], default_runs=1, extra=extra)
    results = measure(args.observers, args.seconds, args.keep_logs)
    rows = [
        [args.label or "this checkout", kind, f"{got['commands']:.1f}", f"{got['read'] / 1024:,.1f}",
         f"{got['sent'] / 1024:.2f}"]
        for kind, got in results.items()
    ]
    report = harness.markdown_table(
        ["code", "cluster", "Redis commands/s per agent", "KiB/s read per agent", "KiB/s sent per agent"], rows
    )
    print(report)
    print(f"_Machine:_ {harness.machine()}")


if __name__ == "__main__":
    main()
