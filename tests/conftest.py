"""Fixtures for integration tests: a real redis-server, a cluster name per test, cleanup by label."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.cluster import remove_cluster_objects
from cli.redis_local import server_argv
from shared.storage import Store
from shared.storage.connection import connect
from tests.support.procs import FAST_SETTINGS, Processes, free_port, wait_for


class RedisServer:
    """A redis-server of the test session's own, on a free loopback port, in a temporary folder."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            server_argv(self.port, self.workdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: connect(self.url).ping(), timeout=10, what="redis-server to start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make test installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster() -> str:
    """A cluster name of the test's own: its Redis keys and Docker objects never meet another test's."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_server: RedisServer, cluster: str) -> Store:
    return Store(connect(redis_server.url), cluster)


@pytest.fixture
def docker_cleanup(cluster: str) -> Iterator[None]:
    yield
    remove_cluster_objects(cluster, networks=True, volumes=True)


@pytest.fixture
def procs(redis_server: RedisServer, cluster: str, tmp_path: Path, docker_cleanup: None) -> Iterator[Processes]:
    """Processes wired to the test's Redis and cluster; killed (SIGKILL) and their containers removed after."""
    env = {**os.environ, **FAST_SETTINGS, "GORCHESTER_REDIS_URL": redis_server.url, "GORCHESTER_CLUSTER": cluster}
    processes = Processes(env, tmp_path)
    yield processes
    processes.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.integration)


# The multi-host fixtures (a host bed, its Redis, a cluster over it), for tests that ask for them.
from tests.support.multihost import bed_redis, hostbed, multihost  # noqa: E402, F401
