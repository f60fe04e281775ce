"""The local cluster's parts (Redis, API, scheduler, node agents) as children of one Launcher."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cli import redis_local
from cli.hostbed import HostBed, HostBedError
from cli.launcher import Child, Launcher
from cli.supervision import exit_reason
from shared import labels
from shared.config import Config
from shared.redis_url import sentinel_target
from shared.settings import PASSWORD_FILE_SETTING, redis_url_from_env, without_password

VENV_BIN = Path(sys.executable).parent  # children run from the venv the CLI itself runs from
STOP_GRACE = 10.0  # seconds a child gets to finish its work after SIGTERM
START_TIMEOUT = 30.0  # seconds each start-up step gets: Redis, the API, the node agents


class StartupError(Exception):
    """The cluster did not come up; the message is one line for the terminal."""


def api_address(config: Config) -> tuple[str, int]:
    """listen_addr with an empty host binds loopback: a local cluster is not for the network."""
    host, _, port = config.listen_addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def api_url(config: Config) -> str:
    host, port = api_address(config)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def health(url: str) -> dict | None:
    """The API's /v1/health body when it answers 200, else None."""
    try:
        response = httpx.get(f"{url}/v1/health", timeout=1.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def admin_headers() -> dict[str, str]:
    """The admin token the API is started with (GORCHESTER_ADMIN_TOKEN[_FILE]), for up's own calls."""
    from api.auth import Tokens

    token = Tokens.from_env().admin
    return {"Authorization": f"Bearer {token}"} if token else {}


def bed_name(data_dir: Path) -> str:
    """The host bed of the `up --hosts` whose data_dir this is (cli/hostbed.py: 6 characters)."""
    return "u" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:5]


class LocalCluster:
    def __init__(
        self, config: Config, nodes: int, redis_port: int | None, stop: threading.Event, hosts: int | None = None,
        redis_replicas: int = 0,
    ):
        self.config = config
        self.stop = stop  # set by a signal: waits give up at once so the shutdown is not delayed
        self.nodes = hosts or nodes
        self.hosts = hosts  # `--hosts N`: each node a host of its own (cli/hostbed.py), with its own engine
        self.bed: HostBed | None = None
        self.redis_port = redis_port
        self.redis_replicas = redis_replicas  # `--redis-replicas N`: N replicas and three sentinels beside the master
        self.data_dir = Path(config.data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self.url = api_url(config)
        self.redis_url = ""  # to show: never with a password (the children's env finds and opens Redis)
        self.embedded_redis: list[Child] = []  # the redis-servers (and sentinels) up started, stopped last
        env = {**os.environ, "GORCHESTER_CLUSTER": config.cluster_name, "PYTHONUNBUFFERED": "1"}
        self.launcher = Launcher(env, self.log_dir)

    def start_hosts(self) -> list[str]:
        """`--hosts N`: a bed of N hosts on this machine, each with its own engine, and the images the
        config names loaded into each (no registry is reachable). A bed a killed `up` of this data_dir
        left behind is removed first. Returns a line per image this machine's engine does not have."""
        assert self.hosts is not None
        name = bed_name(self.data_dir)
        if name in HostBed.existing():
            HostBed.load(name).destroy()
        try:
            self.bed = HostBed.create(name, self.hosts)
            return self.bed.load_images(sorted({spec.image for spec in self.config.services}))
        except HostBedError as exc:
            raise StartupError(str(exc)) from None

    def start_redis(self) -> None:
        """The Redis GORCHESTER_REDIS_URL names when it answers (with GORCHESTER_REDIS_PASSWORD_FILE's
        password if set), else an embedded one requiring a password kept under data_dir. On a host bed
        always an embedded one, which the hosts reach on the bed's gateway."""
        given = "" if self.bed is not None else os.environ.get("GORCHESTER_REDIS_URL", "")
        if given and redis_local.answers(redis_url_from_env(os.environ)):
            url = given  # the children inherit it, and any password file setting, as they are
        else:
            if given:
                print(
                    f"GORCHESTER_REDIS_URL {without_password(given)} does not answer PING (down, or it needs a "
                    f"password: in the URL or in {PASSWORD_FILE_SETTING}); starting an embedded redis-server"
                )
            binary = shutil.which("redis-server")
            if binary is None:
                raise StartupError("redis-server is not installed (deploy/setup.sh installs it)")
            port = redis_local.pick_port(self.redis_port)
            bind = ("127.0.0.1",) if self.bed is None else ("127.0.0.1", self.bed.gateway)
            if self.redis_replicas:
                argvs, url, password_file = redis_local.replicated_argvs(
                    binary, self.data_dir / "redis", port, self.redis_replicas, bind=bind
                )
                self.embedded_redis = [
                    self.launcher.start(name, argv, restart_after=redis_local.rejoin_after(name))
                    for name, argv in argvs.items()
                ]
            else:
                child, url, password_file = redis_local.start_embedded(
                    self.launcher, binary, self.data_dir / "redis", port, bind=bind
                )
                self.embedded_redis = [child]
            self.launcher.env[PASSWORD_FILE_SETTING] = str(password_file)
        self.launcher.env["GORCHESTER_REDIS_URL"] = url
        self.redis_url = without_password(url)
        self._wait(self.redis_answers, "redis-server to answer PING")
        if self.redis_replicas and self.embedded_redis:
            target = sentinel_target(url)
            assert target is not None
            secret = password_file.read_text(encoding="utf-8").strip()
            self._wait(lambda: redis_local.settled(target.sentinels, secret, self.redis_replicas),
                       "the sentinels to know the master, each other and every replica in sync")

    def redis_answers(self) -> bool:
        """Whether the cluster's Redis answers PING to a client that finds it as the children do."""
        return redis_local.answers(redis_url_from_env(self.launcher.env))

    def start_components(self) -> None:
        host, port = api_address(self.config)
        uvicorn = [str(VENV_BIN / "uvicorn"), "api.app:app", "--host", host, "--port", str(port)]
        self.launcher.start("api", uvicorn)
        self.launcher.start("scheduler", [sys.executable, "-m", "scheduler"])
        for index in range(1, self.nodes + 1):
            node = f"node-{index}"
            agent = [str(VENV_BIN / "rq"), "worker", "-w", "worker.agent.NodeAgent", node]
            if self.bed is None:  # every node on this machine's engine, each with an address of its own
                self.launcher.start(node, agent, {"GORCHESTER_NODE_ADDRESS": f"127.0.0.{index + 1}"})
            else:  # inside its host, against the host's engine only, as on a machine of its own
                redis_url = self.launcher.env["GORCHESTER_REDIS_URL"]
                self.launcher.start(node, self.bed.command_in(index, agent), self.bed.agent_env(index, redis_url))
        self._wait(lambda: health(self.url) is not None, "the API to answer /v1/health")
        # Applying before every agent is ready would pack the first replicas onto the early nodes.
        wanted = {f"node-{index}" for index in range(1, self.nodes + 1)}
        self._wait(lambda: wanted <= self.ready_nodes(), f"{self.nodes} node agents to be ready")

    def ready_nodes(self) -> set[str]:
        try:
            nodes = httpx.get(f"{self.url}/v1/nodes", headers=admin_headers(), timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return set()
        return {node["id"] for node in nodes if isinstance(node, dict) and node.get("status") == "ready"}

    def apply(self, text: str) -> str:
        """The file's own text goes to the API, which validates and stores it as the desired state.

        Returns what changed, e.g. `created web, ticker`."""
        try:
            response = httpx.post(
                f"{self.url}/v1/apply", content=text.encode(),
                headers={"Content-Type": "application/yaml", **admin_headers()},
                timeout=30.0,
            )
        except httpx.HTTPError as exc:
            raise StartupError(f"POST {self.url}/v1/apply failed: {exc}") from None
        if response.status_code >= 300:
            detail = " ".join(response.text.split())[:500]
            raise StartupError(f"POST {self.url}/v1/apply answered {response.status_code}: {detail}")
        try:
            outcome = response.json()
        except ValueError:
            outcome = {}
        changes = [
            f"{what} {', '.join(names)}"
            for what, names in (outcome.items() if isinstance(outcome, dict) else [])
            if isinstance(names, list) and names
        ]
        return "; ".join(changes) or "no changes"

    def dead_child(self) -> Child | None:
        return self.launcher.first_exited()

    def shutdown(self) -> list[str]:
        """Stop in dependency order: nothing may place or run containers while they are removed,
        and Redis goes last so every writer finishes first. Returns one-line warnings."""
        ours = [child for child in self.launcher.children if child not in self.embedded_redis]
        self.launcher.stop(ours, STOP_GRACE)
        if self.bed is not None:  # its engines, containers and namespaces, all of it
            warnings = []
            try:
                self.bed.destroy()
            except HostBedError as exc:
                warnings.append(f"could not remove the host bed {self.bed.name}: {exc}")
        else:
            warnings = remove_cluster_objects(self.config.cluster_name, networks=True)
        self.launcher.stop(self.launcher.children, STOP_GRACE)
        return warnings

    def _wait(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stop.is_set():
            dead = self.dead_child()
            if dead is not None:
                raise StartupError(
                    f"{dead.name} {exit_reason(dead.proc.returncode)} while waiting for {what}; see {dead.log_path}"
                )
            if condition():
                return
            self.stop.wait(0.1)
        if self.stop.is_set():
            return
        raise StartupError(f"timed out after {START_TIMEOUT:g}s waiting for {what}; logs in {self.log_dir}")


def remove_cluster_objects(cluster: str, *, networks: bool = False, volumes: bool = False) -> list[str]:
    """Remove every container labelled for the cluster, whichever node agent made it, and with the
    flags its networks and named volumes; returns warnings. `up` removes networks (they hold nothing)
    and keeps volumes (they hold user data)."""
    import docker
    from docker.errors import APIError, DockerException, NotFound

    selector = {"label": f"{labels.CLUSTER}={cluster}"}
    try:
        client = docker.from_env()
        containers = client.containers.list(all=True, filters=selector, ignore_removed=True)
    except DockerException as exc:
        return [f"could not list the cluster's containers: {exc}"]
    warnings = []
    for container in containers:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except DockerException as exc:
            warnings.append(f"could not remove container {container.name}: {exc}")
    if networks:
        for network in client.networks.list(filters=selector):
            # A named network may be shared by the clusters of an engine; another may still use it.
            with contextlib.suppress(APIError):
                network.remove()
    if volumes:
        for volume in client.volumes.list(filters=selector):
            with contextlib.suppress(NotFound):
                volume.remove(force=True)
    return warnings
