"""A cluster over a host bed (cli/hostbed.py) for tests: the control plane in the root namespace, one
agent per host inside its namespace against that host's engine only, as on separate machines.

The bed and its Redis are made once per test session (`hostbed`, `bed_redis`); each test gets its
own cluster name, processes and containers (`multihost`), all removed after it, even when it fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import docker
import pytest

from cli.hostbed import Host, HostBed, HostBedError, bed
from cli.redis_local import password, server_argv, server_config
from shared import labels
from shared.records import NodeStatus, TaskState
from shared.settings import with_password
from shared.storage import Store
from shared.storage.connection import connect
from tests.support.procs import FAST_SETTINGS, TEST_IMAGE, VENV_BIN, Processes, free_port, wait_for

HOSTS = 3


@pytest.fixture(scope="session")
def hostbed() -> Iterator[HostBed]:
    if os.geteuid() != 0:
        pytest.fail("the multi-host tests need root (network namespaces, one dockerd per host)")
    name = f"t{uuid.uuid4().hex[:5]}"
    try:
        with bed(name, HOSTS, images=[TEST_IMAGE]) as made:
            yield made
    except HostBedError as exc:
        pytest.fail(str(exc))


class BedRedis:
    """A redis-server with a password on loopback and on the bed's gateway, where the hosts reach it."""

    def __init__(self, workdir: Path, gateway: str):
        self.port = free_port()
        secret, _ = password(workdir)
        self.url = with_password(f"redis://127.0.0.1:{self.port}/0", secret)  # from the root namespace
        self.bed_url = with_password(f"redis://{gateway}:{self.port}/0", secret)  # from a host
        argv = server_argv(self.port, workdir, persist=False, config=server_config(workdir, secret),
                           bind=("127.0.0.1", gateway))
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: connect(self.url).ping(), timeout=10, what="the bed's redis-server")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="session")
def bed_redis(hostbed: HostBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BedRedis]:
    server = BedRedis(tmp_path_factory.mktemp("bed-redis"), hostbed.gateway)
    yield server
    server.close()


def engine(host: Host) -> docker.DockerClient:
    return docker.DockerClient(base_url=host.docker_host, timeout=60)


class MultiHost:
    """One test's cluster over the bed: start the API, scheduler and agents; the engines of each host."""

    def __init__(self, bed: HostBed, redis: BedRedis, procs: Processes, cluster: str):
        self.bed = bed
        self.redis = redis
        self.procs = procs
        self.cluster = cluster
        self.store = Store(connect(redis.url), cluster)

    def node(self, index: int) -> str:
        return f"node-{index}"

    def agent(self, index: int) -> subprocess.Popen:
        """The agent of host `index`, inside the host: its engine only, Redis through the gateway."""
        host = self.bed.host(index)
        argv = [str(VENV_BIN / "rq"), "worker", "-w", "worker.agent.NodeAgent", self.node(index)]
        return self.procs.start(self.node(index), self.bed.command_in(index, argv), {
            "DOCKER_HOST": host.docker_host,
            "GORCHESTER_NODE_ADDRESS": host.address,
            "GORCHESTER_REDIS_URL": self.redis.bed_url,
        })

    def start(self, agents: Iterable[int] | None = None) -> str:
        """API and scheduler in the root namespace, an agent on every host (or on the hosts `agents`
        names), each node ready; returns the API's URL."""
        url = self.procs.api(free_port())
        self.procs.scheduler()
        indexes = [host.index for host in self.bed.all_hosts()] if agents is None else list(agents)
        for index in indexes:
            self.agent(index)
        wanted = {self.node(index) for index in indexes}
        wait_for(lambda: wanted <= self.ready_nodes(), timeout=60, what="every host's node ready")
        return url

    def ready_nodes(self) -> set[str]:
        now, heard_since = time.time(), self.store.heard_since()
        misses = float(self.procs.env["GORCHESTER_HEARTBEAT_MISSES"])
        return {node.id for node in self.store.nodes() if node.status(now, misses, heard_since) is NodeStatus.READY}

    def running(self, service: str, replicas: int) -> bool:
        """Whether the service has exactly `replicas` tasks, all running."""
        tasks = [task for task in self.store.tasks() if task.service == service]
        return len(tasks) == replicas and all(task.state is TaskState.RUNNING for task in tasks)

    def misplaced(self) -> list[str]:
        """What is wrong with where the cluster's containers are, looked at on every engine (all must answer):
        a service with more running containers than it wants, a running task without exactly one running
        container (on its node's engine, of its gen), a container (in any state) no task owns."""
        wanted = {name: service.spec.replicas for name, service in self.store.services().items()}
        tasks = {task.id: task for task in self.store.tasks()}
        problems: list[str] = []
        per_service: Counter[str] = Counter()
        per_task: Counter[str] = Counter()
        for host in self.bed.all_hosts():
            node = self.node(host.index)
            for container in self.containers(host.index, all=True):
                task = tasks.get(container.labels.get(labels.TASK, ""))
                gen = int(container.labels.get(labels.GEN, "-1"))
                if task is None or (task.node, task.gen) != (node, gen):
                    problems.append(f"{container.name} ({container.status}) on {node}: no task owns it")
                elif container.status == "running":
                    per_task[task.id] += 1
                if container.status == "running":
                    per_service[container.labels.get(labels.SERVICE, "")] += 1
        for service, count in per_service.items():
            if count > wanted.get(service, 0):
                problems.append(f"{service}: {count} running containers for {wanted.get(service, 0)} replicas")
        for task in tasks.values():
            if task.state is TaskState.RUNNING and per_task[task.id] != 1:
                problems.append(f"{task.id} runs on {task.node} at gen {task.gen} with {per_task[task.id]} containers")
        return problems

    def engines(self) -> dict[str, docker.DockerClient]:
        return {self.node(host.index): engine(host) for host in self.bed.all_hosts()}

    def containers(self, index: int, *, all: bool = False) -> list:  # noqa: A002 - as docker's own flag
        selector = {"label": f"{labels.CLUSTER}={self.cluster}"}
        with contextlib.closing(engine(self.bed.host(index))) as client:
            return client.containers.list(all=all, filters=selector, ignore_removed=True)

    def clean(self) -> None:
        remove_cluster(self.bed, self.cluster)


def http_get_in(bed: HostBed, index: int, address: str, port: int) -> str:
    """The status line of GET / at address:port from inside host `index` (its namespace, across the bed's LAN)."""
    probe = (
        "import socket\n"
        f"s=socket.create_connection(({address!r},{port}),timeout=5)\n"
        "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "print(s.recv(200).decode(errors='replace').splitlines()[0])\n"
    )
    argv = bed.command_in(index, ["python3", "-c", probe])
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout.strip()


def remove_cluster(bed: HostBed, cluster: str) -> None:
    """Every container, network and volume of `cluster` on every engine of the bed still up."""
    selector = {"label": f"{labels.CLUSTER}={cluster}"}
    for host in bed.all_hosts():
        with contextlib.suppress(docker.errors.DockerException), contextlib.closing(engine(host)) as client:
            for container in client.containers.list(all=True, filters=selector, ignore_removed=True):
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
            for network in client.networks.list(filters=selector):
                with contextlib.suppress(docker.errors.DockerException):
                    network.remove()
            for volume in client.volumes.list(filters=selector):
                with contextlib.suppress(docker.errors.DockerException):
                    volume.remove(force=True)


@pytest.fixture
def multihost(hostbed: HostBed, bed_redis: BedRedis, cluster: str, tmp_path: Path) -> Iterator[MultiHost]:
    env = {**os.environ, **FAST_SETTINGS, "GORCHESTER_REDIS_URL": bed_redis.url, "GORCHESTER_CLUSTER": cluster}
    env.pop("DOCKER_HOST", None)
    processes = Processes(env, tmp_path)
    made = MultiHost(hostbed, bed_redis, processes, cluster)
    try:
        yield made
    finally:
        processes.close()
        # A test that killed an engine or cut a cable leaves the bed whole; the engines first, so that
        # what a dead engine still holds (its containers, stopped by its restart) is removed too.
        for host in hostbed.all_hosts():
            hostbed.partition(host.index, cut=False)
            with contextlib.suppress(HostBedError):
                if not _engine_up(host):
                    hostbed.start_engine(host.index)
        made.clean()


def _engine_up(host: Host) -> bool:
    try:
        with contextlib.closing(engine(host)) as client:
            return bool(client.ping())
    except docker.errors.DockerException:
        return False
