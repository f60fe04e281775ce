"""Scale: placements per second and time to all running, on hollow nodes, through the real scheduler.

A cluster of real processes on a redis-server of its own: the API, the scheduler (default settings)
and hollow node processes (worker/hollow.py: the real agent job code and RQ queues, a fake engine),
each hosting a share of the nodes. 100 services (`POST /v1/apply`, one request) of replicas/100
each are applied; the clock runs from the request until every task is placed (has a node), and
until every task reports running. Placements per second are the scheduler's own: placements
divided by the wall time of the passes that made them (from its log, which times each pass).

    .venv/bin/python -m bench.scale --runs 3 --write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from bench import harness
from bench.harness import Samples, log
from tests.support.procs import Processes, free_port, wait_for

SIZES = ((100, 1_000), (1_000, 1_000), (1_000, 10_000))  # (nodes, replicas)
SERVICES = 100
TARGET_RATE = 5_000.0  # placements per second
TARGET_RUNNING = 10.0  # seconds until all 10,000 run
TIMEOUT = 180.0
POLL = 0.1  # seconds between looks at the events stream

# Whether every task is placed (its assignment names a node) or running (its agent's status says so;
# ARGV[1]): one server-side scan, stopping at the first record that answers no. KEYS: the assignments
# and the statuses hashes. A scan of 10,000 records costs ~15 ms of the Redis the system under test
# shares, too dear every POLL for seconds; so "running" is followed on the events stream and this
# only confirms it.
COUNT_TASKS = """
local total = redis.call('HLEN', KEYS[1])
local placed = ARGV[1] == 'placed'
local bodies = redis.call('HVALS', placed and KEYS[1] or KEYS[2])
if #bodies ~= total then return {total, 0} end
local needle = placed and '"node":"' or '"state":"running"'
for _, body in ipairs(bodies) do
  if not string.find(body, needle, 1, true) then return {total, 0} end
end
return {total, 1}
"""

PASS_LINE = re.compile(r"\((\d+) placements\).*?; ([\d.]+)s \(")


class HollowCluster:
    """API + scheduler + hollow node processes on one Redis, default settings, a unique cluster name."""

    def __init__(self, workdir: Path, nodes: int, processes: int):
        self.name = f"scale{uuid.uuid4().hex[:8]}"
        self.nodes = nodes
        self.processes = processes
        self.redis = harness.Redis(workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GORCHESTER_")}
        env.update({"GORCHESTER_REDIS_URL": self.redis.url, "GORCHESTER_CLUSTER": self.name})
        self.procs = Processes(env, workdir)
        self.client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        self.count = self.client.register_script(COUNT_TASKS)
        self.url = ""

    def start(self) -> HollowCluster:
        wait_for(self.client.ping, timeout=10, what="redis-server")
        self.url = self.procs.api(free_port())
        self.procs.scheduler()
        count, rest = divmod(self.nodes, self.processes)
        shares = [count + (1 if i < rest else 0) for i in range(self.processes)]
        for i, share in enumerate(shares):
            argv = [sys.executable, "-m", "worker.hollow", "--prefix", f"h{i}-", "--nodes", str(share)]
            self.procs.start(f"hollow-{i}", argv)
        nodes_key = f"gorchester:{self.name}:nodes"
        wait_for(lambda: self.client.scard(nodes_key) == self.nodes, timeout=120, what=f"{self.nodes} hollow nodes")
        time.sleep(1.0)  # let the scheduler settle on the registrations before the clock starts
        return self

    def close(self) -> None:
        self.procs.close()
        self.redis.close()

    def watch(self) -> Watch:
        return Watch(self.client, f"gorchester:{self.name}:events")

    def all_tasks(self, replicas: int, state: str) -> bool:
        """Whether `replicas` tasks exist and all are `placed` (have a node) or `running`."""
        prefix = f"gorchester:{self.name}"
        total, every = self.count(keys=[f"{prefix}:assignments", f"{prefix}:statuses"], args=[state])
        return int(total) == replicas and bool(every)

    def apply(self, replicas: int) -> None:
        per_service = replicas // SERVICES
        config = {
            "services": [
                {
                    "service_name": f"s{i}",
                    "image": harness.IMAGE,
                    "replicas": per_service,
                    "command": harness.COMMAND,
                    "restart_policy": "always",
                }
                for i in range(SERVICES)
            ]
        }
        response = httpx.post(f"{self.url}/v1/apply", json=config, timeout=60)
        response.raise_for_status()

    def scheduler_rate(self) -> tuple[int, float]:
        """(placements, seconds of the passes that made them), from the scheduler's log."""
        placements, seconds = 0, 0.0
        for match in PASS_LINE.finditer(self.procs.log("scheduler")):
            if int(match.group(1)):
                placements += int(match.group(1))
                seconds += float(match.group(2))
        return placements, seconds


class Watch:
    """The tasks started so far, from the events stream (read incrementally, as `gorchester events
    --follow` does): each look costs what happened since the last one. (Placement takes one pass:
    its 10,000 task_scheduled events come at once, more than the stream keeps, so placement is
    looked at in the tasks themselves.)"""

    def __init__(self, client: redis.Redis, stream: str):
        self.client = client
        self.stream = stream
        self.started: set[str] = set()
        self.last = client.xinfo_stream(stream)["last-generated-id"] if client.exists(stream) else "0-0"

    def look(self) -> int:
        """How many tasks have started since the watch began."""
        for _, entries in self.client.xread({self.stream: self.last}, count=100_000) or []:
            for event_id, fields in entries:
                self.last = event_id
                event = json.loads(fields["event"])
                if event["type"] == "task_started":
                    self.started.add(event["data"]["task"])
        return len(self.started)


@dataclass
class Run:
    placed_s: float
    running_s: float
    placements: int
    pass_seconds: float

    @property
    def rate(self) -> float:
        return self.placements / self.pass_seconds if self.pass_seconds else 0.0


def measure(nodes: int, replicas: int, processes: int, keep_logs: bool) -> Run:
    with harness.workdir(keep_logs) as path:
        cluster = HollowCluster(path, nodes, processes)
        try:
            cluster.start()
            load = harness.load()
            watch = cluster.watch()
            start = time.perf_counter()
            cluster.apply(replicas)
            placed_s = running_s = 0.0
            deadline = start + TIMEOUT
            while time.perf_counter() < deadline:
                started = watch.look()
                now = time.perf_counter()
                if not placed_s and cluster.all_tasks(replicas, "placed"):
                    placed_s = now - start
                if placed_s and started >= replicas and cluster.all_tasks(replicas, "running"):
                    running_s = now - start
                    break
                time.sleep(POLL)
            else:
                raise AssertionError(f"not all {replicas} running after {TIMEOUT}s")
            time.sleep(0.5)  # the scheduler logs a pass when it ends
            placements, seconds = cluster.scheduler_rate()
            run = Run(placed_s, running_s, placements, seconds)
            log(
                f"nodes={nodes} replicas={replicas}: all placed {placed_s:.2f}s, all running {running_s:.2f}s, "
                f"scheduler {placements} placements in {seconds:.3f}s = {run.rate:,.0f}/s (load {load})"
            )
            return run
        finally:
            cluster.close()


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=2, help="hollow node processes (nodes split evenly)")
    parser.add_argument(
        "--sizes", default=",".join(f"{n}x{r}" for n, r in SIZES), help="NODESxREPLICAS,... (default: %(default)s)"
    )


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], default_runs=3, extra=extra)
    sizes = [tuple(int(v) for v in item.split("x")) for item in args.sizes.split(",")]
    results: dict[tuple[int, int], dict[str, Samples]] = {}
    loads = []
    for run in range(args.runs):
        for nodes, replicas in sizes:
            loads.append(harness.load())
            got = measure(nodes, replicas, args.processes, args.keep_logs)
            samples = results.setdefault((nodes, replicas), {k: Samples(k) for k in ("placed", "running", "rate")})
            samples["placed"].add(got.placed_s)
            samples["running"].add(got.running_s)
            samples["rate"].add(got.rate)
        log(f"run {run + 1}/{args.runs} done")
    report = render(results, args, loads)
    print(report)
    if args.write:
        harness.write_section("scale", report)


def render(results: dict[tuple[int, int], dict[str, Samples]], args: argparse.Namespace, loads: list[str]) -> str:
    rows = []
    base = None
    for (nodes, replicas), r in results.items():
        running = r["running"].median
        if base is None:
            base = running
        rows.append(
            [
                f"{nodes:,}",
                f"{replicas:,}",
                f"**{r['rate'].median:,.0f}** ({min(r['rate'].values):,.0f}–{max(r['rate'].values):,.0f})",
                f"{r['placed'].median:.2f} ({r['placed'].spread()})",
                f"**{running:.2f}** ({r['running'].spread()})",
                f"{running / base:.1f}x",
            ]
        )
    table = harness.markdown_table(
        [
            "nodes",
            "replicas",
            "placements/s (scheduler passes; min–max)",
            "s to all placed (min–max)",
            "s to all running (min–max)",
            "time vs first row",
        ],
        rows,
    )
    raw = "\n".join(
        f"- {n}x{rep} {kind}: {', '.join(f'{v:.2f}' for v in s.values)}"
        for (n, rep), r in results.items()
        for kind, s in r.items()
    )
    return (
        f"_Command:_ `.venv/bin/python -m bench.scale --runs {args.runs} --processes {args.processes} --write`\n\n"
        f"_Machine:_ {harness.machine()}; load averages before the runs: {', '.join(loads)}\n\n"
        f"Medians of {args.runs} runs, {SERVICES} services, {args.processes} hollow processes; targets: "
        f"≥ {TARGET_RATE:,.0f} placements/s and all 10,000 running within {TARGET_RUNNING:.0f} s.\n\n{table}\n\n"
        f"<details><summary>All runs (in run order)</summary>\n\n{raw}\n\n</details>\n"
    )


if __name__ == "__main__":
    main()
