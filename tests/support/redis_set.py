"""A replicated Redis of real processes for tests and benchmarks: a master, two replicas and three
sentinels as `gorchester up --redis-replicas 2` runs them (cli/redis_local.replicated_argvs), any of
which can be SIGKILLed and started again with its own command line and data."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis

from cli.redis_local import MASTER_NAME, replicated_argvs, settled
from shared.redis_url import sentinel_target
from shared.settings import with_password
from tests.support.procs import free_port, wait_for

SERVERS = ("redis", "redis-replica-1", "redis-replica-2")  # the data servers; "redis" is the first master
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


class RedisSet:
    """The processes (output in `workdir`, data under `workdir/redis`) and the cluster's
    `redis+sentinel://` URL with the password (`url`)."""

    def __init__(self, workdir: Path, bind: Sequence[str] = ("127.0.0.1",)):
        self.workdir = workdir
        self.argvs, url, password_file = replicated_argvs("redis-server", workdir / "redis", free_port(), 2, bind=bind)
        self.secret = password_file.read_text().strip()
        self.url = with_password(url, self.secret)
        target = sentinel_target(self.url)
        assert target is not None
        self.sentinels = target.sentinels
        self.address = bind[-1]
        self.procs: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str | None = None) -> None:
        """Start `name`, or every process that is not running."""
        for each in [name] if name else list(self.argvs):
            if each in self.procs and self.procs[each].poll() is None:
                continue
            with open(self.log_path(each), "ab") as out:
                self.procs[each] = subprocess.Popen(self.argvs[each], stdout=out, stderr=subprocess.STDOUT,
                                                    start_new_session=True)

    def kill(self, name: str) -> None:
        """SIGKILL one process (and wait for it)."""
        proc = self.procs.get(name)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def alive(self, names: Sequence[str] = SERVERS) -> bool:
        return all(name in self.procs and self.procs[name].poll() is None for name in names)

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)

    def port(self, name: str) -> int:
        argv = self.argvs[name]
        return int(argv[argv.index("--port") + 1])

    def sentinel(self, index: int = 0) -> redis.Redis:
        host, port = self.sentinels[index]
        return redis.Redis(host, port, password=self.secret, decode_responses=True, socket_timeout=2)

    def server(self, name: str) -> redis.Redis:
        """A client of one data server, not following the sentinels."""
        return redis.Redis(self.address, self.port(name), password=self.secret, decode_responses=True,
                           socket_timeout=2)

    def plain_url(self, name: str) -> str:
        """A plain `redis://` URL of one data server (no sentinels)."""
        return with_password(f"redis://{self.address}:{self.port(name)}/0", self.secret)

    def master(self) -> str:
        """The data server the sentinels name master (asked of the first that answers; LookupError: none)."""
        error: Exception | None = None
        for index in range(len(self.sentinels)):
            try:
                with self.sentinel(index) as one:
                    _, port = one.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError as exc:
                error = exc
                continue
            return next(name for name in SERVERS if self.port(name) == int(port))
        raise LookupError(f"no sentinel answers: {error}")

    def settled(self) -> bool:
        """Every sentinel knows the master, the two other sentinels and both replicas in sync (as `gorchester
        up` waits for it): only then is a kill a clean failover."""
        return settled(self.sentinels, self.secret, 2)

    def wait_settled(self, timeout: float = 60) -> None:
        wait_for(self.settled, timeout=timeout, what="master, two replicas and three sentinels to know each other")
