"""A thin adapter over the docker SDK: the few engine operations the agent needs, one error type.

Every engine failure surfaces as EngineError with a human reason, so jobs can record it on the task
without knowing docker's exception zoo.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
from docker.constants import DEFAULT_TIMEOUT_SECONDS
from docker.models.containers import Container
from docker.models.networks import Network

from shared import labels
from shared.node_requests import OutputTail
from shared.podnet import gateway
from shared.records import PublishedPort
from worker.container_output import ContainerOutput

STOP_GRACE_SECONDS = 10
PING_TIMEOUT = 2.0  # seconds: a heartbeat finds a hung engine as fast as a dead one
ENGINE_ANSWER_SECONDS = 10.0  # for the engine to start answering a logs request
WAIT_INTERVAL = 1.0  # seconds between calls of an exec's `waiting`


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None: still running at the timeout, or given up on
    output: bytes  # the last `limit` bytes
    truncated: bool  # output came before those, and is not in `output`

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


class EngineError(Exception):
    """The engine refused or could not be reached; the message is the reason to show a user."""


class ContainerGone(EngineError):
    """The engine does not know the container (any more)."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise EngineError(f"{what}: {_reason(exc)}") from exc


def connect_from_env(connections: int | None = None) -> docker.DockerClient:
    """A client of the engine DOCKER_HOST names (else the local socket), with a pool of `connections` (the
    SDK's default otherwise). Making it asks the engine for its API version: within PING_TIMEOUT, as a
    heartbeat may be the one asking; calls then get docker's own."""
    pool = {} if connections is None else {"max_pool_size": connections}
    client = docker.from_env(timeout=PING_TIMEOUT, **pool)
    client.api.timeout = DEFAULT_TIMEOUT_SECONDS
    return client


class Engine:
    """The Docker adapter (worker/container_engine.py's ContainerEngine). The engine's client is made on
    first use, and again after a failure to make it: an agent starts (and reports its engine
    unreachable) while its engine is down, as when a host boots."""

    # Containers a batch makes at once: the engine's create/start calls overlap (as Swarm's and the
    # kubelet's do).
    parallel_starts = 3

    def __init__(self, connect: Callable[[], docker.DockerClient], cluster: str, node_id: str):
        self._connect = connect
        self._client: docker.DockerClient | None = None
        self._connecting = threading.Lock()
        self.cluster = cluster
        self.node_id = node_id

    @classmethod
    def from_env(cls, cluster: str, node_id: str, connections: int | None = None) -> Engine:
        """The engine DOCKER_HOST names (else the local socket); `connections` sizes the client's pool of
        connections to it (the SDK's default otherwise)."""
        return cls(functools.partial(connect_from_env, connections), cluster, node_id)

    @property
    def client(self) -> docker.DockerClient:
        with self._connecting:
            if self._client is None:
                with engine_errors("cannot reach the docker engine"):
                    self._client = self._connect()
            return self._client

    def health(self) -> str | None:
        """None when the engine answers a ping within PING_TIMEOUT; else why not (for the node's status)."""
        try:
            api = self.client.api
            api.get(f"{api.base_url}/_ping", timeout=PING_TIMEOUT).raise_for_status()
        except EngineError as exc:
            return str(exc)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return _reason(exc) or type(exc).__name__
        return None

    def ensure_image(self, image: str) -> None:
        """Pull only when absent: a local image must work with no registry in reach."""
        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise EngineError(f"inspect image {image}: {_reason(exc)}") from exc
        with engine_errors(f"image pull failed: {image}"):
            self.client.images.pull(image)

    @functools.cached_property
    def engine_id(self) -> str:
        """The engine's own ID (`docker info`): agents sharing an engine share it, whatever their node."""
        with engine_errors("engine info"):
            return str(self.client.info()["ID"])

    def ensure_network(self, name: str, subnet_for: Callable[[list[str]], str]) -> tuple[str, str]:
        """(id, subnet) of the bridge network `name`, made when missing with the subnet `subnet_for` picks
        (given the subnets of the engine's other networks, which it must not overlap); its duplicates repaired.

        Docker allows two networks of one name, and then refuses to start a container on either
        (`network ... is ambiguous`), even one given the network's id. Agents sharing this engine
        must call this under the network's lock (StatusWrites.engine_lock, worker/node.py) so only one
        creates it; a duplicate made anyway (by another process, or before this lock) is settled here.
        """
        with engine_errors(f"network {name}"):
            networks = self._networks(name)
            if not networks:
                subnet = subnet_for(self._subnets())
                pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway(subnet))
                ipam = docker.types.IPAMConfig(pool_configs=[pool])
                try:
                    self.client.networks.create(
                        name, driver="bridge", ipam=ipam, check_duplicate=True, labels={labels.CLUSTER: self.cluster}
                    )
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # 409: made meanwhile by someone outside our lock
                        raise
                networks = self._networks(name)
            winner = self._settle(networks)
            return winner.id, _subnet_of(winner.attrs)

    def _subnets(self) -> list[str]:
        """The subnets of every network on the engine (a new one must overlap none)."""
        return [subnet for network in self.client.api.networks() if (subnet := _subnet_of(network))]

    def duplicate_networks(self) -> list[str]:
        """Names of this cluster's networks that exist more than once on the engine."""
        with engine_errors("list networks"):
            mine = self.client.networks.list(filters={"label": f"{labels.CLUSTER}={self.cluster}"})
            names = Counter(network.name for network in mine)
        return sorted(name for name, count in names.items() if count > 1)

    def _settle(self, networks: list[Network]) -> Network:
        """The one of same-named networks everyone uses (the oldest); the others of this cluster are
        removed once no container is attached to them (until then the engine refuses, and a later
        call tries again)."""
        winner = min(networks, key=lambda network: (network.attrs.get("Created", ""), network.id))
        for network in networks:
            if network.id != winner.id and (network.attrs.get("Labels") or {}).get(labels.CLUSTER) == self.cluster:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    network.remove()
        return winner

    def _networks(self, name: str) -> list[Network]:
        # The engine's name filter matches substrings; only the exact name counts.
        return [network for network in self.client.networks.list(names=[name]) if network.name == name]

    def ensure_volume(self, name: str) -> None:
        with engine_errors(f"volume {name}"):
            try:
                self.client.volumes.get(name)
            except docker.errors.NotFound:
                self.client.volumes.create(name, labels={labels.CLUSTER: self.cluster})

    def run(self, args: dict[str, Any]) -> Container:
        """Create and start a container from `containers.container_args` output."""
        with engine_errors(f"create container {args['name']}"):
            container = self.client.containers.create(**args)
        try:
            self.start(container)
        except EngineError:
            # A created-but-unstartable container (say, a port clash) must not be adopted by a re-run.
            self.remove(container)
            raise
        return container

    def start(self, container: Container) -> None:
        with engine_errors(f"start container {container.name}"):
            container.start()

    def stop(self, container: Container) -> None:
        """Stop with a grace period and keep the container (a stop the user asked for)."""
        with engine_errors(f"stop container {container.name}"):
            container.stop(timeout=STOP_GRACE_SECONDS)

    def remove(self, container: Container) -> None:
        """Stop with a grace period, then remove; a container already gone (or going) is not an error.
        Returns once it is gone: its record may then go, and its name is free."""
        try:
            container.stop(timeout=STOP_GRACE_SECONDS)
            container.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            # The sweep and a stop job may remove the same container; the second one finds it going,
            # and waits for the first (returning at once would let a record go before its container).
            if exc.status_code == 409 and "in progress" in _reason(exc):
                self._wait_removed(container)
                return
            raise EngineError(f"remove container {container.name}: {_reason(exc)}") from exc
        except requests.RequestException as exc:
            raise EngineError(f"remove container {container.name}: {exc}") from exc

    def _wait_removed(self, container: Container) -> None:
        with engine_errors(f"remove container {container.name}"):
            try:
                self.client.api.wait(container.id, timeout=STOP_GRACE_SECONDS * 3, condition="removed")
            except docker.errors.NotFound:
                return

    def containers(self, tasks: Collection[str] | None = None) -> list[Container]:
        """This node's containers of the cluster (all states), or only those of `tasks` (task ids).

        With `tasks`, one listing and an inspect only of theirs: the SDK's listing inspects every
        container it lists, one call each in sequence, which on a node running many replicas was most
        of a start batch's time before its first start (say, after a host loss moved replicas onto it).
        A container removed meanwhile (a stop job, `docker rm`) is skipped rather than failing the
        listing, and with it a whole batch of starts.
        """
        selector = [f"{labels.CLUSTER}={self.cluster}", f"{labels.NODE}={self.node_id}"]
        with engine_errors("list containers"):
            if tasks is None:
                return self.client.containers.list(all=True, filters={"label": selector}, ignore_removed=True)
            if isinstance(tasks, str):  # a str is a collection too: of letters, which name no task
                raise TypeError(f"containers({tasks!r}): give a collection of task ids")
            wanted = set(tasks)
            found = []
            for summary in self.client.api.containers(all=True, filters={"label": selector}):
                if (summary.get("Labels") or {}).get(labels.TASK) in wanted:
                    with contextlib.suppress(docker.errors.NotFound):
                        found.append(self.client.containers.get(summary["Id"]))
            return found

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """A container's inspect document, or None once it is gone."""
        with engine_errors(f"inspect container {container_id}"):
            try:
                return self.client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None

    def logs(self, container_id: str, *, tail: int | str, follow: bool, multiplexed: bool) -> ContainerOutput:
        """A container's output stream (stdout and stderr, as `docker logs` prints them), `multiplexed`
        unless the container has a TTY; a container the engine does not know raises ContainerGone."""
        api = self.client.api
        url = f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs"
        query = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": tail}
        with engine_errors(f"logs of container {container_id[:12]}"):
            # The timeout bounds the engine's answer (its headers); the stream itself is read
            # without one (worker/container_output.py).
            response = api.get(url, params=query, stream=True, timeout=ENGINE_ANSWER_SECONDS)
            if response.status_code == 404:
                response.close()
                raise ContainerGone(f"container {container_id[:12]} no longer exists")
            if not response.ok:
                reason = response.text[:500]
                response.close()
                raise EngineError(f"logs of container {container_id[:12]}: {response.status_code} {reason}")
        return ContainerOutput(response, multiplexed)

    def stats(self, container_id: str) -> dict[str, Any]:
        """The engine's stats document of a container, one reading (`docker stats --no-stream`)."""
        with engine_errors(f"stats of container {container_id[:12]}"):
            stats: dict[str, Any] = self.client.api.stats(container_id, stream=False)
            return stats

    def events(self, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The engine's event stream (`docker events`), decoded, as `filters` select."""
        with engine_errors("events"):
            stream: Iterator[dict[str, Any]] = self.client.events(decode=True, filters=filters)
            return stream

    def exec(
        self, container_id: str, argv: list[str], timeout: float, *, limit: int,
        waiting: Callable[[], bool] = lambda: True,
    ) -> ExecResult:
        """Run `argv` in a running container (no shell added): its exit code and the last `limit` bytes
        of its output (stdout and stderr interleaved).

        The exec runs on a thread of its own so a hung command costs its caller only `timeout`;
        `waiting` is called every WAIT_INTERVAL seconds meanwhile, and returning False gives up early.
        A command given up on keeps running in the container (the engine cannot stop an exec); its
        output is no longer read.
        """
        tail = OutputTail(limit)
        lock = threading.Lock()
        opened: list[Any] = []
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                exec_id = self.client.api.exec_create(container_id, argv, stdout=True, stderr=True)["Id"]
                stream = self.client.api.exec_start(exec_id, stream=True)
                opened.append(stream)
                for piece in stream:
                    with lock:
                        tail.add(piece)
                outcome["exit_code"] = self.client.api.exec_inspect(exec_id).get("ExitCode")
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run, name=f"exec-{container_id[:12]}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
            thread.join(min(WAIT_INTERVAL, left))
            if thread.is_alive() and not waiting():
                break
        if thread.is_alive():
            for stream in opened:  # ends the reading thread: its socket is shut down
                with contextlib.suppress(Exception):
                    stream.close()
            with lock:
                return ExecResult(None, tail.value(), tail.truncated)
        if "error" in outcome:
            raise EngineError(f"exec in {container_id[:12]}: {_reason(outcome['error'])}")
        return ExecResult(outcome.get("exit_code"), tail.value(), tail.truncated)

    def published_ports(self, container: Container) -> list[PublishedPort]:
        with engine_errors(f"inspect container {container.name}"):
            container.reload()
        return published_ports(container.attrs)


def _subnet_of(attrs: dict[str, Any]) -> str:
    """The (first) IPv4 subnet of a network from its inspect or list document ('' when it has none)."""
    for pool in ((attrs.get("IPAM") or {}).get("Config") or []):
        subnet = str((pool or {}).get("Subnet") or "")
        if subnet and ":" not in subnet:
            return subnet
    return ""


def container_gen(container: Container) -> int:
    return int(container.labels.get(labels.GEN, "0"))


def container_incarnation(container: Container) -> str:
    """The incarnation of the task record the container was made for ("" before records had one)."""
    return str(container.labels.get(labels.INCARNATION, ""))


def networks_of(attrs: dict[str, Any]) -> list[str]:
    """The names of the networks a container is on, from its inspect document."""
    return list((attrs.get("NetworkSettings") or {}).get("Networks") or {})


def container_address(attrs: dict[str, Any]) -> str | None:
    """The container's IP address on its (bridge) network from an inspect document; None without one."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    for network in networks.values():
        if (network or {}).get("IPAddress"):
            return str(network["IPAddress"])
    return None


def published_ports(attrs: dict[str, Any]) -> list[PublishedPort]:
    """The host bindings an inspected container really got (the engine fills in random ports)."""
    result = []
    for key, bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, protocol = key.partition("/")
        for binding in bindings or []:
            result.append(
                PublishedPort(
                    host_ip=binding.get("HostIp", ""),
                    host_port=int(binding["HostPort"]),
                    container_port=int(port),
                    protocol=protocol or "tcp",
                )
            )
    return result
