"""Three hosts, each its own Docker engine: convergence and host loss, gorchester against the floor and
Docker Swarm spanning the same engines, in one run.

The bed (cli/hostbed.py): 3 network namespaces on this machine, each with its own `dockerd`, the image
loaded into each. gorchester: redis-server (password; on loopback and the bed's gateway; append-only,
fsync every second, as a cluster's), the API and the scheduler in the root namespace, one agent per
host inside its namespace against that host's engine only (node-I on hostI), default settings.
Swarm: `docker swarm init` on host1's engine (advertising host1's address), hosts 2 and 3 join as
workers; services with `--endpoint-mode dnsrr` (this kernel has no IPVS, which Swarm's default VIP
mode needs) and `--no-resolve-image`.

- Convergence (N = 30, 100): gorchester from `POST /v1/services` until the API reports N running;
  the floor, N x `docker run -d` from 3 parallel clients, one per engine; Swarm from `docker service
  create` until N tasks run. The three interleaved per run, the order rotated. Targets: within 1.0x
  the floor and under 0.5x Swarm at N = 100.
- Host loss: a service of `--loss-replicas` over the 3 hosts; host 3 dies whole (gorchester: its
  agent SIGKILLed, then its engine and containers killed at once, `HostBed.kill_host`; Swarm: its
  worker's engine and containers killed the same way); time until the N replicas run on the other
  hosts. Default settings on both sides (gorchester: heartbeat 1 s x 3 misses; Swarm: its own).
  Target: within 6 s. Between runs the host comes back (engine, agent, Swarm's node ready again).
- Heartbeats: every node's `last_heartbeat` followed in Redis throughout, so the jitter under load
  says what a shorter heartbeat window would risk (false downs); and Redis killed and started again
  after 0-3 s, as the chaos soak does, counting the `node_down` events that follow (all false).
- Then all of gorchester's part again, outside the targets, with the tests' heartbeat (0.5 s, down
  after 3 missed): what a host loss within 3 s would take, and what it would risk.

    .venv/bin/python -m bench.multihost --runs 5 --write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import redis as redis_lib

from bench import harness
from bench.chaos.cluster import PersistentRedis
from bench.convergence import time_floor, time_gorchester, time_swarm
from bench.harness import Samples, log, poll_until
from cli.hostbed import HostBed, bed
from shared import defaults, labels
from shared.keys import Keys
from tests.support.procs import VENV_BIN, free_port, wait_for

HOSTS = 3
SIZES = (30, 100)
LOSS_REPLICAS = 30
VICTIM = 3  # the host that dies: a Swarm worker (losing Swarm's only manager would lose its cluster)
SWARM_OPTIONS = ("--endpoint-mode", "dnsrr")
TARGET_FLOOR = 1.0
TARGET_SWARM = 0.5  # at N = 100
TARGET_LOSS = 6.0
TIMEOUT = 240.0
SETTLE = 1.0  # seconds of quiet before each timed run
CONVERGENCE = ("gorchester", "floor", "swarm")
LOSS = ["gorchester", "swarm"]  # interleaved, the order rotated per run
SHORT = "gorchester, heartbeat 0.5 s × 3"
LOSS_KINDS = (*LOSS, SHORT)
DEFAULT = (f"default: heartbeat {defaults.DEFAULT_HEARTBEAT_INTERVAL:g} s × "
           f"{defaults.DEFAULT_HEARTBEAT_MISSES:g}")
SHORT_HEARTBEAT = {"GORCHESTER_HEARTBEAT_INTERVAL": "0.5", "GORCHESTER_HEARTBEAT_MISSES": "3"}  # the tests' own
RESTARTS = 10
REDIS_OUTAGE = (0.0, 3.0)  # seconds before a killed redis-server starts again: the chaos soak's
SIZE_LIST = ",".join(map(str, SIZES))
RESTART_PHASE = "Redis restarts (SIGKILL, back after 0–3 s)"


# -- gorchester over the bed ------------------------------------------------------------------------


class BedCluster(harness.Cluster):
    """The API and scheduler in the root namespace, node-I's agent inside hostI against its engine only.

    Its redis-server persists as a cluster's does (append-only, fsync every second) and can be killed
    and started again in place, as the chaos soak does; `settings` are GORCHESTER_* for every process.
    """

    redis: PersistentRedis  # type: ignore[assignment]  # same url and close(), and restartable

    def __init__(self, workdir: Path, hosts: HostBed, settings: dict[str, str] | None = None):
        redis = PersistentRedis(workdir, bind=("127.0.0.1", hosts.gateway))
        super().__init__(workdir, redis=redis, prefix="mh")  # type: ignore[arg-type]
        self.procs.env.update(settings or {})
        self.bed = hosts
        self.engines = tuple(host.docker_host for host in hosts.all_hosts())
        self.keys = Keys(self.name)

    @staticmethod
    def node(index: int) -> str:
        return f"node-{index}"

    def start(self) -> BedCluster:
        self.redis.start()
        self.url = self.procs.api(free_port())
        self.procs.scheduler()
        for host in self.bed.all_hosts():
            self.agent(host.index)
        self.wait_ready(*(host.index for host in self.bed.all_hosts()))
        log(f"cluster {self.name} up over bed {self.bed.name} (API {self.url}, logs in {self.workdir})")
        return self

    def agent(self, index: int) -> None:
        argv = [str(VENV_BIN / "rq"), "worker", "-w", "worker.agent.NodeAgent", self.node(index)]
        self.procs.start(self.node(index), self.bed.command_in(index, argv), self.bed.agent_env(index, self.redis.url))

    def wait_ready(self, *indexes: int) -> None:
        wanted = {self.node(index) for index in indexes or range(1, self.bed.hosts + 1)}
        wait_for(lambda: wanted <= set(self.ready_nodes()), timeout=60, what=f"{sorted(wanted)} ready")

    def downs(self, after: float) -> list[tuple[str, float]]:
        """(node, when) of every `node_down` event after `after` (unix seconds), oldest first."""
        events = self.http.get(f"{self.url}/v1/events", params={"since": after, "limit": 10_000}).json()
        found = [(event["data"].get("node"), dt.datetime.fromisoformat(event["time"]).timestamp())
                 for event in events if event["type"] == "node_down"]
        return sorted(((node, at) for node, at in found if at > after), key=lambda pair: pair[1])

    def node_down_at(self, node: str, after: float) -> float | None:
        """When the scheduler declared `node` down (its event), the first time after `after`."""
        return next((at for down, at in self.downs(after) if down == node), None)

    def close(self) -> None:
        self.http.close()
        self.procs.close()
        self.redis.close()
        selector = f"{labels.CLUSTER}={self.name}"
        for engine in self.engines:  # a killed host's engine may be down: the bed's destroy takes the rest
            with contextlib.suppress(docker.errors.DockerException):
                harness.remove_labelled(selector, engine)


@contextmanager
def bed_cluster(hosts: HostBed, keep_logs: bool, settings: dict[str, str] | None = None) -> Iterator[BedCluster]:
    with harness.workdir(keep_logs) as path:
        running = BedCluster(path, hosts, settings)
        try:
            yield running.start()
        finally:
            running.close()


# -- Swarm over the bed -----------------------------------------------------------------------------


def docker_on(engine: str, *args: str) -> str:
    return subprocess.run(["docker", "-H", engine, *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def bed_swarm(hosts: HostBed, managers: int = 1) -> Iterator[harness.Swarm]:
    """A swarm of the bed's engines: initialised on host1, hosts 2 to `managers` join as managers too
    (bench/failover.py: 3, so the swarm survives its leader's loss), the others as workers. Its state
    lives in the bed's engines and goes with them; the machine's own engine is never touched."""
    manager = hosts.host(1)
    docker_on(manager.docker_host, "swarm", "init", "--advertise-addr", manager.address)
    tokens = {role: docker_on(manager.docker_host, "swarm", "join-token", "--quiet", role)
              for role in ("manager", "worker")}
    for host in hosts.all_hosts()[1:]:
        token = tokens["manager" if host.index <= managers else "worker"]
        docker_on(host.docker_host, "swarm", "join", "--token", token, f"{manager.address}:2377")
    swarm = harness.Swarm(manager.docker_host, [host.docker_host for host in hosts.all_hosts()])
    wait_for(lambda: len(swarm_ready(swarm)) == hosts.hosts, timeout=60, what="every swarm node ready")
    log(f"swarm over bed {hosts.name}: initialised on {manager.name} ({manager.address}), "
        f"{min(managers, hosts.hosts)} managers, {hosts.hosts - min(managers, hosts.hosts)} workers")
    yield swarm


def swarm_nodes(swarm: harness.Swarm) -> dict[str, str]:
    """Hostname (host1 ...) -> the swarm's node id."""
    return {node.attrs["Description"]["Hostname"]: node.id for node in swarm.client.nodes.list()}


def swarm_ready(swarm: harness.Swarm) -> set[str]:
    return {node.attrs["Description"]["Hostname"] for node in swarm.client.nodes.list()
            if node.attrs["Status"]["State"] == "ready"}


# -- heartbeats ---------------------------------------------------------------------------------------


class HeartbeatWatch:
    """Follows every node's `last_heartbeat` in Redis (a read every POLL s) and keeps, for each beat,
    the gap since the previous one (its stamp is taken when the beat starts) and the age the previous
    one had reached when it landed: the longest the scheduler saw that node's heartbeat get old. A node
    is paused while its host is dead (its gap there is the fault's, not jitter)."""

    def __init__(self, url: str, keys: Keys, nodes: list[str]):
        self.redis = redis_lib.Redis.from_url(url, socket_timeout=2)
        self.keys = keys
        self.nodes = nodes
        self.phase = "start"
        self.paused: set[str] = set()
        self.previous: dict[str, float] = {}
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)  # phase -> (gap, age)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat-watch", daemon=True)

    def __enter__(self) -> HeartbeatWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def pause(self, node: str) -> None:
        self.paused.add(node)
        self.previous.pop(node, None)

    def resume(self, node: str) -> None:
        self.previous.pop(node, None)
        self.paused.discard(node)

    def fresh(self, after: float) -> bool:
        """Whether every node not paused has beaten (its stamp) since `after`."""
        return all(self.previous.get(node, 0.0) > after for node in self.nodes if node not in self.paused)

    def _run(self) -> None:
        while not self.stop.wait(harness.POLL):
            with contextlib.suppress(redis_lib.RedisError):
                with self.redis.pipeline(transaction=False) as pipe:
                    for node in self.nodes:
                        pipe.hget(self.keys.node(node), "last_heartbeat")
                    stamps = pipe.execute()
                now = time.time()
                for node, raw in zip(self.nodes, stamps, strict=True):
                    if raw is None or node in self.paused:
                        continue
                    stamp = float(json.loads(raw))
                    before = self.previous.get(node)
                    if before is not None and stamp > before:
                        self.samples[self.phase].append((stamp - before, now - before))
                    # An older stamp than before: a restarted Redis lost the last beats, so that is what
                    # the scheduler sees now, and what the next beat's age counts from.
                    self.previous[node] = stamp


# -- convergence ----------------------------------------------------------------------------------------


def convergence_run(
    run: int, sizes: list[int], cluster: BedCluster, swarm: harness.Swarm, watch: HeartbeatWatch,
    other: harness.OtherWork, outcome: Outcome,
) -> None:
    engines = cluster.engines  # the floor: one client per engine
    for n in sizes:
        measure: dict[str, Callable[[], float]] = {
            "gorchester": lambda n=n: time_gorchester(cluster, f"c{n}r{run}", n),
            "floor": lambda n=n: time_floor(n, engines),
            "swarm": lambda n=n: time_swarm(swarm, f"{swarm.prefix}c{n}r{run}", n, *SWARM_OPTIONS),
        }
        order = list(CONVERGENCE)
        order = order[run % len(order):] + order[: run % len(order)]
        got = {}
        for kind in order:
            watch.phase = "between runs"
            time.sleep(SETTLE)
            watch.phase = f"{kind} converging"
            since = other.mark()
            got[kind] = measure[kind]()
            outcome.results[n][kind].add(got[kind])
            outcome.note_other(f"{kind} N={n}", other.share(since))
        watch.phase = "between runs"
        for base in ("floor", "swarm"):
            outcome.ratios[n][base].add(got["gorchester"] / got[base])


# -- host loss --------------------------------------------------------------------------------------------


def gorchester_host_loss(cluster: BedCluster, watch: HeartbeatWatch, replicas: int, run: int) -> tuple[float, float]:
    """Seconds from the kill until `replicas` run off the dead host, and from the kill to `node_down`."""
    name, victim = f"hl{run}", cluster.node(VICTIM)
    cluster.wait_ready()  # after Swarm's loss of the host too
    cluster.create_service(name, replicas)
    tasks = poll_until(lambda: cluster.running(name, replicas), TIMEOUT, f"{replicas} running replicas of {name}")
    lost = sum(task["node"] == victim for task in tasks)
    time.sleep(SETTLE)
    watch.phase = "host loss (surviving nodes)"
    watch.pause(victim)
    wall, start = time.time(), time.perf_counter()
    cluster.procs.kill(victim)  # SIGKILL to the agent's process group, then the engine and its containers
    cluster.bed.kill_host(VICTIM)

    def moved() -> bool:
        now = cluster.running(name, replicas)
        return bool(now) and all(task["node"] != victim for task in now)

    poll_until(moved, TIMEOUT, f"{name}'s replicas off {victim}")
    elapsed = time.perf_counter() - start
    down = cluster.node_down_at(victim, wall)
    detected = float("nan") if down is None else down - wall
    log(f"gorchester host loss ({victim} had {lost} of {replicas}): {elapsed:.2f}s, node_down after {detected:.2f}s")
    watch.phase = "between runs"
    cluster.bed.start_engine(VICTIM)
    cluster.agent(VICTIM)
    cluster.wait_ready(VICTIM)
    watch.resume(victim)
    cluster.delete_service(name)
    return elapsed, detected


def swarm_host_loss(
    swarm: harness.Swarm, hosts: HostBed, watch: HeartbeatWatch, replicas: int, run: int
) -> tuple[float, float]:
    """Seconds from the kill until `replicas` tasks run on the other nodes, and until Swarm marks it down.
    (gorchester's agent on the host finds its engine gone meanwhile; it has no replicas then.)"""
    name = f"{swarm.prefix}hl{run}"
    victim = hosts.host(VICTIM).name
    dead = swarm_nodes(swarm)[victim]
    swarm.create_service(name, replicas, *SWARM_OPTIONS)
    try:
        def whole() -> list[dict] | None:
            tasks = swarm.running_tasks(name)
            return tasks if len(tasks) >= replicas else None

        tasks = poll_until(whole, TIMEOUT, f"{replicas} swarm tasks of {name}")
        lost = sum(task["NodeID"] == dead for task in tasks)
        time.sleep(SETTLE)
        watch.pause(BedCluster.node(VICTIM))
        start = time.perf_counter()
        hosts.kill_host(VICTIM)
        detected = float("nan")

        def moved() -> bool:
            nonlocal detected
            if detected != detected and swarm.client.nodes.get(dead).attrs["Status"]["State"] == "down":
                detected = time.perf_counter() - start
            return sum(task["NodeID"] != dead for task in swarm.running_tasks(name)) >= replicas

        poll_until(moved, TIMEOUT, f"{name}'s tasks off {victim}")
        elapsed = time.perf_counter() - start
        log(f"swarm      host loss ({victim} had {lost} of {replicas}): {elapsed:.2f}s, "
            f"node down after {detected:.2f}s")
    finally:
        if not engine_up(hosts, VICTIM):
            hosts.start_engine(VICTIM)
        wait_for(lambda: victim in swarm_ready(swarm), timeout=60, what=f"swarm node {victim} ready again")
        swarm.remove_service(name)
        watch.resume(BedCluster.node(VICTIM))
    return elapsed, detected


def engine_up(hosts: HostBed, index: int) -> bool:
    try:
        with contextlib.closing(harness.docker_client(hosts.host(index).docker_host)) as client:
            return bool(client.ping())
    except docker.errors.DockerException:
        return False


@contextmanager
def engine_logs(hosts: HostBed, keep: bool) -> Iterator[None]:
    """With --keep-logs, a copy of every engine's log before the bed (and they) go."""
    try:
        yield
    finally:
        if keep:
            folder = Path(tempfile.mkdtemp(prefix="gorchester-bench-engines-"))
            for host in hosts.all_hosts():
                with contextlib.suppress(OSError):
                    shutil.copy(host.run_dir / "dockerd.log", folder / f"{host.name}-dockerd.log")
            log(f"engine logs kept in {folder}")


# -- Redis restarts --------------------------------------------------------------------------------------


@dataclass
class Restarts:
    outages: Samples  # kill until it answers again
    rejoined: Samples  # from then until every node's next beat landed
    downs: list[tuple[str, float]]  # the `node_down` events that followed: all false


def redis_restarts(cluster: BedCluster, watch: HeartbeatWatch, rng: random.Random, count: int) -> Restarts:
    """SIGKILL the cluster's redis-server and start it again after 0-3 s at random, as the chaos soak's
    redis fault does, `count` times, while no node is lost: every `node_down` that follows is false."""
    outages, rejoined = Samples("Redis down"), Samples("beating again")
    since = time.time()
    watch.phase = RESTART_PHASE
    for _ in range(count):
        cluster.wait_ready()
        time.sleep(rng.uniform(1.0, 2.0))  # a random phase against the heartbeats
        start = time.perf_counter()
        cluster.redis.kill()
        time.sleep(rng.uniform(*REDIS_OUTAGE))
        cluster.redis.start()
        outages.add(time.perf_counter() - start)
        back = time.time()
        poll_until(lambda back=back: watch.fresh(back), 60, "every node beating again")
        rejoined.add(time.time() - back)
        time.sleep(1.5)  # the append-only file is written every second: the events so far are kept
    watch.phase = "between runs"
    downs = cluster.downs(since)
    log(f"{count} Redis restarts ({outages.spread()}s down, every node beating {rejoined.spread()}s later): "
        f"{len(downs)} node_down events {downs}")
    return Restarts(outages, rejoined, downs)


# -- the run ---------------------------------------------------------------------------------------------


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="replica counts (default %(default)s)")
    parser.add_argument("--large-runs", type=int, default=None,
                        help="runs at the largest size, when fewer than --runs (a busy machine)")
    parser.add_argument("--loss-replicas", type=int, default=LOSS_REPLICAS, help="replicas of the host-loss service")
    parser.add_argument("--loss-runs", type=int, default=None, help="host-loss runs (default: --runs)")
    parser.add_argument("--restarts", type=int, default=RESTARTS, help="Redis restarts per cluster")
    parser.add_argument("--seed", type=int, default=12, help="random phases and outages of the Redis restarts")


@dataclass
class Outcome:
    """Everything one run measured, for the report."""

    results: dict[int, dict[str, Samples]]
    ratios: dict[int, dict[str, Samples]]
    loss: dict[str, Samples] = field(default_factory=lambda: {kind: Samples(kind) for kind in LOSS_KINDS})
    detection: dict[str, Samples] = field(default_factory=lambda: {kind: Samples(kind) for kind in LOSS_KINDS})
    beats: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    restarts: dict[str, Restarts] = field(default_factory=dict)
    loaded: float = 0.0  # the short-heartbeat cluster's own convergence of the largest N (its load)
    loads: list[str] = field(default_factory=list)
    other: dict[str, Samples] = field(default_factory=dict)  # other work's share of the cores, per measurement

    def note_other(self, what: str, share: float | None) -> None:
        if share is not None:
            self.other.setdefault(what, Samples(what)).add(share)

    def other_cell(self, what: str) -> str:
        found = self.other.get(what)
        return f"{100 * found.median:.0f}%" if found else "—"


def host_loss(
    kind: str, measure: Callable[[], tuple[float, float]], outcome: Outcome, other: harness.OtherWork
) -> None:
    since = other.mark()
    elapsed, detected = measure()
    outcome.note_other(f"host loss {kind}", other.share(since))
    outcome.loss[kind].add(elapsed)
    if detected == detected:  # not NaN: the down was seen
        outcome.detection[kind].add(detected)


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], extra=options)
    sizes = [int(n) for n in args.sizes.split(",")]
    large_runs = min(args.large_runs or args.runs, args.runs)
    loss_runs = args.loss_runs or args.runs
    outcome = Outcome(
        results={n: {kind: Samples(kind) for kind in CONVERGENCE} for n in sizes},
        ratios={n: {"floor": Samples("floor"), "swarm": Samples("swarm")} for n in sizes},
    )
    rng = random.Random(args.seed)
    name = f"mb{uuid.uuid4().hex[:4]}"
    # OtherWork first: the bed's engines, started from here on, count as the benchmark's own.
    with harness.OtherWork() as other, bed(name, HOSTS, images=[harness.IMAGE]) as hosts, \
            engine_logs(hosts, args.keep_logs), bed_swarm(hosts) as swarm:
        other.count(*(host.cgroup_parent for host in hosts.all_hosts()))  # the containers' own groups
        nodes = [BedCluster.node(host.index) for host in hosts.all_hosts()]
        # Default settings: the targets.
        with bed_cluster(hosts, args.keep_logs) as cluster, \
                HeartbeatWatch(cluster.redis.url, cluster.keys, nodes) as watch:
            for run in range(args.runs):
                outcome.loads.append(harness.load())
                chosen = [n for n in sizes if run < large_runs or n != max(sizes)]
                convergence_run(run, chosen, cluster, swarm, watch, other, outcome)
                log(f"convergence run {run + 1}/{args.runs} done (load {outcome.loads[-1]})")
            for run in range(loss_runs):
                outcome.loads.append(harness.load())
                measure = {
                    "gorchester": lambda run=run: gorchester_host_loss(cluster, watch, args.loss_replicas, run),
                    "swarm": lambda run=run: swarm_host_loss(swarm, hosts, watch, args.loss_replicas, run),
                }
                for kind in LOSS[run % 2:] + LOSS[: run % 2]:
                    host_loss(kind, measure[kind], outcome, other)
                log(f"host loss run {run + 1}/{loss_runs} done (load {outcome.loads[-1]})")
            outcome.restarts[DEFAULT] = redis_restarts(cluster, watch, rng, args.restarts)
        outcome.beats[DEFAULT] = watch.samples
        # The tests' short heartbeat, outside the targets: what a 3 s host loss would take, and risk.
        outcome.loads.append(harness.load())
        with bed_cluster(hosts, args.keep_logs, SHORT_HEARTBEAT) as fast, \
                HeartbeatWatch(fast.redis.url, fast.keys, nodes) as watch:
            watch.phase = "gorchester converging"
            outcome.loaded = time_gorchester(fast, f"load{max(sizes)}", max(sizes))
            watch.phase = "between runs"
            for run in range(loss_runs):
                measured = functools.partial(gorchester_host_loss, fast, watch, args.loss_replicas, run)
                host_loss(SHORT, measured, outcome, other)
            outcome.restarts[SHORT] = redis_restarts(fast, watch, rng, args.restarts)
        outcome.beats[SHORT] = watch.samples
        outcome.loads.append(harness.load())
    defaults = {"--large-runs": (large_runs, args.runs), "--loss-runs": (loss_runs, args.runs),
                "--loss-replicas": (args.loss_replicas, LOSS_REPLICAS), "--sizes": (args.sizes, SIZE_LIST),
                "--restarts": (args.restarts, RESTARTS), "--seed": (args.seed, 12)}
    command = " ".join([".venv/bin/python -m bench.multihost", f"--runs {args.runs}",
                        *(f"{flag} {value}" for flag, (value, default) in defaults.items() if value != default),
                        "--write"])
    report = render(command, outcome, args.loss_replicas)
    print(report)
    if args.write:
        harness.write_section("multihost", report)


# -- the report -------------------------------------------------------------------------------------------


def cell(samples: Samples) -> str:
    return f"**{samples.median:.2f}** ({samples.spread()})" if samples.values else "—"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def heartbeat_table(beats: dict[str, list[tuple[float, float]]]) -> str:
    rows = []
    for phase, pairs in beats.items():
        if not pairs:
            continue
        gaps, ages = [gap for gap, _ in pairs], [age for _, age in pairs]
        rows.append([phase, len(pairs), f"{statistics.median(gaps):.2f}", f"{percentile(gaps, 0.99):.2f}",
                     f"{max(gaps):.2f}", f"{percentile(ages, 0.99):.2f}", f"**{max(ages):.2f}**"])
    return harness.markdown_table(
        ["while", "beats", "gap median s", "gap p99 s", "gap max s", "age at next beat p99 s",
         "age at next beat max s"], rows)


def render(command: str, outcome: Outcome, loss_replicas: int) -> str:
    results, ratios = outcome.results, outcome.ratios
    largest = max(results)
    rows = []
    for n, got in results.items():
        floor_ratio, swarm_ratio = ratios[n]["floor"].median, ratios[n]["swarm"].median
        rows.append([
            n, len(got["gorchester"].values), cell(got["gorchester"]), cell(got["floor"]), cell(got["swarm"]),
            f"**{floor_ratio:.2f}x** ({ratios[n]['floor'].spread()})",
            f"**{swarm_ratio:.2f}x** ({ratios[n]['swarm'].spread()})",
            "met" if floor_ratio <= TARGET_FLOOR else "**missed**",
            ("met" if swarm_ratio < TARGET_SWARM else "**missed**") if n == largest else "—",
            " / ".join(outcome.other_cell(f"{kind} N={n}") for kind in CONVERGENCE),
        ])
    table = harness.markdown_table([
        "N", "runs", "gorchester s (min–max)", "floor: N× `docker run -d`, 3 clients (one per engine) s",
        "Docker Swarm (3 engines) s", "gorchester / floor", "gorchester / swarm",
        f"target ≤ {TARGET_FLOOR}x floor", f"target < {TARGET_SWARM}x Swarm at N = {largest}",
        "other work's CPU: gorchester / floor / Swarm runs",
    ], rows)
    loss_rows = []
    for kind in LOSS_KINDS:
        replaced = Samples("replace")
        for total, seen in zip(outcome.loss[kind].values, outcome.detection[kind].values, strict=False):
            replaced.add(total - seen)
        loss_rows.append([kind, len(outcome.loss[kind].values), cell(outcome.loss[kind]),
                          cell(outcome.detection[kind]), cell(replaced), outcome.other_cell(f"host loss {kind}")])
    loss_table = harness.markdown_table(
        ["system", "runs", "host killed → all replicas run elsewhere s", "of which: → node marked down s",
         "then: down → all running elsewhere s", "other work's CPU"], loss_rows)
    verdict = "met" if outcome.loss["gorchester"].median <= TARGET_LOSS else "**missed**"
    restart_rows = []
    for settings, restarts in outcome.restarts.items():
        ages = [age for _, age in outcome.beats[settings].get(RESTART_PHASE, [])]
        nodes = sorted({node for node, _ in restarts.downs})
        restart_rows.append([settings, len(restarts.outages.values), restarts.outages.spread(),
                             f"{max(restarts.rejoined.values):.2f}", f"{max(ages):.2f}" if ages else "—",
                             f"**{len(restarts.downs)}**" + (f" ({', '.join(nodes)})" if nodes else "")])
    restart_table = harness.markdown_table(
        ["settings", "restarts", "Redis down s (min–max)", "Redis back → every node beat again, max s",
         "heartbeat age at next beat max s", "false `node_down` events"], restart_rows)
    raw = "\n".join(
        [f"- N={n} {kind}: {results[n][kind].all()}" for n in results for kind in CONVERGENCE]
        + [f"- host loss {kind}: {outcome.loss[kind].all()} (node down after: {outcome.detection[kind].all()})"
           for kind in LOSS_KINDS]
        + [f"- Redis restarts, {settings}: down {r.outages.all()}; every node beating again after "
           f"{r.rejoined.all()}; node_down events: {r.downs or 'none'}" for settings, r in outcome.restarts.items()]
    )
    return (
        f"_Command:_ `{command}`\n\n"
        f"_Machine:_ {harness.machine()}; 3 hosts of a bed, each its own `dockerd` and `containerd` on the same "
        f"2 cores\n\n"
        f"_Load averages_ (1, 5, 15 min) before each run, and at the end: {'; '.join(outcome.loads)}. "
        f"The benchmark's own container starts make most of them (Swarm starts all N at once); what other "
        f"work on the machine took is measured apart: _other work's CPU_ below is the machine's busy time "
        f"less the benchmark's own processes and containers (cgroup accounting), as a median share of the "
        f"2 cores over each measurement (cleanup included).\n\n"
        f"**Convergence**, medians (min–max in brackets); ratios are medians of the per-run ratios:\n\n{table}\n\n"
        f"**Host loss** (host {VICTIM} of 3 dies whole while a service of {loss_replicas} replicas runs, a third "
        f"of them on it), medians:\n\n{loss_table}\n\n"
        f"Target (gorchester within {TARGET_LOSS:.0f} s, default settings): {verdict}. The last row is the "
        f"same with the heartbeat of the tests (0.5 s, down after 3 missed), outside the target; that cluster "
        f"first converged {largest} replicas ({outcome.loaded:.2f} s) so its heartbeats were seen under load too.\n\n"
        f"**Heartbeats**, every node's `last_heartbeat` read every {harness.POLL * 1000:.0f} ms; gap: between the "
        f"stamps of consecutive beats (a stamp is taken as the beat starts); age at next beat: how old the "
        f"previous stamp was when the next one landed (±{harness.POLL * 1000:.0f} ms), the oldest the scheduler "
        f"saw it. A node is down once that age passes the window (since Redis last came back): "
        f"{defaults.DEFAULT_HEARTBEAT_INTERVAL * defaults.DEFAULT_HEARTBEAT_MISSES:g} s by default, "
        "1.5 s at 0.5 s × 3.\n\n"
        f"_{DEFAULT}_\n\n{heartbeat_table(outcome.beats[DEFAULT])}\n\n"
        f"_{SHORT}_\n\n{heartbeat_table(outcome.beats[SHORT])}\n\n"
        f"**Redis restarts** as in the chaos soak (SIGKILL, started again after 0–3 s; append-only, fsync every "
        f"second), no node lost: every `node_down` is false.\n\n{restart_table}\n\n"
        f"<details><summary>All runs (seconds, in run order)</summary>\n\n{raw}\n\n</details>\n"
    )


if __name__ == "__main__":
    main()
