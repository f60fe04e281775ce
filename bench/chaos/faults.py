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
from bench.chaos.cluster import NODES, ChaosCluster
from bench.chaos.ledger import ABSENT, Ledger
from bench.harness import log
from shared import labels
from tests.support.procs import wait_for

KINDS = ("agent", "leader", "container", "redis", "writes", "hostile")
GAP = (3.0, 8.0)  # seconds between faults
AGENT_DOWN = (0.0, 10.0)
REDIS_DOWN = (0.0, 3.0)
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

    def busy(self) -> set[str]:
        return {what for _, what, _, _ in self.pending}

    # processes -------------------------------------------------------------------------------

    def agent(self) -> str | None:
        candidates = [n for n in NODES if n in self.cluster.procs.procs and n not in self.busy()]
        if not candidates:
            return "every agent is down already"
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
        self.record("redis", f"SIGKILL redis-server; restart in {down:.1f}s")
        self.later(down, "redis-server", self.cluster.redis.start)
        return None

    # containers ------------------------------------------------------------------------------

    def container(self) -> str | None:
        """`docker rm -f` a running replica of web, worker or batch; one that is gone or going meanwhile
        makes way for the next."""
        client = harness.docker_client()
        running = client.containers.list(
            filters={"label": f"{labels.CLUSTER}={self.cluster.name}", "status": "running"}, ignore_removed=True
        )
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
        while self.now() < duration:
            self.run_due()
            if self.now() >= next_at:
                kind = self.rng.choice(self.kinds)
                try:
                    why = getattr(self, kind)()
                except Exception as exc:  # noqa: BLE001 - the injector's own failure: report, go on
                    self.error(kind, exc)
                else:
                    if why is not None:
                        self.skip(kind, why)
                next_at = self.now() + self.rng.uniform(*GAP)
            time.sleep(0.05)
        self.run_due(everything=True)
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
