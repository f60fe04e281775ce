"""Shared parts of the benchmarks: a real cluster (redis + API + scheduler + 2 agents), Docker Swarm
as a baseline, timing, medians, the markdown table and the docs/benchmarks.md section writer.

Benchmarks run with the default settings (no FAST_SETTINGS; shared/defaults.py): heartbeat 1 s (2 s
before issue 12's host loss), a node is down after 3 missed beats, reconcile safety net 10 s, restart back-off base 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx

from cli.cluster import remove_cluster_objects
from cli.redis_local import password, server_argv, server_config
from shared import labels, redis_url
from shared.settings import with_password
from shared.storage import Store
from shared.storage.connection import connect
from tests.support.procs import ROOT, Processes, free_port, wait_for

IMAGE = "gorchester/busybox:latest"
COMMAND = ["sleep", "3600"]
POLL = 0.05  # seconds between polls of the API / the engine while timing (same for every system)
DOCS = ROOT / "docs" / "benchmarks.md"
NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def docker_client(engine: str | None = None) -> docker.DockerClient:
    """The machine's engine (DOCKER_HOST or its socket), or the engine at `engine` (a host of a bed)."""
    if engine is None:
        return docker.from_env(timeout=120)
    return docker.DockerClient(base_url=engine, timeout=120)


def docker_cli(engine: str | None = None) -> list[str]:
    """The docker command line for the machine's engine, or for the engine at `engine`."""
    return ["docker"] if engine is None else ["docker", "-H", engine]


# ---------------------------------------------------------------------------------------------
# Timing


def poll_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = POLL) -> Any:
    """Tight poll (POLL seconds) of `condition`; returns its first truthy value, fails after timeout."""
    return wait_for(condition, timeout=timeout, interval=interval, what=what)


@dataclass
class Samples:
    """Timings (seconds) of one measured quantity, in run order."""

    name: str
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        return f"{min(self.values):.2f}–{max(self.values):.2f}"

    def all(self) -> str:
        return ", ".join(f"{v:.2f}" for v in self.values)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Machine description and docs/benchmarks.md sections


def _meminfo_gib() -> str:
    with open("/proc/meminfo") as lines:
        for line in lines:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def machine() -> str:
    try:
        docker_version = docker_client().version()["Version"]
    except Exception:  # noqa: BLE001 - description only
        docker_version = "?"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores (nproc), {_meminfo_gib()} RAM, Docker Engine {docker_version}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"gorchester commit {commit}; run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
        "machine shared with other work"
    )


def marker(section: str, end: bool = False) -> str:
    return f"<!-- bench:{section}:{'end' if end else 'start'} -->"


def write_section(section: str, body: str, path: Path = DOCS) -> None:
    """Replace the text between this section's markers in docs/benchmarks.md; keep the rest."""
    start, end = marker(section), marker(section, end=True)
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    log(f"updated section {section!r} of {path}")


def arguments(
    description: str, default_runs: int = 5, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=default_runs, help="runs per measurement (medians reported)")
    parser.add_argument("--write", action="store_true", help="update this benchmark's section of docs/benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the cluster's process logs (path printed)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def load() -> str:
    """The machine's load averages, to note next to a measurement on a shared machine."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class OtherWork:
    """How much of the machine's CPU went to work other than this benchmark's (other people's, on a
    shared machine; kernel threads count as other work too) over a window, as a share of all cores.

    The machine's busy time (/proc/stat) less the benchmark's own: as root on cgroup v1, it moves itself
    into a cpuacct group of its own on entering, so every process it starts afterwards (engines, agents,
    `docker` clients) is counted there; `count` adds groups it does not start its processes in (the
    containers' cgroup parents of a host bed). Elsewhere the share is None: not told apart. A load
    average cannot say this: the benchmark's own container starts make most of it.
    """

    def __init__(self) -> None:
        self.group: Path | None = None
        self.counted: list[Path] = []

    def __enter__(self) -> OtherWork:
        if os.geteuid() == 0 and (CPUACCT / "cpuacct.usage").exists():
            group = CPUACCT / f"gorchester-bench-{os.getpid()}"
            try:
                group.mkdir()
                (group / "cgroup.procs").write_text(str(os.getpid()))
                self.group = group
            except OSError as exc:
                log(f"other work's CPU not told apart: {exc}")
        return self

    def __exit__(self, *_: object) -> None:
        if self.group is None:
            return
        with contextlib.suppress(OSError):
            (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(50):  # empty once every process started meanwhile is gone
            try:
                self.group.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        log(f"{self.group} still holds processes; not removed")

    def count(self, *groups: str) -> None:
        self.counted += [CPUACCT / group for group in groups]

    def mark(self) -> tuple[float, float, float]:
        """(wall, machine busy, ours) now, in seconds: the start of a window."""
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
        ours = 0.0
        for group in ([self.group] if self.group else []) + self.counted:
            with contextlib.suppress(OSError, ValueError):
                ours += int((group / "cpuacct.usage").read_text()) / 1e9
        return time.monotonic(), busy, ours

    def share(self, since: tuple[float, float, float]) -> float | None:
        """Other work's share of all cores since `since` (a `mark`)."""
        if self.group is None:
            return None
        now = self.mark()
        wall = now[0] - since[0]
        other = (now[1] - since[1]) - (now[2] - since[2])
        return max(other, 0.0) / (wall * (os.cpu_count() or 1)) if wall > 0 else None


# ---------------------------------------------------------------------------------------------
# A gorchester cluster of real processes


class Redis:
    """A redis-server of our own on a free loopback port, in a temporary folder, no persistence, with
    a password as a cluster's has (the URL carries it to every process). `bind` adds addresses (a
    host bed's gateway, where agents inside its hosts reach it); `url` is the loopback one."""

    def __init__(self, workdir: Path, bind: Sequence[str] = ("127.0.0.1",)):
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed")
        self.port = free_port()
        secret, _ = password(workdir)
        self.url = with_password(f"redis://127.0.0.1:{self.port}/0", secret)
        self.proc = subprocess.Popen(
            server_argv(self.port, workdir, persist=False, config=server_config(workdir, secret), bind=bind),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def store_and_processes(path: Path, prefix: str) -> Iterator[tuple[Store, Processes, dict[str, str]]]:
    """A Redis of the run's own, a Store on it under a fresh cluster name (`prefix` + 8 hex digits), and
    Processes to start on both, with their environment (none of the caller's GORCHESTER_*); all stopped
    at the end."""
    redis_server = Redis(path)
    cluster = f"{prefix}{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GORCHESTER_")}
    env.update({"GORCHESTER_REDIS_URL": redis_server.url, "GORCHESTER_CLUSTER": cluster})
    procs = Processes(env, path)
    try:
        wait_for(lambda: connect(redis_server.url).ping(), timeout=10, what="redis-server")
        yield Store(connect(redis_server.url), cluster), procs, env
    finally:
        procs.close()
        redis_server.close()


class Cluster:
    """API + scheduler + node-1/node-2 agents on one Redis, default settings, a unique cluster name."""

    engines: tuple[str | None, ...] = (None,)  # where its containers run: the machine's engine

    def __init__(self, workdir: Path, *, redis: Redis | None = None, prefix: str = "bench"):
        self.name = f"{prefix}{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.redis = redis if redis is not None else Redis(workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GORCHESTER_")}
        env.update({"GORCHESTER_REDIS_URL": self.redis.url, "GORCHESTER_CLUSTER": self.name})
        self.procs = Processes(env, workdir)
        self.http = httpx.Client(timeout=10)
        self.url = ""

    def start(self) -> Cluster:
        wait_for(lambda: redis_url.client(self.redis.url).ping(), timeout=10, what="redis-server")
        self.url = self.procs.api(free_port())
        self.procs.scheduler()
        for node, address in NODES.items():
            self.procs.agent(node, address)
        wait_for(lambda: self.ready_nodes() == sorted(NODES), timeout=60, what="two ready nodes")
        log(f"cluster {self.name} up (API {self.url}, logs in {self.workdir})")
        return self

    def ready_nodes(self) -> list[str]:
        nodes = self.http.get(f"{self.url}/v1/nodes").json()
        return sorted(n["id"] for n in nodes if n["status"] == "ready")

    def close(self) -> None:
        self.http.close()
        self.procs.close()
        self.redis.close()
        remove_cluster_objects(self.name, networks=True, volumes=True)

    # REST helpers -------------------------------------------------------------------------

    def create_service(self, name: str, replicas: int, network: str | None = None) -> None:
        body = {
            "service_name": name,
            "image": IMAGE,
            "replicas": replicas,
            "command": COMMAND,
            "restart_policy": "always",
            "network": network,
        }
        response = self.http.post(f"{self.url}/v1/services", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")

    def tasks(self, service: str) -> list[dict]:
        response = self.http.get(f"{self.url}/v1/tasks", params={"service": service})
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return response.json()

    def running(self, service: str, count: int) -> list[dict] | None:
        """The tasks when exactly `count` exist and all are running, else None."""
        tasks = self.tasks(service)
        if len(tasks) == count and all(t["state"] == "running" for t in tasks):
            return tasks
        return None

    def delete_service(self, service: str, timeout: float = 120) -> None:
        """Delete and wait until the API knows no task of it and its containers are gone.

        `sleep` as PID 1 ignores SIGTERM, so each stop job would wait out the 10 s grace period; the
        containers are force-removed here to keep cleanup (which is not timed) short.
        """
        self.http.delete(f"{self.url}/v1/services/{service}")
        selector = [f"{labels.CLUSTER}={self.name}", f"{labels.SERVICE}={service}"]
        for engine in self.engines:
            remove_labelled(selector, engine)
        wait_for(
            lambda: not self.tasks(service) and not any(labelled(selector, engine) for engine in self.engines),
            timeout=timeout,
            interval=0.2,
            what=f"service {service} to be gone",
        )


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gorchester-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"logs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def cluster(keep_logs: bool = False) -> Iterator[Cluster]:
    """A started cluster; every process is killed and every container removed on the way out."""
    with workdir(keep_logs) as path:
        running = Cluster(path)
        try:
            yield running.start()
        finally:
            running.close()


# ---------------------------------------------------------------------------------------------
# Docker Swarm baseline (single-node swarm on the same engine)

SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"


@contextmanager
def swarm() -> Iterator[Swarm]:
    state = docker_client().info()["Swarm"]["LocalNodeState"]
    if state != "inactive":
        raise SystemExit(f"docker swarm is already {state}; refusing to touch someone else's swarm")
    subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True)
    log("swarm initialised")
    try:
        yield Swarm()
    finally:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=False, capture_output=True)
        log("swarm left")


class Swarm:
    """A swarm's services, through its manager's engine (the machine's, or `manager`); `engines` are
    where its tasks' containers run (every node's engine)."""

    def __init__(self, manager: str | None = None, engines: Sequence[str | None] = (None,)) -> None:
        self.manager = manager
        self.engines = tuple(engines)
        self.client = docker_client(manager)
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"

    def create_service(self, name: str, replicas: int, *extra: str) -> None:
        subprocess.run(
            [
                *docker_cli(self.manager),
                "service",
                "create",
                "--detach",
                "--no-resolve-image",
                "--quiet",
                "--replicas",
                str(replicas),
                "--name",
                name,
                *extra,
                IMAGE,
                *COMMAND,
            ],
            check=True,
            capture_output=True,
        )

    def running_tasks(self, name: str) -> list[dict]:
        tasks = self.client.api.tasks(filters={"service": name, "desired-state": "running"})
        return [t for t in tasks if t["Status"]["State"] == "running"]

    def remove_service(self, name: str, timeout: float = 120) -> None:
        subprocess.run([*docker_cli(self.manager), "service", "rm", name], check=False, capture_output=True)
        selector = f"{SWARM_SERVICE_LABEL}={name}"
        for engine in self.engines:
            remove_labelled(selector, engine)  # skip the 10 s stop grace of `sleep`
        wait_for(
            lambda: not any(labelled(selector, engine) for engine in self.engines),
            timeout=timeout,
            interval=0.2,
            what=f"swarm service {name} to be gone",
        )


# ---------------------------------------------------------------------------------------------
# Plain docker run, for the floor


def docker_run_parallel(count: int, label: str, engines: Sequence[str | None]) -> None:
    """`count` × `docker run -d` (CLI) split over one client (thread) per entry of `engines` (the
    machine's engine for None; an engine may appear more than once), sequential within a client."""
    errors: list[BaseException] = []

    def worker(engine: str | None, share: int) -> None:
        try:
            for _ in range(share):
                subprocess.run(
                    [*docker_cli(engine), "run", "-d", "--label", label, IMAGE, *COMMAND],
                    check=True,
                    capture_output=True,
                )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    clients = len(engines)
    shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=worker, args=pair) for pair in zip(engines, shares, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def labelled(label: str | list[str], engine: str | None = None) -> list:
    """The containers (all states) with `label` on the machine's engine, or on `engine`."""
    return docker_client(engine).containers.list(all=True, filters={"label": label}, ignore_removed=True)


def remove_labelled(label: str | list[str], engine: str | None = None) -> None:
    for container in labelled(label, engine):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: its removal is under way already (Swarm removes a service's own)
                raise
