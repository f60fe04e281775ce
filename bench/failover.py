"""Redis failover: how long gorchester takes to accept writes and to schedule again after its Redis
master dies, beside Docker Swarm losing the leader of its 3 managers; the cost of the replica's
acknowledgement on every write; and whether an acknowledged write is ever lost.

gorchester (on the machine's own engine, as bench/recovery.py): a master, 2 replicas and 3 sentinels
(cli/redis_local.replicated_argvs, as `gorchester up --redis-replicas 2` runs them: down after 2000 ms,
quorum 2, append-only), the API, the scheduler and two agents (node-1, node-2) on its
`redis+sentinel://` URL, default settings. A service `fo` of N replicas runs; a thread scales a second
service, `ledger`, through the API without pause (POST /v1/services/ledger/scale, a new count each
time), keeping every answer. `ledger` asks for more CPU than any node has, so its replicas stay pending:
the stream of writes takes the API's and the scheduler's path but starts no container. Once every
sentinel sees both replicas in sync, the master (the server the sentinels name) is SIGKILLed:

- (a) kill -> the first 2xx answer to a write sent after the kill;
- (b) kill -> the first container started by a scheduling decision made after the kill: right after
  that first accepted write, `fo` is scaled to N + 1 (retried until 2xx) and the new replica's
  container `State.StartedAt` is taken (the earliest of the cluster's containers started after the kill);
- the writer stops on a 2xx; every acknowledged write must be there: `ledger` and `fo` hold their last
  acknowledged counts, and each acknowledged write that changed the record has its `service_scaled`
  event (appended on the same connection before the API's WAIT) on the new master.

Then the killed server starts again (same command line and data dir: the sentinels make it a replica)
and `fo` goes back to N. `--runs` failovers are timed beside Swarm; `--failovers` more check for lost
writes (and are timed too), every second one with the master's links to its replicas cut (iptables
DROP of what it sends on them) 2 s before the kill: a SIGKILL on one machine loses nothing the master
had written to its sockets (the kernel still delivers it), so only a cut makes writes that reached the
master alone, which a failover loses; none of them may have been acknowledged. Where the time goes is
read from the sentinels' and the scheduler's logs (and, for Swarm, the surviving engines' logs).

Docker Swarm: a bed of 3 hosts (cli/hostbed.py), each its own `dockerd`, all 3 managers
(bench/multihost.bed_swarm with managers=3); a service of N replicas (`--endpoint-mode dnsrr`). The
leader's `dockerd` is SIGKILLed (`HostBed.kill_engine`: its containers live on, as in a crash of the
engine); from the lowest surviving manager `docker service scale --detach NAME=N+1` is tried (a new try
every 0.25 s while the earlier ones are still waiting, each given 5 s) until one is accepted: (a);
(b) kill -> the first container started on a surviving host for the service (`State.StartedAt` after the
kill), and the container of the replica the scale added (Swarm may leave it pending). The engine starts
again and rejoins, the service goes back to N. The gorchester and Swarm runs are interleaved, the order
rotated.

Write latency: 2 x `--latency-writes` scale writes, one at a time, through the API on the sentinel URL
(a 2xx waits for `WAIT 1`, api/context.py) and through a second API on a plain `redis://` URL of the
same master (no WAIT), alternating in blocks of 20.

    .venv/bin/python -m bench.failover --runs 5 --failovers 20 --write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx

from bench import harness
from bench.harness import Samples, log, poll_until
from bench.multihost import SWARM_OPTIONS, bed_swarm, engine_up
from cli.hostbed import HostBed, bed
from cli.redis_local import free_port
from shared import labels
from tests.support.redis_set import RedisSet

HOSTS = 3
REPLICAS = 6
SERVICE = "fo"
LEDGER = "ledger"
LEDGER_VALUES = tuple(range(1, 9))  # the writer's counts, in turn: each differs from the one before
LEDGER_CPU = 1_000_000  # millicores: more than any node has, so `ledger` never starts a container
# `sleep` as PID 1 ignores SIGTERM (10 s per stop); this one leaves at once, so a scale down is quick.
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
WRITE_GAP = 0.02  # seconds between the writer's requests
WRITE_TIMEOUT = 5.0  # the client's; the API answers within its own 1.8 s deadline
LATENCY_WRITES = 200
LATENCY_BLOCK = 20
FAILOVERS = 20
TARGET_WRITE = 5.0
TIMEOUT = 120.0
SETTLE = 1.0
CUT_BEFORE = 2.0  # seconds the master's links to its replicas are cut before it is killed
SWARM_TRY_EVERY = 0.25
SWARM_TRY_TIMEOUT = 5.0
SYSTEMS = ["gorchester", "swarm"]
OK = range(200, 300)
VENV_BIN = Path(sys.executable).parent


def iso_seconds(text: str) -> float:
    """Unix seconds of an RFC 3339 time (Docker's nanoseconds cut to microseconds; Z or an offset)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return dt.datetime.fromisoformat(text).timestamp()


# -- Redis with replicas and sentinels ----------------------------------------------------------------


SENTINEL_LINE = re.compile(r"^\d+:X (\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2})\.(\d{3}) . (\+[\w-]+) (.*)$")
SENTINEL_STAGES = {  # what a sentinel logs -> the stage it marks
    "+sdown": "master seen down (a sentinel)",
    "+odown": "agreed down (quorum)",
    "+promoted-slave": "replica promoted",
    "+switch-master": "sentinels name the new master",
    "+slave-reconf-done": "other replica follows it",
}


SCHEDULER_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) \w+ scheduler (.*)$")  # process_logs' text
SCHEDULER_STAGES = {  # what the scheduler logs -> the stage it marks
    "became leader": "scheduler leads again (its log)",
    "reconciled:": "its first pass after that",
}


def scheduler_stages(log_path: Path, after: float) -> dict[str, float]:
    """Seconds from `after` to the scheduler's first `became leader` after it, and its next pass."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            match = SCHEDULER_LINE.match(line)
            if not match:
                continue
            when = iso_seconds(match.group(1))
            for text, stage in SCHEDULER_STAGES.items():
                if when > after and match.group(2).startswith(text) and stage not in found:
                    if stage == SCHEDULER_STAGES["reconciled:"] and SCHEDULER_STAGES["became leader"] not in found:
                        continue
                    found[stage] = when - after
    return found


def sentinel_stages(redis: RedisSet, after: float) -> dict[str, float]:
    """Seconds from `after` to the first line of each stage any sentinel logged after it."""
    found: dict[str, float] = {}
    for index in range(1, len(redis.sentinels) + 1):
        with contextlib.suppress(OSError):
            for line in redis.log_path(f"sentinel-{index}").read_text(errors="replace").splitlines():
                match = SENTINEL_LINE.match(line)
                if not match or match.group(3) not in SENTINEL_STAGES:
                    continue
                if match.group(3) == "+sdown" and not match.group(4).startswith("master"):
                    continue
                when = time.mktime(time.strptime(match.group(1), "%d %b %Y %H:%M:%S")) + int(match.group(2)) / 1000
                stage = SENTINEL_STAGES[match.group(3)]
                if when >= after and (stage not in found or when - after < found[stage]):
                    found[stage] = when - after
    return found


# -- the cluster on it ----------------------------------------------------------------------------------


class FailoverCluster(harness.Cluster):
    """API, scheduler and node-1/node-2 on the replicated Redis's sentinel URL, default settings."""

    redis: RedisSet  # type: ignore[assignment]

    def __init__(self, workdir: Path, redis: RedisSet):
        super().__init__(workdir, redis=redis, prefix="fo")  # type: ignore[arg-type]

    def start(self) -> FailoverCluster:
        self.url = self.procs.api(free_port())
        poll_until(lambda: self.http.get(f"{self.url}/v1/health").json()["redis"]["replicas_in_sync"] == 2, 60,
              "the API, and two replicas in sync")
        self.procs.scheduler()
        for node, address in harness.NODES.items():
            self.procs.agent(node, address)
        poll_until(lambda: self.ready_nodes() == sorted(harness.NODES), 60, "two ready nodes")
        log(f"cluster {self.name} up on {self.redis.url.split('@')[-1]} (API {self.url}, logs in {self.workdir})")
        return self

    def create(self, name: str, replicas: int, **extra: Any) -> None:
        body = {"service_name": name, "image": harness.IMAGE, "replicas": replicas, "command": COMMAND,
                "restart_policy": "always", **extra}
        response = self.http.post(f"{self.url}/v1/services", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")

    def scale(self, name: str, replicas: int, api: str | None = None) -> float:
        """Scale until a 2xx (503s while Redis fails over); returns when the 2xx came (unix seconds)."""
        def once() -> float | None:
            response = self.http.post(f"{api or self.url}/v1/services/{name}/scale", json={"replicas": replicas})
            return time.time() if response.status_code in OK else None

        return float(poll_until(once, TIMEOUT, f"{name} scaled to {replicas}"))

    def replicas(self, name: str) -> int:
        return int(self.http.get(f"{self.url}/v1/services/{name}").json()["replicas"])

    def containers(self) -> list:
        return harness.labelled(f"{labels.CLUSTER}={self.name}")

    def whole(self, replicas: int) -> bool:
        """`fo` runs `replicas`, one container each, and no other container of the cluster runs."""
        running = [c for c in self.containers() if c.status == "running"]
        return bool(self.running(SERVICE, replicas)) and len(running) == replicas


def started_after(containers: list, after: float) -> tuple[float, str] | None:
    """The earliest `State.StartedAt` after `after` (unix seconds) of running containers, and that
    container's name; None if none started after it."""
    times = [(iso_seconds(c.attrs["State"]["StartedAt"]), c.name) for c in containers if c.status == "running"]
    later = [pair for pair in times if pair[0] > after]
    return min(later) if later else None


# -- the writer -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # unix seconds
    answered: float
    value: int
    status: int | None  # None: no answer (a client timeout or a dropped connection)
    updated_at: float | None  # the record's, in a 2xx: at or after `sent` when this write changed it
    master_only: bool = False  # a 503 saying the change reached the master but no replica acknowledged it

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status in OK

    @property
    def changed(self) -> bool:
        return self.ok and self.updated_at is not None and self.updated_at >= self.sent - 0.002


class Writer:
    """Scales `service` through the API one request after another (each count differs from the one
    before) and keeps every answer; once told to stop, it stops after its next 2xx."""

    def __init__(self, api: str, service: str):
        self.api = api
        self.service = service
        self.answers: list[Answer] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"writer-{service}", daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=TIMEOUT)

    def _run(self) -> None:
        with httpx.Client(timeout=WRITE_TIMEOUT) as client:
            count = 0
            deadline: float | None = None
            while True:
                if self.stopping.is_set():
                    if self.answers and self.answers[-1].ok:
                        return
                    deadline = deadline or time.monotonic() + TIMEOUT
                    if time.monotonic() > deadline:
                        return
                value = LEDGER_VALUES[count % len(LEDGER_VALUES)]
                count += 1
                sent = time.time()
                status, updated, master_only = None, None, False
                try:
                    response = client.post(f"{self.api}/v1/services/{self.service}/scale", json={"replicas": value})
                    status = response.status_code
                    if status in OK:
                        updated = iso_seconds(response.json()["updated_at"])
                    master_only = status == 503 and "reached the master" in response.text
                except httpx.HTTPError:
                    pass
                self.answers.append(Answer(sent, time.time(), value, status, updated, master_only))
                time.sleep(WRITE_GAP)

    def acknowledged(self) -> list[Answer]:
        return [answer for answer in list(self.answers) if answer.ok]

    def first_ok_after(self, after: float) -> Answer | None:
        return next((a for a in list(self.answers) if a.sent > after and a.ok), None)


# -- one gorchester failover ----------------------------------------------------------------------------


@dataclass
class Failover:
    """One failover of gorchester's Redis: seconds from the kill, and what was lost."""

    first_write: float
    first_start: float
    scaled: float  # kill -> the scale-up of `fo` acknowledged
    refused: int  # writes sent after the kill answered non-2xx before the first 2xx
    unanswered: int
    gap: float  # the longest wait between two writes' starts from the kill to the first 2xx (resolution)
    acknowledged: int
    changed: int
    lost: list[str]
    stages: dict[str, float]
    killed: str
    promoted: str
    cut: bool  # the master's links to its replicas were cut before the kill
    master_only: int  # writes answered 503 'reached the master' (no replica acknowledged them)
    master_only_gone: int  # of which not on the new master after the failover (lost, as they may be)


def lost_writes(cluster: FailoverCluster, writer: Writer, since: float, scaled_to: int) -> tuple[list[str], int]:
    """Every acknowledged write that is not on the master now (none, if the replicas' acks hold), and how
    many writes that reached the master only (503) are not there either."""
    lost = []
    answers = writer.acknowledged()
    stored = cluster.replicas(LEDGER)
    if stored != answers[-1].value:
        lost.append(f"{LEDGER} holds {stored}, last acknowledged {answers[-1].value}")
    if cluster.replicas(SERVICE) != scaled_to:
        lost.append(f"{SERVICE} holds {cluster.replicas(SERVICE)}, acknowledged {scaled_to}")
    events = cluster.http.get(f"{cluster.url}/v1/events",
                              params={"since": since - 1, "service": LEDGER, "limit": 10_000}).json()
    scaled = [(iso_seconds(e["time"]), e["message"]) for e in events if e["type"] == "service_scaled"]
    def present(answer: Answer) -> bool:
        message = f"service {LEDGER} scaled to {answer.value} replicas"
        return any(answer.sent - 0.002 <= when <= answer.answered + 0.002 and text == message for when, text in scaled)

    for answer in answers:
        if answer.changed and not present(answer):
            lost.append(f"write of {answer.value} acknowledged at {answer.answered:.3f}: no event on the master")
    gone = sum(1 for answer in list(writer.answers) if answer.master_only and not present(answer))
    return lost, gone


CUT_COMMENT = "gorchester-bench-failover"


@contextmanager
def replication_cut(redis: RedisSet, master: str) -> Iterator[None]:
    """What the master sends its replicas is dropped (iptables, on loopback) on their present links, as a
    network cut would: a write then reaches the master only, and a SIGKILL cannot lose less (without the
    cut, the kernel still delivers what the killed master had written to the replicas' sockets). The
    rules go on leaving the block, whatever happened."""
    with redis.server(master) as master_client:
        links = [int(client["addr"].rsplit(":", 1)[1]) for client in master_client.client_list(_type="replica")]
    rules = [["OUTPUT", "-o", "lo", "-p", "tcp", "-s", "127.0.0.1", "--sport", str(redis.port(master)),
              "--dport", str(link), "-m", "comment", "--comment", CUT_COMMENT, "-j", "DROP"] for link in links]
    made = []
    try:
        for rule in rules:
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
            made.append(rule)
        yield
    finally:
        for rule in made:
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)


def follows(redis: RedisSet, master: str) -> bool:
    """Whether a replica is online on `master` (the other one, after a failover)."""
    with redis.server(master) as client:
        info = client.info("replication")
    return any((value.get("state") if isinstance(value, dict) else None) == "online"
               for key, value in info.items() if key.startswith("slave"))


def gorchester_failover(cluster: FailoverCluster, redis: RedisSet, replicas: int, cut: bool = False) -> Failover:
    poll_until(redis.settled, TIMEOUT, "every sentinel to see both replicas in sync", interval=0.2)
    poll_until(lambda: cluster.whole(replicas), TIMEOUT, f"{replicas} replicas of {SERVICE}, one container each")
    since = time.time()
    with Writer(cluster.url, LEDGER) as writer, contextlib.ExitStack() as cutting:
        poll_until(lambda: len(writer.acknowledged()) >= 10, 30, "writes acknowledged before the kill")
        time.sleep(SETTLE)
        victim = redis.master()
        if cut:
            cutting.enter_context(replication_cut(redis, victim))
            time.sleep(CUT_BEFORE)
        killed = time.time()
        redis.kill(victim)
        first = poll_until(lambda: writer.first_ok_after(killed), TIMEOUT, "a write accepted after the kill")
        scaled = cluster.scale(SERVICE, replicas + 1)  # a scheduling decision after the kill
        poll_until(lambda: cluster.whole(replicas + 1), TIMEOUT, f"{replicas + 1} replicas of {SERVICE}")
        started = started_after(cluster.containers(), killed)
        time.sleep(0.5)  # a few more writes on the new master
        # The cut holds until the other replica follows the new master: the killed master's orphaned
        # sockets would still deliver what they hold to a replica that kept its old link open.
        poll_until(lambda: follows(redis, redis.master()), TIMEOUT, "the other replica to follow the new master")
    promoted = redis.master()
    lost, gone = lost_writes(cluster, writer, since, replicas + 1)
    after = [a for a in writer.answers if a.sent > killed and a.sent <= first.sent]
    starts = [killed] + [a.sent for a in after]
    failover = Failover(
        first_write=first.answered - killed,
        first_start=float("nan") if started is None else started[0] - killed,
        scaled=scaled - killed,
        refused=sum(1 for a in after if a.status is not None and not a.ok),
        unanswered=sum(1 for a in after if a.status is None),
        gap=max(b - a for a, b in zip(starts, starts[1:], strict=False)) if len(starts) > 1 else 0.0,
        acknowledged=len(writer.acknowledged()),
        changed=sum(1 for a in writer.acknowledged() if a.changed),
        lost=lost,
        stages={**sentinel_stages(redis, killed), **scheduler_stages(cluster.workdir / "scheduler.log", killed)},
        killed=victim,
        promoted=promoted,
        cut=cut,
        master_only=sum(1 for a in writer.answers if a.master_only),
        master_only_gone=gone,
    )
    log(f"gorchester failover ({victim} killed{', its links cut' if cut else ''}, {promoted} promoted): "
        f"first write {failover.first_write:.2f}s, "
        f"first container {failover.first_start:.2f}s, {failover.refused} refused, {failover.unanswered} "
        f"unanswered, {failover.acknowledged} acknowledged ({failover.changed} changed), "
        f"lost {len(failover.lost)} {failover.lost}; {failover.master_only} on the master only, "
        f"{failover.master_only_gone} of them gone; stages {failover.stages}")
    # Back as before, untimed: the killed server rejoins (as a replica), `fo` returns to N.
    redis.start(victim)
    cluster.scale(SERVICE, replicas)
    return failover


# -- write latency --------------------------------------------------------------------------------------


def write_latency(cluster: FailoverCluster, redis: RedisSet, writes: int) -> dict[str, Samples]:
    """Scale writes one after another through the API on the sentinel URL (WAIT 1 before each 2xx) and
    through a second API on a plain URL of the same master (no WAIT), in alternating blocks."""
    poll_until(redis.settled, TIMEOUT, "every sentinel to see both replicas in sync", interval=0.2)
    plain = f"http://127.0.0.1:{free_port()}"
    argv = [str(VENV_BIN / "uvicorn"), "api.app:app", "--host", "127.0.0.1", "--port", plain.rsplit(":", 1)[1]]
    cluster.procs.start("api-plain", argv, {"GORCHESTER_REDIS_URL": redis.plain_url(redis.master())})
    kinds = {"sentinel URL: WAIT 1 before the 2xx": cluster.url, "plain redis:// URL: no WAIT": plain}
    results = {kind: Samples(kind) for kind in kinds}
    refused = dict.fromkeys(kinds, 0)
    try:
        poll_until(lambda: httpx.get(f"{plain}/v1/health", timeout=1).status_code == 200, 30, "the plain-URL API")
        with httpx.Client(timeout=WRITE_TIMEOUT) as client:
            for api in kinds.values():  # warm-up: connections made, views built
                for value in LEDGER_VALUES:
                    client.post(f"{api}/v1/services/{LEDGER}/scale", json={"replicas": value})
            count = 0
            for block in range(2 * writes // LATENCY_BLOCK):
                kind = list(kinds)[block % 2]
                for _ in range(LATENCY_BLOCK):
                    value = LEDGER_VALUES[count % len(LEDGER_VALUES)]
                    count += 1
                    start = time.perf_counter()
                    response = client.post(f"{kinds[kind]}/v1/services/{LEDGER}/scale", json={"replicas": value})
                    elapsed = time.perf_counter() - start
                    if response.status_code in OK:
                        results[kind].add(elapsed)
                    else:
                        refused[kind] += 1
    finally:
        cluster.procs.kill("api-plain")
    for kind, samples in results.items():
        log(f"write latency, {kind}: p50 {percentile(samples.values, 0.5) * 1000:.2f} ms, "
            f"p99 {percentile(samples.values, 0.99) * 1000:.2f} ms over {len(samples.values)} "
            f"({refused[kind]} refused)")
        if refused[kind]:
            samples.name += f" ({refused[kind]} refused)"
    return results


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- Swarm: 3 managers, the leader's engine killed -------------------------------------------------------


@dataclass
class SwarmFailover:
    accepted: float  # kill -> `docker service scale` accepted
    first_start: float  # kill -> the first container of the service started on a surviving host
    scaled_start: float  # kill -> the container of the replica the scale added started
    stages: dict[str, float]  # kill -> what the surviving engines logged
    tries: int
    errors: list[str]
    leader: str
    slot: str  # where Swarm put the new replica's task(s), in order: host (seconds from the kill to the task)


class SwarmBed:
    """A 3-manager swarm over the bed, its engines by host index (clients with a short timeout)."""

    def __init__(self, hosts: HostBed, prefix: str):
        self.hosts = hosts
        self.service = f"{prefix}fo"
        self.clients = {h.index: docker.DockerClient(base_url=h.docker_host, timeout=5) for h in hosts.all_hosts()}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def live(self) -> list[int]:
        return [index for index in self.clients if engine_up(self.hosts, index)]

    def nodes(self, via: int) -> list[dict]:
        return [node.attrs for node in self.clients[via].nodes.list()]

    def leader(self) -> int | None:
        for via in self.live():
            with contextlib.suppress(docker.errors.DockerException):
                for node in self.nodes(via):
                    if node.get("ManagerStatus", {}).get("Leader"):
                        return int(node["Description"]["Hostname"].removeprefix("host"))
        return None

    def healthy(self) -> bool:
        """Every node ready, every manager reachable, a leader."""
        via = self.live()[0]
        nodes = self.nodes(via)
        return (len(nodes) == HOSTS and all(n["Status"]["State"] == "ready" for n in nodes)
                and all(n.get("ManagerStatus", {}).get("Reachability") == "reachable" for n in nodes)
                and any(n.get("ManagerStatus", {}).get("Leader") for n in nodes))

    def containers(self, indexes: list[int]) -> list:
        found = []
        for index in indexes:
            found += self.clients[index].containers.list(
                filters={"label": f"{harness.SWARM_SERVICE_LABEL}={self.service}"}, ignore_removed=True)
        return found

    def whole(self, replicas: int) -> bool:
        via = self.live()[0]
        tasks = self.clients[via].api.tasks(filters={"service": self.service, "desired-state": "running"})
        running = sum(task["Status"]["State"] == "running" for task in tasks)
        return running == replicas and len(self.containers(list(self.clients))) == replicas

    def slot_history(self, via: int, slot: int, after: float) -> str:
        """The tasks of one slot made after `after`, oldest first: on which host, and when."""
        hostnames = {node["ID"]: node["Description"]["Hostname"] for node in self.nodes(via)}
        tasks = [task for task in self.clients[via].api.tasks(filters={"service": self.service})
                 if task.get("Slot") == slot and iso_seconds(task["CreatedAt"]) > after]
        tasks.sort(key=lambda task: task["CreatedAt"])
        return ", ".join(f"{hostnames.get(task.get('NodeID', ''), 'no node')} "
                         f"({iso_seconds(task['CreatedAt']) - after:.1f} s, {task['Status']['State']}"
                         f"{': ' + task['Status'].get('Err', '') if task['Status'].get('Err') else ''})"
                         for task in tasks) or "none"

    def scale(self, via: int, replicas: int, timeout: float = SWARM_TRY_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.hosts.host(via).docker_host, "service", "scale", "--detach",
             f"{self.service}={replicas}"], capture_output=True, text=True, timeout=timeout, check=False)

    def scale_until_accepted(self, via: int, replicas: int) -> tuple[float, int, list[str]]:
        """Tries of `docker service scale` on `via`, a new one every SWARM_TRY_EVERY s while the earlier
        ones still wait (at once when one fails), until one is accepted: when (unix seconds), how many
        tries, and the distinct errors seen before (tries racing the accepted one fail afterwards with
        'update out of sequence')."""
        accepted: list[float] = []
        errors: list[tuple[float, str]] = []
        done = threading.Event()
        tries = 0

        def attempt() -> None:
            try:
                result = self.scale(via, replicas)
            except subprocess.TimeoutExpired:
                errors.append((time.time(), f"no answer within {SWARM_TRY_TIMEOUT:g} s"))
            else:
                if result.returncode == 0:
                    accepted.append(time.time())
                else:
                    why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"
                    errors.append((time.time(), why))
            done.set()

        deadline = time.monotonic() + TIMEOUT
        threads = []
        while not accepted and time.monotonic() < deadline:
            done.clear()
            thread = threading.Thread(target=attempt, daemon=True)
            thread.start()
            threads.append(thread)
            tries += 1
            done.wait(SWARM_TRY_EVERY)
            if not accepted and not done.is_set():
                continue
            time.sleep(0.02)
        for thread in threads:
            thread.join(timeout=SWARM_TRY_TIMEOUT + 1)
        if not accepted:
            raise TimeoutError(f"swarm scale never accepted: {sorted({error for _, error in errors})}")
        return min(accepted), tries, sorted({error for when, error in errors if when < min(accepted)})


DOCKERD_LINE = re.compile(r'^time="([^"]+)".*msg="([^"]*)')
SWARM_STAGES = {  # what a surviving engine logs -> the stage it marks
    re.compile(r"became leader at term"): "a surviving manager becomes raft leader",
    re.compile(r"worker \S+ was successfully registered"): "both surviving nodes registered with it",
    re.compile(r"heartbeat expiration for node"): "the dead node's heartbeat expires there",
}


def swarm_stages(hosts: HostBed, indexes: list[int], after: float) -> dict[str, float]:
    """Seconds from `after` to each stage the surviving engines logged after it (the registrations: the
    moment the last of the surviving nodes registered with the new leader's dispatcher)."""
    found: dict[str, float] = {}
    registered: dict[str, float] = {}
    for index in indexes:
        with contextlib.suppress(OSError):
            for line in (hosts.host(index).run_dir / "dockerd.log").read_text(errors="replace").splitlines():
                match = DOCKERD_LINE.match(line)
                if not match:
                    continue
                for pattern, stage in SWARM_STAGES.items():
                    if not pattern.search(match.group(2)):
                        continue
                    when = iso_seconds(match.group(1)) - after
                    if when <= 0:
                        continue
                    if stage.startswith("both"):
                        worker = match.group(2).split()[1]
                        registered[worker] = min(when, registered.get(worker, when))
                    elif stage not in found or when < found[stage]:
                        found[stage] = when
    if len(registered) >= len(indexes):
        found["both surviving nodes registered with it"] = sorted(registered.values())[len(indexes) - 1]
    return found


def swarm_failover(swarm: SwarmBed, replicas: int) -> SwarmFailover:
    poll_until(swarm.healthy, TIMEOUT, "every swarm node ready, every manager reachable, a leader", interval=0.2)
    poll_until(lambda: swarm.whole(replicas), TIMEOUT, f"{replicas} swarm tasks, one container each", interval=0.2)
    leader = swarm.leader()
    assert leader is not None
    survivors = [index for index in swarm.clients if index != leader]
    time.sleep(SETTLE)
    killed = time.time()
    swarm.hosts.kill_engine(leader)  # SIGKILL of its dockerd; its containers live on
    try:
        accepted, tries, errors = swarm.scale_until_accepted(survivors[0], replicas + 1)
        started = poll_until(lambda: started_after(swarm.containers(survivors), killed), TIMEOUT,
                        "a swarm container started after the kill on a surviving host")
        prefix = f"{swarm.service}.{replicas + 1}."
        try:
            added = poll_until(lambda: started_after([c for c in swarm.containers(survivors)
                                                 if c.name.startswith(prefix)], killed),
                          TIMEOUT, f"the container of {prefix[:-1]} started")
        except AssertionError:  # left pending: reported as not started
            added = (float("nan"), "")
        stages = swarm_stages(swarm.hosts, survivors, killed)
        slot = swarm.slot_history(survivors[0], replicas + 1, killed)
    finally:
        # Back as before, untimed: the engine starts again and rejoins, the service returns to N.
        if not engine_up(swarm.hosts, leader):
            swarm.hosts.start_engine(leader)
    slot += f"; first container started: {started[1]}"
    result = SwarmFailover(accepted - killed, started[0] - killed, added[0] - killed, stages, tries, errors,
                           f"host{leader}", slot)
    log(f"swarm failover (leader host{leader} killed): scale accepted {result.accepted:.2f}s ({tries} tries; "
        f"{errors}), first container {result.first_start:.2f}s, the added replica's {result.scaled_start:.2f}s; "
        f"stages {stages}; slot {replicas + 1}: {slot}")
    poll_until(swarm.healthy, TIMEOUT, "the swarm whole again", interval=0.2)
    poll_until(lambda: swarm.scale(survivors[0], replicas).returncode == 0, TIMEOUT, f"swarm scaled to {replicas}")
    return result


# -- the run --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    timed: dict[str, list[Any]] = field(default_factory=lambda: {system: [] for system in SYSTEMS})
    checks: list[Failover] = field(default_factory=list)  # the --failovers loss check
    latency: dict[str, Samples] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    machine: str = ""

    def gorchester(self) -> list[Failover]:
        return list(self.timed["gorchester"]) + self.checks


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--failovers", type=int, default=FAILOVERS,
                        help="more gorchester failovers, checking for lost writes (default %(default)s)")
    parser.add_argument("--replicas", type=int, default=REPLICAS, help="replicas of the service (default %(default)s)")
    parser.add_argument("--latency-writes", type=int, default=LATENCY_WRITES,
                        help="writes per URL for the write latency (default %(default)s)")
    parser.add_argument("--no-swarm", action="store_true", help="gorchester only (no bed, no Swarm): to try things")


@contextmanager
def swarm_bed(name: str, skip: bool) -> Iterator[SwarmBed | None]:
    if skip:
        yield None
        return
    with bed(name, HOSTS, images=[harness.IMAGE]) as hosts, bed_swarm(hosts, managers=HOSTS):
        made = SwarmBed(hosts, f"b{name}")
        try:
            yield made
        finally:
            made.close()


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], extra=options)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup runs (the bed, Redis, iptables)
    outcome = Outcome()
    # Described (its commit) now, as the processes load the code: a long run may outlive HEAD.
    outcome.machine = harness.machine()
    name = f"fo{os.getpid() % 10_000}"
    with harness.workdir(args.keep_logs) as path, swarm_bed(name, args.no_swarm) as swarm:
        if swarm is not None:
            harness.Swarm(swarm.hosts.host(1).docker_host).create_service(
                swarm.service, args.replicas, *SWARM_OPTIONS, "--stop-grace-period", "1s")
        redis = RedisSet(path)
        try:
            redis.start()
            cluster = FailoverCluster(path, redis)
        except BaseException:
            redis.close()
            raise
        try:
            poll_until(redis.settled, 60, "master, two replicas and three sentinels to know each other", interval=0.2)
            cluster.start()
            cluster.create(SERVICE, args.replicas)
            cluster.create(LEDGER, 0, resources={"cpu_millicores": LEDGER_CPU, "memory_bytes": 16 * 1024 * 1024})
            outcome.latency = write_latency(cluster, redis, args.latency_writes)
            for run in range(args.runs):
                outcome.loads.append(harness.load())
                systems = SYSTEMS if swarm is not None else ["gorchester"]
                for system in systems[run % len(systems):] + systems[: run % len(systems)]:
                    if system == "gorchester":
                        outcome.timed[system].append(gorchester_failover(cluster, redis, args.replicas))
                    else:
                        assert swarm is not None
                        outcome.timed[system].append(swarm_failover(swarm, args.replicas))
                log(f"run {run + 1}/{args.runs} done (load {outcome.loads[-1]})")
            for check in range(args.failovers):
                outcome.checks.append(gorchester_failover(cluster, redis, args.replicas, cut=check % 2 == 1))
                log(f"loss check {check + 1}/{args.failovers} done")
            outcome.loads.append(harness.load())
        finally:
            cluster.close()  # every process (the Redis set too) and the cluster's containers
            if args.keep_logs and swarm is not None:
                for host in swarm.hosts.all_hosts():
                    with contextlib.suppress(OSError):
                        (path / f"{host.name}-dockerd.log").write_bytes((host.run_dir / "dockerd.log").read_bytes())
    defaults = {"--failovers": (args.failovers, FAILOVERS), "--replicas": (args.replicas, REPLICAS),
                "--latency-writes": (args.latency_writes, LATENCY_WRITES)}
    command = " ".join([".venv/bin/python -m bench.failover", f"--runs {args.runs}",
                        *(f"{flag} {value}" for flag, (value, default) in defaults.items() if value != default),
                        *(["--no-swarm"] if args.no_swarm else []), "--write"])
    report = render(command, outcome, args.replicas)
    print(report)
    if args.write:
        harness.write_section("failover", report)


# -- the report -----------------------------------------------------------------------------------------


def samples(name: str, values: list[float]) -> Samples:
    return Samples(name, [value for value in values if value == value])  # NaN: not seen


def cell(found: Samples) -> str:
    return f"**{found.median:.2f}** ({found.spread()})" if found.values else "—"


def render(command: str, outcome: Outcome, replicas: int) -> str:
    ours: list[Failover] = outcome.timed["gorchester"]
    theirs: list[SwarmFailover] = outcome.timed["swarm"]
    write, start = samples("write", [f.first_write for f in ours]), samples("start", [f.first_start for f in ours])
    rows = [["gorchester: Redis master SIGKILLed (2 replicas, 3 sentinels)", len(ours), cell(write), cell(start)]]
    swarm_write = samples("swarm write", [f.accepted for f in theirs])
    swarm_start = samples("swarm start", [f.first_start for f in theirs])
    if theirs:
        rows.append(["Docker Swarm: leader's `dockerd` SIGKILLed (3 managers)", len(theirs), cell(swarm_write),
                     cell(swarm_start)])
    table = harness.markdown_table(
        ["system", "runs", "kill → first write accepted s", "kill → first container started by a decision after "
         "the kill s"], rows)
    every = outcome.gorchester()
    uncut = [f for f in every if not f.cut]
    lost = sum(len(f.lost) for f in every)
    verdicts = [
        f"under {TARGET_WRITE:g} s to the first accepted write: "
        + ("met" if write.values and write.median < TARGET_WRITE and max(write.values) < TARGET_WRITE
           else "**missed**"),
        "no slower than Swarm's manager failover: "
        + (("met" if write.median <= swarm_write.median and start.median <= swarm_start.median else "**missed**")
           if theirs else "not measured"),
        f"0 acknowledged writes lost over {len(outcome.checks)} failovers (and the {len(ours)} timed): "
        + ("met" if lost == 0 else f"**missed**: {lost} lost"),
    ]
    stage_names = list(SENTINEL_STAGES.values()) + list(SCHEDULER_STAGES.values())
    stage_rows = [[stage, cell(samples(stage, [f.stages.get(stage, float("nan")) for f in uncut]))]
                  for stage in stage_names]
    stage_rows += [
        ["first write accepted (API: WAIT 1 answered)", cell(samples("w", [f.first_write for f in uncut]))],
        [f"`{SERVICE}` scaled to {replicas + 1} (2xx)", cell(samples("s", [f.scaled for f in uncut]))],
        ["its new replica's container started", cell(samples("c", [f.first_start for f in uncut]))],
    ]
    stage_rows.sort(key=lambda row: float(row[1].split("**")[1]) if "**" in row[1] else 0.0)
    stage_table = harness.markdown_table(["gorchester, from the kill", f"s, median of {len(uncut)} (min–max)"],
                                         stage_rows)
    pending = sum(1 for f in theirs if f.scaled_start != f.scaled_start)
    swarm_rows = [[stage, cell(samples(stage, [f.stages.get(stage, float("nan")) for f in theirs]))]
                  for stage in SWARM_STAGES.values()]
    swarm_rows += [
        ["`docker service scale` accepted", cell(swarm_write)],
        ["first container started on a surviving host (a task made after the kill)", cell(swarm_start)],
        ["the container of the replica the scale added started", cell(samples("a", [f.scaled_start for f in theirs]))
         + (f"; {pending} of {len(theirs)} left pending (not started {TIMEOUT:.0f} s after the first)" if pending
            else "")],
    ]
    swarm_table = harness.markdown_table(
        ["Swarm, from the kill (a stage: the first line a surviving engine logged for it)",
         f"s, median of {len(theirs)} (min–max)"], swarm_rows)
    loss_rows = []
    for kind, chosen in (("SIGKILL of the master", uncut),
                         (f"its links to the replicas cut {CUT_BEFORE:g} s before the SIGKILL",
                          [f for f in every if f.cut])):
        if not chosen:
            continue
        loss_rows.append([
            kind, len(chosen), cell(samples("w", [f.first_write for f in chosen])),
            sum(f.acknowledged for f in chosen), sum(f.changed for f in chosen),
            sum(f.refused + f.unanswered for f in chosen),
            f"{sum(f.master_only for f in chosen)} / {sum(f.master_only_gone for f in chosen)}",
            f"**{sum(len(f.lost) for f in chosen)}**", f"{max(f.gap for f in chosen):.2f}",
        ])
    loss_table = harness.markdown_table(
        ["failover", "failovers", "kill → first write accepted s", "writes acknowledged (2xx)",
         "of which changed the record (each has its event)", "refused or unanswered after the kill",
         "503 'reached the master only' / of them gone after", "acknowledged and lost",
         "longest wait between writes after the kill s"],
        loss_rows)
    latency_rows = [[kind, len(found.values), f"{percentile(found.values, 0.5) * 1000:.2f}",
                     f"**{percentile(found.values, 0.99) * 1000:.2f}**", f"{max(found.values) * 1000:.2f}"]
                    for kind, found in outcome.latency.items()]
    latency_table = harness.markdown_table(["API on", "writes", "p50 ms", "p99 ms", "max ms"], latency_rows)
    raw = [
        f"- gorchester, kill → first write: {write.all()}",
        f"- gorchester, kill → first container: {start.all()}",
        f"- gorchester, loss-check failovers, kill → first write: "
        f"{samples('x', [f.first_write for f in outcome.checks]).all()}",
        f"- gorchester, loss-check failovers, kill → first container: "
        f"{samples('x', [f.first_start for f in outcome.checks]).all()}",
        f"- gorchester, killed → promoted: {', '.join(f'{f.killed} → {f.promoted}' for f in every)}",
    ]
    if theirs:
        raw += [
            f"- swarm, kill → scale accepted: {swarm_write.all()} (leader killed: "
            f"{', '.join(f.leader for f in theirs)}; tries: {', '.join(str(f.tries) for f in theirs)})",
            f"- swarm, kill → first container: {swarm_start.all()}",
            f"- swarm, kill → the added replica's container: {samples('a', [f.scaled_start for f in theirs]).all()}",
            f"- swarm, the new slot's tasks (host, s from the kill to the task, its state then): "
            f"{'; '.join(f.slot for f in theirs)}",
            f"- swarm, errors while no scale was accepted: {sorted({e for f in theirs for e in f.errors})}",
        ]
    lost_lines = [f"- failover {i + 1}: {line}" for i, f in enumerate(every) for line in f.lost]
    swarm_part = (f"**Where Swarm's time goes**, medians of {len(theirs)}:\n\n{swarm_table}\n\n" if theirs else "")
    return (
        f"_Command:_ `{command}`\n\n"
        f"_Machine:_ {outcome.machine}; Swarm on a bed of {HOSTS} hosts, each its own `dockerd` on the same "
        f"2 cores\n\n"
        f"_Load averages_ (1, 5, 15 min) before each timed run, and at the end: {'; '.join(outcome.loads)}\n\n"
        f"**Failover**, {replicas} replicas running, medians (min–max in brackets):\n\n{table}\n\n"
        f"Targets: {'; '.join(verdicts)}.\n\n"
        f"**Where gorchester's time goes**, over the {len(uncut)} failovers without a cut (the timed and the "
        f"loss check's; a sentinel stage is the first line any of the 3 sentinels logged for it, the scheduler's "
        f"its own log):\n\n{stage_table}\n\n"
        f"{swarm_part}"
        f"**Acknowledged writes**, every failover (the writer: one scale write after another, "
        f"{WRITE_GAP * 1000:.0f} ms apart; the loss check alternates plain kills and kills after a cut):"
        f"\n\n{loss_table}\n\n"
        + ("\n".join(lost_lines) + "\n\n" if lost_lines else "")
        + f"**Write latency**, `POST /v1/services/{LEDGER}/scale` one at a time, blocks of {LATENCY_BLOCK} "
        f"alternating between the two APIs on the same master:\n\n{latency_table}\n\n"
        f"<details><summary>All runs (seconds, in run order)</summary>\n\n" + "\n".join(raw) + "\n\n</details>\n"
    )


if __name__ == "__main__":
    main()
