"""The soak's cluster: a persistent, restartable Redis, the API, two schedulers and three agents, either
on this machine's one engine or each inside a host of a bed with an engine of its own (cli/hostbed.py)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import docker
import redis as redis_lib
import requests
from docker.models.containers import Container

from bench import harness
from bench.harness import log
from cli.cluster import remove_cluster_objects
from cli.hostbed import HostBed
from cli.redis_local import password, server_argv, server_config
from shared import labels, redis_url
from shared.settings import with_password
from tests.support.procs import VENV_BIN, free_port, wait_for
from tests.support.redis_set import RedisSet

NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3", "node-3": "127.0.0.4"}  # on this machine's engine
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


class PersistentRedis:
    """redis-server on a fixed free port and dir, appendonly yes / everysec, restartable in place;
    on loopback, and on `bind`'s other addresses too (a host bed's gateway, bench/multihost.py)."""

    def __init__(self, workdir: Path, bind: Sequence[str] = ("127.0.0.1",)):
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.bind = tuple(bind)
        self.port = free_port()
        secret, _ = password(self.dir)  # a password as a cluster's has; the URL carries it
        self.url = with_password(f"redis://127.0.0.1:{self.port}/0", secret)
        self.config = server_config(self.dir, secret)
        self.proc: subprocess.Popen | None = None
        self.log = open(workdir / "redis.log", "ab")  # noqa: SIM115 - closed in close()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            server_argv(self.port, self.dir, config=self.config, bind=self.bind),
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


class ReplicatedRedis(RedisSet):
    """A RedisSet (a master, two replicas, three sentinels as `gorchester up --redis-replicas 2` runs
    them) with PersistentRedis' interface: `kill` SIGKILLs whichever server is master now, `start`
    starts every process that is down again with its own command line and data (a killed master comes
    back as a replica of the promoted one), `alive` is every data server up. The URL names the sentinels."""

    def start(self, name: str | None = None) -> None:
        super().start(name)
        wait_for(lambda: redis_url.client(self.url, socket_timeout=2).ping(), timeout=30, what="a master")

    def kill(self, name: str | None = None) -> None:
        super().kill(name or self.master())


class ChaosCluster(harness.Cluster):
    """harness.Cluster with a persistent, restartable Redis, two schedulers and three agents; with a
    `bed` of three hosts, node-I's agent runs inside host I against its engine only (Redis also
    listens on the bed's gateway, where the hosts reach it)."""

    redis: PersistentRedis | ReplicatedRedis  # type: ignore[assignment]  # same url and close(), and restartable

    def __init__(self, workdir: Path, bed: HostBed | None = None, *, replicated: bool = False):
        bind = ("127.0.0.1", bed.gateway) if bed is not None else ("127.0.0.1",)
        redis = ReplicatedRedis(workdir, bind) if replicated else PersistentRedis(workdir, bind)
        super().__init__(workdir, redis=redis, prefix="chaos")  # type: ignore[arg-type]
        self.bed = bed
        self.clients: dict[str, docker.DockerClient] = {}  # see engine()
        self.offsets: dict[str, int] = {}  # where each process's current life starts in its log
        self.started: dict[str, float] = {}  # when each process's current life started (monotonic)
        self.db = redis_url.client(self.redis.url, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> ChaosCluster:
        self.redis.start()
        self.url = self.procs.api(free_port())
        for name in SCHEDULERS:
            self.start_scheduler(name)
        for node in NODES:
            self.start_agent(node)
        wait_for(lambda: self.ready_nodes() == sorted(NODES), timeout=60, what="three ready nodes")
        log(f"cluster {self.name} up (API {self.url}, {redis_url.describe(self.redis.url)}, logs in {self.workdir})")
        return self

    def _mark(self, name: str) -> None:
        path = self.workdir / f"{name}.log"
        self.offsets[name] = path.stat().st_size if path.exists() else 0
        self.started[name] = time.monotonic()

    def start_scheduler(self, name: str) -> None:
        self._mark(name)
        self.procs.scheduler(name)

    def start_agent(self, node: str) -> None:
        self._mark(node)
        if self.bed is None:
            self.procs.agent(node, NODES[node])
            return
        index = self.host_of(node)
        argv = [str(VENV_BIN / "rq"), "worker", "-w", "worker.agent.NodeAgent", node]
        self.procs.start(node, self.bed.command_in(index, argv), self.bed.agent_env(index, self.redis.url))

    def host_of(self, node: str) -> int:
        """The bed's host a node runs on: node-I on host I."""
        return list(NODES).index(node) + 1

    def engine(self, node: str) -> docker.DockerClient:
        """The engine `node` runs its containers on (this machine's is every node's without a bed); made
        on first use, which fails while that engine does not answer."""
        key = node if self.bed is not None else ""
        if key not in self.clients:
            self.clients[key] = (
                harness.docker_client() if self.bed is None
                else docker.DockerClient(base_url=self.bed.host(self.host_of(node)).docker_host, timeout=120)
            )
        return self.clients[key]

    def containers(self, *, all: bool = False, running: bool = False) -> list[Container]:  # noqa: A002 - docker's flag
        """The cluster's containers on every engine that answers (a host's engine may be down: a fault)."""
        selector: dict[str, object] = {"label": f"{labels.CLUSTER}={self.name}"}
        if running:
            selector["status"] = "running"
        found: list[Container] = []
        for node in NODES if self.bed is not None else list(NODES)[:1]:
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                found += self.engine(node).containers.list(all=all, filters=selector, ignore_removed=True)
        return found

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
        if self.bed is None:  # a bed's engines go with everything on them when the bed is removed
            remove_cluster_objects(self.name, networks=True, volumes=True)
