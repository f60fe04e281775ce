"""API latency: p50/p99 of GET /v1/services and GET /v1/tasks with 100 services and 10,000 tasks, at a
fixed request rate (open loop: requests go out on schedule whether or not earlier ones returned, and
latency counts from the scheduled time, so a stall shows in full).

The API is the real process (uvicorn) on a redis-server of the benchmark's own, holding 100 services
of 100 running tasks each (records written through the Store, as the scheduler and agents would).
The client is a small asyncio HTTP/1.1 client over keep-alive connections that reads each body
without parsing it (a /v1/tasks body is ~4 MB; the client must not be what is measured).

Two conditions per endpoint: `steady` (nothing changes: the view cache answers) and `churn` (one
task is rewritten every CHURN_PERIOD seconds, so the view is rebuilt that often under the load).
Plus the time of one request right after a write: `patch` after a write of one task (the API's copy
re-reads that task and re-renders its part, api/mirror.py), `build` after a write the change log
cannot name (`all`: a full read, parse, view and serialize, as at the API's first request).

    .venv/bin/python -m bench.api_latency --runs 3 --write
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid

from bench import harness
from bench.harness import Samples, log
from shared.config import validate_service
from shared.records import NodeRecord, TaskRecord, TaskState, task_id
from shared.storage import Store
from tests.support.procs import free_port
from tests.support.tasks import seed

SERVICES = 100
PER_SERVICE = 100
NODES = 100
RATE = 200.0  # requests per second
DURATION = 15.0  # seconds of load per measurement
CONNECTIONS = 64
TARGET_P99 = 0.020
CHURN_PERIOD = 0.5
ENDPOINTS = ("/v1/services", "/v1/tasks")
WRITES = {
    "patch": "a write of one task (the view is patched)",
    "build": "a write that may have changed anything (the view is rebuilt from a full read)",
}


def populate(store: Store) -> None:
    now = time.time()
    for i in range(NODES):
        store.register_node(
            NodeRecord(
                id=f"n{i}", address="127.0.0.1", cpu_millicores=64_000, memory_bytes=256 << 30, last_heartbeat=now
            )
        )
    writes: list[TaskRecord] = []
    for s in range(SERVICES):
        name = f"s{s}"
        spec = validate_service(
            {"service_name": name, "image": harness.IMAGE, "replicas": PER_SERVICE, "command": harness.COMMAND}
        )
        record = store.create_service(spec, now)
        for slot in range(1, PER_SERVICE + 1):
            task = TaskRecord(
                id=task_id(name, slot), service=name, slot=slot, gen=1, node=f"n{(s * PER_SERVICE + slot) % NODES}",
                state=TaskState.RUNNING, template=record.template_hash(), container_id=uuid.uuid4().hex * 2,
                created_at=now, assigned_at=now, started_at=now, updated_at=now,
            )
            writes.append(task)
    seed(store, writes)


class Client:
    """Minimal HTTP/1.1 GETs over a pool of keep-alive connections; bodies are read, not parsed."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def open(self, count: int) -> None:
        for _ in range(count):
            self.pool.put_nowait(await asyncio.open_connection(self.host, self.port, limit=1 << 24))

    async def get(self, path: str) -> int:
        reader, writer = await self.pool.get()
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            return status
        finally:
            self.pool.put_nowait((reader, writer))

    async def close(self) -> None:
        while not self.pool.empty():
            _, writer = self.pool.get_nowait()
            writer.close()


async def load(client: Client, path: str, rate: float, duration: float) -> list[float]:
    """Open loop at `rate`: latency of each request from its scheduled time; non-200 fails the run."""
    latencies: list[float] = []
    count = int(rate * duration)
    start = time.perf_counter() + 0.1

    async def one(scheduled: float) -> None:
        status = await client.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Churn:
    """Rewrites one task every `period` seconds (a heartbeat-like change the views must show)."""

    def __init__(self, store: Store, period: float):
        self.store, self.period = store, period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

        self.count = 0

    def write(self) -> None:
        task = self.store.task(task_id(f"s{self.count % SERVICES}", 1))
        self.store.write_assignments([(task.id, task.model_copy(update={"restarts": task.restarts + 1}), task)])
        self.count += 1

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.write()

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


async def _one(client: Client, path: str) -> float:
    started = time.perf_counter()
    await client.get(path)
    return time.perf_counter() - started


async def measure_all(url: str, store: Store, runs: int, rate: float, duration: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    client = Client(host, int(port))
    await client.open(CONNECTIONS)
    results: dict = {}
    try:
        for run in range(runs):
            for path in ENDPOINTS:
                await client.get(path)  # warm: the first build after start
                for condition in ("steady", "churn"):
                    loadavg = harness.load()
                    if condition == "churn":
                        with Churn(store, CHURN_PERIOD):
                            latencies = await load(client, path, rate, duration)
                    else:
                        latencies = await load(client, path, rate, duration)
                    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
                    entry = results.setdefault((path, condition), {"p50": Samples("p50"), "p99": Samples("p99")})
                    entry["p50"].add(p50)
                    entry["p99"].add(p99)
                    log(
                        f"run {run + 1} {path} {condition}: {len(latencies)} requests at {rate:.0f}/s, "
                        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
                        f"(load {loadavg})"
                    )
                for condition, write in (("patch", Churn(store, CHURN_PERIOD).write), ("build", store.touch)):
                    times = []
                    for _ in range(10):
                        await asyncio.to_thread(write)
                        times.append(await _one(client, path))
                    median = statistics.median(times)
                    results.setdefault((path, condition), {"p50": Samples("p50")})["p50"].add(median)
                    log(f"run {run + 1} {path} one request after {WRITES[condition]}: median {median * 1000:.1f} ms")
    finally:
        await client.close()
    return results


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second (default %(default)s)")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per measurement")


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], default_runs=3, extra=extra)
    loads = [harness.load()]
    with harness.workdir(args.keep_logs) as path, harness.store_and_processes(path, "lat") as (store, procs, _):
        populate(store)
        url = procs.api(free_port())
        log(f"API {url}: {SERVICES} services, {SERVICES * PER_SERVICE} tasks")
        results = asyncio.run(measure_all(url, store, args.runs, args.rate, args.duration))
    report = render(results, args, loads)
    print(report)
    if args.write:
        harness.write_section("api-latency", report)


def render(results: dict, args: argparse.Namespace, loads: list[str]) -> str:
    rows = []
    for path in ENDPOINTS:
        for condition in ("steady", "churn"):
            r = results[(path, condition)]
            p99 = r["p99"].median
            rows.append(
                [
                    f"GET {path}",
                    condition,
                    f"{r['p50'].median * 1000:.1f}",
                    f"**{p99 * 1000:.1f}** ({min(r['p99'].values) * 1000:.1f}–{max(r['p99'].values) * 1000:.1f})",
                    "met" if p99 < TARGET_P99 else "**missed**",
                ]
            )
        for condition, write in WRITES.items():
            median = results[(path, condition)]["p50"].median
            rows.append([f"GET {path}", f"one request right after {write}", f"{median * 1000:.1f}", "—", "—"])
    table = harness.markdown_table(
        ["endpoint", "condition", "p50 ms", "p99 ms (min–max over runs)", f"target p99 < {TARGET_P99 * 1000:.0f} ms"],
        rows,
    )
    return (
        f"_Command:_ `.venv/bin/python -m bench.api_latency --runs {args.runs} --write`\n\n"
        f"_Machine:_ {harness.machine()}; load averages at start: {', '.join(loads)}\n\n"
        f"{SERVICES} services x {PER_SERVICE} running tasks on {NODES} nodes; {args.rate:.0f} requests/s per "
        f"endpoint for {args.duration:.0f} s (open loop, {CONNECTIONS} keep-alive connections), medians of "
        f"{args.runs} runs; churn = one task rewritten every {CHURN_PERIOD} s during the load.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
