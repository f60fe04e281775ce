"""The fault injector: one random fault every few seconds, each tolerant of the state changing under it.

A fault whose target is gone by the time it acts (a container removed meanwhile, a process that
already died, Redis restarting) is a fault not made: it tries another target or is skipped, and the
soak goes on. An exception escaping a fault is the injector's own error: logged and kept apart from
the cluster's defects, never the end of the soak.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import httpx

from bench import harness
from bench.chaos import hostile
from bench.chaos.cluster import NODES, ChaosCluster, ReplicatedRedis
from bench.chaos.ledger import ABSENT, Ledger
from bench.harness import log
from cli.hostbed import HostBed
from shared import labels
from tests.support.procs import wait_for

KINDS = ("agent", "leader", "container", "redis", "writes", "hostile", "engine", "partition", "failover")
HOST_KINDS = frozenset({"engine", "partition"})  # faults of a host of a bed: they need the soak on one
REPLICA_KINDS = frozenset({"failover"})  # faults of a replicated Redis: they need the soak on one
GAP = (3.0, 8.0)  # seconds between faults
AGENT_DOWN = (0.0, 10.0)
REDIS_DOWN = (0.0, 3.0)
# The master's death through a failover: the sentinels promote a replica after 2 s (down-after), and the
# old master comes back later, as a replica of the new one.
FAILOVER_DOWN = (5.0, 15.0)
ENGINE_DOWN = (1.0, 15.0)  # within the heartbeat window (3 s by default) and well beyond it
PARTITION = (5.0, 30.0)
# An agent needs Redis to start (`rq worker` checks for suspension first) and exits when it cannot reach
# it; its supervisor starts it again (systemd's Restart=on-failure, RestartSec=2 in
# deploy/gorchester-agent@.service; `gorchester up` likewise). The soak does the same for an agent that
# exits within START_GRACE of its start; an agent that dies later is the cluster's defect.
START_GRACE = 10.0
RESTART_SEC = 2.0
RETRY_RESTART = 2.0  # seconds before a restart that failed is tried again
RESTART_TRIES = 15
SCALES = {"web": (3, 8), "worker": (2, 6), "batch": (1, 3)}  # replica ranges the writes choose from
EXTRA = "extra"  # a service the writes create and delete (its incarnations must never collide)
WRITE_TIMEOUT = 5.0


@dataclass
class Fault:
    at: float  # seconds since the soak started
    kind: str
    detail: str


@dataclass
class Skip:
    at: float
    kind: str
    why: str


@dataclass
class InjectorError:
    at: float
    kind: str
    error: str


@dataclass
class Chaos:
    cluster: ChaosCluster
    rng: random.Random
    kinds: tuple[str, ...] = KINDS
    ledger: Ledger = field(default_factory=lambda: Ledger({}))
    faults: list[Fault] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    errors: list[InjectorError] = field(default_factory=list)
    answers: list[hostile.Answer] = field(default_factory=list)  # every hostile probe's answer
    supervised: list[Fault] = field(default_factory=list)  # agents started again after exiting at start-up
    pending: list[tuple[float, str, Callable[[], None], int]] = field(default_factory=list)  # (at, what, do, tries)
    threads: list[threading.Thread] = field(default_factory=list)
    t0: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, kind: str, detail: str) -> None:
        fault = Fault(self.now(), kind, detail)
        self.faults.append(fault)
        log(f"FAULT t={fault.at:7.1f}s {kind:9s} {detail}")

    def skip(self, kind: str, why: str) -> None:
        self.skips.append(Skip(self.now(), kind, why))
        log(f"        t={self.now():7.1f}s {kind} fault not made: {why}")

    def error(self, kind: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append(InjectorError(self.now(), kind, text))
        log(f"INJECTOR ERROR t={self.now():7.1f}s {kind}: {text}")

    def later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        self.pending.append((time.monotonic() + delay, what, action, 0))

    def run_due(self, everything: bool = False) -> None:
        """Restarts whose time has come (with `everything`, all of them, waiting as needed); one that
        fails is the injector's error and is tried again RETRY_RESTART later, up to RESTART_TRIES times."""
        while True:
            due = sorted((p for p in self.pending if everything or p[0] <= time.monotonic()), key=lambda p: p[0])
            if not due:
                return
            at, what, action, tries = due[0]
            self.pending.remove(due[0])
            time.sleep(max(0.0, at - time.monotonic()))
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - the injector's own failure: report, retry
                self.error(f"restart {what}", exc)
                if tries + 1 < RESTART_TRIES:
                    self.pending.append((time.monotonic() + RETRY_RESTART, what, action, tries + 1))
                continue
            log(f"        t={self.now():7.1f}s restarted {what}")

    def supervise(self) -> None:
        """Start again, as its supervisor would, an agent that exited at start-up (Redis out of its reach)."""
        for node in NODES:
            proc = self.cluster.procs.procs.get(node)
            if proc is None or proc.poll() is None or node in self.busy():
                continue
            if time.monotonic() - self.cluster.started[node] > START_GRACE:
                continue  # it had started: its death is for the checks to report
            why = f"{node} exited at start-up (code {proc.returncode}); started again in {RESTART_SEC:g}s"
            self.supervised.append(Fault(self.now(), "agent", why))
            log(f"        t={self.now():7.1f}s {why}, as its supervisor would")
            self.later(RESTART_SEC, node, lambda node=node: self.cluster.start_agent(node))

    def starting(self) -> bool:
        """Whether an agent was started less than START_GRACE ago (it may still exit at start-up)."""
        now = time.monotonic()
        return any(now - self.cluster.started.get(node, 0.0) <= START_GRACE for node in NODES)

    def busy(self) -> set[str]:
        return {what for _, what, _, _ in self.pending}

    def calm_nodes(self) -> list[str]:
        """Nodes with no fault of theirs under way (agent down, engine down, link cut): one fault per
        node at a time, so an agent is never started again inside a host that is cut off."""
        busy = self.busy()
        return [node for node in NODES if not any(what.split()[-1] == node for what in busy)]

    # processes -------------------------------------------------------------------------------

    def agent(self) -> str | None:
        candidates = [n for n in self.calm_nodes() if n in self.cluster.procs.procs]
        if not candidates:
            return "every agent is down already, or its node under another fault"
        node = self.rng.choice(candidates)
        down = self.rng.uniform(*AGENT_DOWN)
        self.cluster.procs.kill(node)
        self.record("agent", f"SIGKILL {node}; restart in {down:.1f}s")
        self.later(down, node, lambda: self.cluster.start_agent(node))
        return None

    def leader(self) -> str | None:
        if not self.cluster.redis.alive():
            return "redis is down (no lease to read)"
        try:
            found = wait_for(self.cluster.leader, timeout=10, interval=0.1, what="a live leader")
        except AssertionError:
            return "no live leader within 10 s"
        name, token = found
        if name not in self.cluster.procs.procs:
            return f"{name} died meanwhile"
        self.cluster.procs.kill(name)
        self.record("leader", f"SIGKILL {name} (leader {token[:8]}); restarted at once")
        self.cluster.start_scheduler(name)
        return None

    def redis(self) -> str | None:
        if not self.cluster.redis.alive() or "redis-server" in self.busy():
            return "redis is down already"
        down = self.rng.uniform(*REDIS_DOWN)
        self.cluster.redis.kill()
        self.record("redis", f"SIGKILL redis-server (the master); restart in {down:.1f}s")
        self.later(down, "redis-server", self.cluster.redis.start)
        return None

    def failover(self) -> str | None:
        """SIGKILL the Redis master and start it again only after a replica has been promoted."""
        redis = self.cluster.redis
        assert isinstance(redis, ReplicatedRedis), "failover faults need a replicated Redis (--replicated)"
        if not redis.alive() or "redis-server" in self.busy():
            return "a Redis server is down already"
        try:
            master = redis.master()
        except LookupError as exc:
            return f"no master known ({exc})"
        down = self.rng.uniform(*FAILOVER_DOWN)
        redis.kill()
        self.record("failover", f"SIGKILL the master ({master}); start it again, as a replica, in {down:.1f}s")
        self.later(down, "redis-server", redis.start)
        return None

    # hosts of a bed ------------------------------------------------------------------------------

    def calm_host(self, kind: str) -> tuple[HostBed, tuple[str, int] | str]:
        """The bed, and a node under no other fault with its host's index (or why there is none)."""
        bed = self.cluster.bed
        assert bed is not None, f"{kind} faults need the soak on a bed (--hosts)"
        candidates = self.calm_nodes()
        if not candidates:
            return bed, "every node is under another fault"
        node = self.rng.choice(candidates)
        return bed, (node, self.cluster.host_of(node))

    def engine(self) -> str | None:
        """SIGKILL a host's dockerd (its agent lives on, its containers too until the engine is back)."""
        bed, picked = self.calm_host("engine")
        if isinstance(picked, str):
            return picked
        node, index = picked
        down = self.rng.uniform(*ENGINE_DOWN)
        bed.kill_engine(index)
        self.record("engine", f"SIGKILL host{index}'s dockerd ({node}); start it again in {down:.1f}s")
        # Not waited for: a returning engine first stops what it left running (10 s for a PID 1 that
        # ignores SIGTERM), and the other faults' restarts must not wait on it. The settle checks it answers.
        self.later(down, f"engine of {node}", lambda: bed.start_engine(index, wait=False))
        return None

    def partition(self) -> str | None:
        """Cut a host's cable: its agent and containers live on, out of reach (and Redis out of theirs)."""
        bed, picked = self.calm_host("partition")
        if isinstance(picked, str):
            return picked
        node, index = picked
        cut = self.rng.uniform(*PARTITION)
        bed.partition(index)
        self.record("partition", f"cut host{index} ({node}) off; mend it in {cut:.1f}s")
        self.later(cut, f"link of {node}", lambda: bed.partition(index, cut=False))
        return None

    # containers ------------------------------------------------------------------------------

    def container(self) -> str | None:
        """`docker rm -f` a running replica of web, worker or batch; one that is gone or going meanwhile
        makes way for the next."""
        running = self.cluster.containers(running=True)
        # `extra` runs with restart_policy no: a replica removed by hand would rightly stay failed.
        victims = sorted((c for c in running if c.labels.get(labels.SERVICE) != EXTRA), key=lambda c: c.name)
        self.rng.shuffle(victims)
        for victim in victims:
            try:
                victim.remove(force=True)
            except docker.errors.NotFound:
                continue  # removed between the listing and now
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # its removal is already in progress (the agent's, say)
                    continue
                raise
            self.record("container", f"docker rm -f {victim.name} ({victim.labels.get(labels.NODE)})")
            return None
        return "no running container left to remove" if victims else "no running container"

    # the users' changes ----------------------------------------------------------------------

    def writes(self) -> str | None:
        """A user's change through the API; its answer goes into the ledger."""
        api = self.cluster.url
        choice = self.rng.choice([*SCALES, EXTRA])
        if choice == EXTRA:
            if self.ledger.acceptable(EXTRA) == {ABSENT}:
                spec = {"service_name": EXTRA, "image": harness.IMAGE, "replicas": 2, "command": ["sleep", "3600"],
                        "restart_policy": "no"}
                status = self._write("POST", f"{api}/v1/services", spec)
                wanted: int | None = 2
                what = f"create {EXTRA} (2 replicas)"
            else:
                status = self._write("DELETE", f"{api}/v1/services/{EXTRA}", None)
                wanted, what = ABSENT, f"delete {EXTRA}"
                if status == 404:
                    status = 200  # already gone: the desired outcome holds
        else:
            wanted = self.rng.randint(*SCALES[choice])
            status = self._write("POST", f"{api}/v1/services/{choice}/scale", {"replicas": wanted})
            what = f"scale {choice} to {wanted}"
        verdict = self.ledger.record(choice, wanted, status)
        self.record("writes", f"{what}: {status if status is not None else 'no answer'} ({verdict})")
        return None

    def _write(self, method: str, url: str, body: object) -> int | None:
        try:
            return self.cluster.http.request(method, url, json=body, timeout=WRITE_TIMEOUT).status_code
        except httpx.HTTPError:
            return None

    # hostile clients -------------------------------------------------------------------------

    def hostile(self) -> str | None:
        """A few of issue 11's hostile requests; a body that never arrives whole now and then."""
        probes = self.rng.sample(hostile.PROBES, k=self.rng.randint(3, 6))
        answers = [hostile.send(self.cluster.http, self.cluster.url, probe) for probe in probes]
        self.answers += answers
        if self.rng.random() < 0.2 and not any(t.is_alive() for t in self.threads):
            thread = threading.Thread(target=lambda: self.answers.append(hostile.send_slow_body(self.cluster.url)))
            thread.start()
            self.threads.append(thread)
        defects = [f"{a.probe}: {a.defect()}" for a in answers if a.defect()]
        self.record("hostile", f"{len(answers)} requests; " + ("; ".join(defects) if defects else "all refused"))
        return None

    # the loop --------------------------------------------------------------------------------

    def soak(self, duration: float) -> None:
        self.t0 = time.monotonic()
        next_at = self.rng.uniform(*GAP)
        round_: list[str] = []
        while self.now() < duration:
            self.run_due()
            if self.now() >= next_at:
                # Rounds of every chosen kind once, each round shuffled: a short soak makes each kind too.
                round_ = round_ or self.rng.sample(self.kinds, k=len(self.kinds))
                kind = round_.pop()
                try:
                    why = getattr(self, kind)()
                except Exception as exc:  # noqa: BLE001 - the injector's own failure: report, go on
                    self.error(kind, exc)
                else:
                    if why is not None:
                        self.skip(kind, why)
                next_at = self.now() + self.rng.uniform(*GAP)
            self.supervise()
            time.sleep(0.05)
        self.run_due(everything=True)
        deadline = time.monotonic() + START_GRACE * RESTART_TRIES
        while (self.pending or self.starting()) and time.monotonic() < deadline:  # every agent got going
            self.supervise()
            self.run_due()
            time.sleep(0.05)
        for thread in self.threads:
            thread.join()

    def counts(self) -> tuple[Counter[str], Counter[str]]:
        return Counter(f.kind for f in self.faults), Counter(s.kind for s in self.skips)

    def hostile_defects(self) -> list[str]:
        limit = {hostile.SLOW_BODY: hostile.SLOW_BODY_LIMIT}
        return [
            f"{a.probe}: {defect}"
            for a in self.answers
            if (defect := a.defect(limit.get(a.probe, hostile.LIMIT))) is not None
        ]
