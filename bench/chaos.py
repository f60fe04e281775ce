"""Chaos soak: random faults for minutes, then check that the cluster settles whole and consistent.

A cluster of real processes with the default settings (nothing shortened): a redis-server WITH
persistence (appendonly yes, appendfsync everysec, in the temp dir), the API, TWO schedulers (one
leads), three node agents (node-1 127.0.0.2, node-2 127.0.0.3, node-3 127.0.0.4), and three
services: `web` 6 × httpd (always, a published port), `worker` 4 × `sleep 3600` (always), `batch`
2 × `sleep 3600` (on-failure).

For `--duration` seconds, every 3-8 s (seeded RNG), one fault at random:
- agent: SIGKILL a node agent's process group, start it again after 0-10 s;
- leader: SIGKILL the scheduler holding the `gorchester:<cluster>:leader` lease, start it again;
- container: `docker rm -f` a random running replica container of the cluster;
- redis: SIGKILL redis-server, start it again on the same port and dir after 0-3 s.

Then every process is up again and the soak waits (up to `--settle` s) until every service reports
running == desired, and checks the invariants until they all hold or the settle time is out:
replicas running per service, one running container per slot matching its task (id, gen, node), no
container of the cluster that no task owns, the services, nodes and task records created all there,
every process alive, one live leader.

    .venv/bin/python -m bench.chaos --duration 600 --write [--seed N] [--keep-logs]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import redis as redis_lib

from bench import harness
from bench.harness import log
from cli.cluster import remove_cluster_objects
from cli.redis_local import password, server_argv, server_config
from shared import labels
from shared.settings import with_password
from tests.support.procs import free_port, wait_for

NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3", "node-3": "127.0.0.4"}
SCHEDULERS = ("scheduler-a", "scheduler-b")
SLEEP = ["sleep", "3600"]
SERVICES = [
    {
        "service_name": "web",
        "image": harness.IMAGE,
        "replicas": 6,
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "ports": [{"host_port": 0, "container_port": 80, "protocol": "tcp"}],
        "restart_policy": "always",
    },
    {"service_name": "worker", "image": harness.IMAGE, "replicas": 4, "command": SLEEP, "restart_policy": "always"},
    {"service_name": "batch", "image": harness.IMAGE, "replicas": 2, "command": SLEEP, "restart_policy": "on-failure"},
]
DESIRED: dict[str, int] = {str(s["service_name"]): int(s["replicas"]) for s in SERVICES}  # type: ignore[call-overload]
KINDS = ("agent", "leader", "container", "redis")
GAP = (3.0, 8.0)  # seconds between faults
AGENT_DOWN = (0.0, 10.0)
REDIS_DOWN = (0.0, 3.0)


# ---------------------------------------------------------------------------------------------
# A cluster whose Redis persists and can be killed and restarted in place


class PersistentRedis:
    """redis-server on a fixed free port and dir, appendonly yes / everysec, restartable in place."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        secret, _ = password(self.dir)  # a password as a cluster's has; the URL carries it
        self.url = with_password(f"redis://127.0.0.1:{self.port}/0", secret)
        self.config = server_config(self.dir, secret)
        self.proc: subprocess.Popen | None = None
        self.log = open(workdir / "redis.log", "ab")  # noqa: SIM115 - closed in close()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            server_argv(self.port, self.dir, config=self.config),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: redis_lib.Redis.from_url(self.url).ping(), timeout=30, what="redis-server to start")

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.kill()
        self.log.close()


class ChaosCluster(harness.Cluster):
    """harness.Cluster with a persistent, restartable Redis, two schedulers and three agents."""

    redis: PersistentRedis  # type: ignore[assignment]  # same url and close(), and restartable

    def __init__(self, workdir: Path):
        super().__init__(workdir, redis=PersistentRedis(workdir), prefix="chaos")  # type: ignore[arg-type]
        self.offsets: dict[str, int] = {}  # where each process's current life starts in its log
        self.db = redis_lib.Redis.from_url(self.redis.url, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> ChaosCluster:
        self.redis.start()
        self.url = self.procs.api(free_port())
        for name in SCHEDULERS:
            self.start_scheduler(name)
        for node in NODES:
            self.start_agent(node)
        wait_for(lambda: self.ready_nodes() == sorted(NODES), timeout=60, what="three ready nodes")
        log(f"cluster {self.name} up (API {self.url}, redis port {self.redis.port}, logs in {self.workdir})")
        return self

    def _mark(self, name: str) -> None:
        path = self.workdir / f"{name}.log"
        self.offsets[name] = path.stat().st_size if path.exists() else 0

    def start_scheduler(self, name: str) -> None:
        self._mark(name)
        self.procs.scheduler(name)

    def start_agent(self, node: str) -> None:
        self._mark(node)
        self.procs.agent(node, NODES[node])

    def current_log(self, name: str) -> str:
        with open(self.workdir / f"{name}.log", "rb") as handle:
            handle.seek(self.offsets.get(name, 0))
            return handle.read().decode(errors="replace")

    def leader(self) -> tuple[str, str] | None:
        """(scheduler name, token) of the live scheduler holding the lease, if any."""
        raw = self.db.get(f"gorchester:{self.name}:leader")
        if raw is None:
            return None
        token = raw.decode() if isinstance(raw, bytes) else str(raw)
        for name in SCHEDULERS:
            if name in self.procs.procs and f"became leader ({token})" in self.current_log(name):
                return name, token
        return None

    def alive(self) -> dict[str, bool]:
        state = {name: proc.poll() is None for name, proc in self.procs.procs.items()}
        state["redis-server"] = self.redis.alive()
        return state

    def close(self) -> None:
        self.http.close()
        self.procs.close()
        self.redis.close()
        remove_cluster_objects(self.name, networks=True, volumes=True)


# ---------------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    at: float  # seconds since the soak started
    kind: str
    detail: str


@dataclass
class Chaos:
    cluster: ChaosCluster
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    pending: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)
    t0: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, kind: str, detail: str) -> None:
        fault = Fault(self.now(), kind, detail)
        self.faults.append(fault)
        log(f"FAULT t={fault.at:7.1f}s {kind:9s} {detail}")

    def later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        self.pending.append((time.monotonic() + delay, what, action))

    def run_due(self, everything: bool = False) -> None:
        due = [p for p in self.pending if everything or p[0] <= time.monotonic()]
        for item in sorted(due, key=lambda p: p[0]):
            self.pending.remove(item)
            if everything and item[0] > time.monotonic():
                time.sleep(item[0] - time.monotonic())
            item[2]()
            log(f"        t={self.now():7.1f}s restarted {item[1]}")

    def busy(self) -> set[str]:
        return {what for _, what, _ in self.pending}

    # the four kinds ------------------------------------------------------------------------

    def agent(self) -> bool:
        candidates = [n for n in NODES if n in self.cluster.procs.procs and n not in self.busy()]
        if not candidates:
            return False
        node = self.rng.choice(candidates)
        down = self.rng.uniform(*AGENT_DOWN)
        self.cluster.procs.kill(node)
        self.record("agent", f"SIGKILL {node}; restart in {down:.1f}s")
        self.later(down, node, lambda: self.cluster.start_agent(node))
        return True

    def leader(self) -> bool:
        if not self.cluster.redis.alive():
            return False
        try:
            found = wait_for(self.cluster.leader, timeout=10, interval=0.1, what="a live leader")
        except AssertionError:
            return False
        name, token = found
        self.cluster.procs.kill(name)
        self.cluster.start_scheduler(name)
        self.record("leader", f"SIGKILL {name} (leader {token[:8]}); restarted at once")
        return True

    def container(self) -> bool:
        client = harness.docker_client()
        running = client.containers.list(filters={"label": f"{labels.CLUSTER}={self.cluster.name}"})
        if not running:
            return False
        victim = self.rng.choice(sorted(running, key=lambda c: c.name))
        with contextlib.suppress(docker.errors.NotFound):
            victim.remove(force=True)
        self.record("container", f"docker rm -f {victim.name} ({victim.labels.get(labels.NODE)})")
        return True

    def redis(self) -> bool:
        if not self.cluster.redis.alive() or "redis-server" in self.busy():
            return False
        down = self.rng.uniform(*REDIS_DOWN)
        self.cluster.redis.kill()
        self.record("redis", f"SIGKILL redis-server; restart in {down:.1f}s")
        self.later(down, "redis-server", self.cluster.redis.start)
        return True

    def soak(self, duration: float) -> None:
        self.t0 = time.monotonic()
        next_at = self.rng.uniform(*GAP)
        while self.now() < duration:
            self.run_due()
            if self.now() >= next_at:
                kind = self.rng.choice(KINDS)
                if not getattr(self, kind)():
                    self.skipped[kind] += 1
                    log(f"        t={self.now():7.1f}s {kind} fault skipped (no target)")
                next_at = self.now() + self.rng.uniform(*GAP)
            time.sleep(0.05)
        self.run_due(everything=True)


# ---------------------------------------------------------------------------------------------
# Settle and invariants


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def all_running(cluster: ChaosCluster) -> bool:
    services = cluster.http.get(f"{cluster.url}/v1/services").json()
    status = {s["service_name"]: (s["status"]["running_replicas"], s["status"]["desired_replicas"]) for s in services}
    return all(status.get(name) == (n, n) for name, n in DESIRED.items())


def invariants(cluster: ChaosCluster) -> list[Check]:
    api = cluster.url
    services = cluster.http.get(f"{api}/v1/services").json()
    tasks = cluster.http.get(f"{api}/v1/tasks").json()
    nodes = cluster.http.get(f"{api}/v1/nodes").json()
    client = harness.docker_client()
    every = client.containers.list(all=True, filters={"label": f"{labels.CLUSTER}={cluster.name}"}, ignore_removed=True)
    by_task = {t["id"]: t for t in tasks}
    checks: list[Check] = []

    # 1. every service at its desired replica count (API status and task states)
    bad = []
    for s in services:
        name, st = s["service_name"], s["status"]
        running = sum(1 for t in tasks if t["service"] == name and t["state"] == "running")
        if not (st["running_replicas"] == st["desired_replicas"] == running == DESIRED.get(name)):
            bad.append(f"{name}: status {st['running_replicas']}/{st['desired_replicas']}, running tasks {running}")
    checks.append(
        Check("each service's running tasks == replicas", not bad, "; ".join(bad) or "web 6, worker 4, batch 2")
    )

    # 2. every slot: exactly one running container, the task's (id, gen, node)
    running_by_task: dict[str, list] = {}
    for c in every:
        if c.status == "running":
            running_by_task.setdefault(c.labels.get(labels.TASK, "?"), []).append(c)
    bad = []
    for t in tasks:
        mine = running_by_task.get(t["id"], [])
        if len(mine) != 1:
            bad.append(f"{t['id']}: {len(mine)} running containers {[c.name for c in mine]}")
            continue
        c = mine[0]
        if (c.id, int(c.labels.get(labels.GEN, -1)), c.labels.get(labels.NODE)) != (
            t["container_id"],
            t["gen"],
            t["node"],
        ):
            bad.append(
                f"{t['id']}: container {c.name} ({c.id[:12]}, gen {c.labels.get(labels.GEN)}, "
                f"{c.labels.get(labels.NODE)}) vs task ({(t['container_id'] or '')[:12]}, gen {t['gen']}, {t['node']})"
            )
    checks.append(
        Check("each slot has exactly one running container, the task's", not bad, "; ".join(bad) or "12 slots")
    )

    # 3. no container (any state) whose task record is missing or has another gen/node
    bad = []
    for c in every:
        t = by_task.get(c.labels.get(labels.TASK, ""))
        owner = t is not None and (t["gen"], t["node"]) == (
            int(c.labels.get(labels.GEN, -1)),
            c.labels.get(labels.NODE),
        )
        if not owner:
            want = "no task record" if t is None else f"task at gen {t['gen']} on {t['node']}"
            bad.append(f"{c.name} ({c.status}, {c.labels.get(labels.NODE)}): {want}")
    checks.append(
        Check("no container that no task owns", not bad, "; ".join(bad) or f"{len(every)} containers, all owned")
    )

    # 4. records: services, nodes, tasks
    names = sorted(s["service_name"] for s in services)
    checks.append(Check("services == those created", names == sorted(DESIRED), ", ".join(names)))
    node_state = {n["id"]: n["status"] for n in nodes}
    checks.append(
        Check(
            "nodes == those registered, all ready",
            sorted(node_state) == sorted(NODES) and set(node_state.values()) == {"ready"},
            ", ".join(f"{k} {v}" for k, v in sorted(node_state.items())),
        )
    )
    expected_ids = {f"{name}.{slot}" for name, n in DESIRED.items() for slot in range(1, n + 1)}
    ids = [t["id"] for t in tasks]
    checks.append(
        Check(
            "task records == sum of replicas (each slot once)",
            len(ids) == sum(DESIRED.values()) and set(ids) == expected_ids,
            f"{len(ids)} records"
            + (f"; missing {sorted(expected_ids - set(ids))}" if expected_ids - set(ids) else "")
            + (f"; extra {sorted(set(ids) - expected_ids)}" if set(ids) - expected_ids else ""),
        )
    )

    # 5. processes and leadership
    dead = [name for name, up in cluster.alive().items() if not up]
    checks.append(Check("every process alive", not dead, "dead: " + ", ".join(dead) if dead else "all 7 alive"))
    leader = cluster.leader()
    checks.append(Check("one live scheduler leads", leader is not None, leader[0] if leader else "no live leader"))
    return checks


@dataclass
class Outcome:
    running_after: float | None = None  # seconds after the last process restart
    clean_after: float | None = None
    checks: list[Check] = field(default_factory=list)
    first_failures: list[Check] = field(default_factory=list)  # at the moment running == desired


def settle(cluster: ChaosCluster, timeout: float) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if all_running(cluster):
                outcome.running_after = time.monotonic() - start
                break
        time.sleep(0.2)
    log(f"running == desired after {outcome.running_after}s")
    first = True
    while True:
        try:
            outcome.checks = invariants(cluster)
        except Exception as exc:  # noqa: BLE001 - an unanswering API is a failure to report
            outcome.checks = [Check("API and engine answer", False, repr(exc))]
        failed = [c for c in outcome.checks if not c.ok]
        if first:
            outcome.first_failures, first = failed, False
        if not failed:
            outcome.clean_after = time.monotonic() - start
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    log(f"invariants all hold after {outcome.clean_after}s" if outcome.clean_after is not None else "invariants FAIL")
    return outcome


# ---------------------------------------------------------------------------------------------
# Report


def render(args: argparse.Namespace, seed: int, chaos: Chaos, outcome: Outcome, machine: str, setup: str) -> str:
    counts = Counter(f.kind for f in chaos.faults)
    fault_rows = [[k, counts[k], chaos.skipped[k]] for k in KINDS] + [
        ["**total**", f"**{len(chaos.faults)}**", sum(chaos.skipped.values())]
    ]
    check_rows = [[c.name, "pass" if c.ok else "**FAIL**", c.detail] for c in outcome.checks]
    running = (
        f"{outcome.running_after:.1f} s" if outcome.running_after is not None else f"not within {args.settle:.0f} s"
    )
    clean = f"{outcome.clean_after:.1f} s" if outcome.clean_after is not None else f"**not within {args.settle:.0f} s**"
    early = (
        "All invariants already held at that moment."
        if not outcome.first_failures
        else "At that moment not yet: "
        + "; ".join(f"{c.name}: {c.detail}" for c in outcome.first_failures)
        + " (a stale container is removed by its agent's sweep, every 10 s)."
    )
    verdict = "**pass**" if outcome.clean_after is not None else "**FAIL**"
    faults = "\n".join(f"- {f.at:6.1f} s {f.kind}: {f.detail}" for f in chaos.faults)
    return (
        f"_Command:_ `.venv/bin/python -m bench.chaos --duration {args.duration:.0f} --seed {seed} --write`\n\n"
        f"_Machine:_ {machine}\n\n"
        f"_Setup:_ {setup}\n\n"
        f"**Soak:** {args.duration:.0f} s, seed {seed}, a fault every 3–8 s; outcome {verdict}.\n\n"
        f"{harness.markdown_table(['fault', 'injected', 'skipped (no target)'], fault_rows)}\n\n"
        f"**Settle** (timed from the moment every killed process was running again): every service at "
        f"running == desired after **{running}**; every invariant held after **{clean}**. {early}\n\n"
        f"{harness.markdown_table(['invariant', 'outcome', 'detail'], check_rows)}\n\n"
        f"<details><summary>Faults in order (seconds since the soak started)</summary>\n\n{faults}\n\n</details>\n"
    )


SETUP = (
    'redis-server `--appendonly yes --appendfsync everysec --save ""` in the temp dir, the API, two '
    "schedulers (`python -m scheduler`, one leads), three agents (node-1 127.0.0.2, node-2 127.0.0.3, node-3 "
    "127.0.0.4) on the one Docker engine; **default settings** (heartbeat 2 s, down after 3 missed beats, "
    "reconcile 10 s, assigned timeout 30 s, back-off 1 s doubling to 60 s, leader lease 3 s; nothing shortened). "
    "Services: `web` 6 × httpd with a published port (always), `worker` 4 × `sleep 3600` (always), `batch` "
    "2 × `sleep 3600` (on-failure), image `gorchester/busybox:latest`. Faults, one every 3–8 s at random: "
    "SIGKILL an agent's process group and start it again after 0–10 s; SIGKILL the scheduler holding the "
    "leader lease and start it again at once; `docker rm -f` a random running replica container of the "
    "cluster; SIGKILL redis-server and start it again on the same port and dir after 0–3 s"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds allowed to settle (default 120)")
    parser.add_argument("--write", action="store_true", help="update the chaos section of docs/benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the cluster's process logs (path printed)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    log(f"seed {seed}, duration {args.duration:.0f}s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs

    machine = harness.machine()
    with harness.workdir(args.keep_logs) as path:
        cluster = ChaosCluster(path)
        try:
            cluster.start()
            for spec in SERVICES:
                response = cluster.http.post(f"{cluster.url}/v1/services", json=spec)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")
            harness.poll_until(lambda: all_running(cluster), 120, "every service running")
            log("every service running; chaos starts")
            chaos = Chaos(cluster, random.Random(seed))
            chaos.soak(args.duration)
            log(f"chaos over: {len(chaos.faults)} faults {dict(Counter(f.kind for f in chaos.faults))}; settling")
            outcome = settle(cluster, args.settle)
            for check in outcome.checks:
                log(f"{'pass' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        finally:
            cluster.close()
    report = render(args, seed, chaos, outcome, machine, SETUP)
    print(report)
    if args.write:
        harness.write_section("chaos", report)
    return 0 if outcome.clean_after is not None else 1


if __name__ == "__main__":
    sys.exit(main())
