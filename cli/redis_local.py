"""Find the Redis a local cluster uses: the one GORCHESTER_REDIS_URL names if it answers, else our own."""

from __future__ import annotations

import socket
from pathlib import Path

import redis

from cli.launcher import Child, Launcher
from shared.store import connect

DEFAULT_PORT = 6379


def answers(url: str) -> bool:
    try:
        return bool(connect(url, timeout=1.0).ping())
    except (redis.RedisError, ValueError, OSError):
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(requested: int | None) -> int:
    """The requested port as is (a busy one fails loudly later), else 6379 when free, else any free port."""
    if requested is not None:
        return requested
    return DEFAULT_PORT if port_free(DEFAULT_PORT) else free_port()


def server_argv(port: int, data_dir: Path, *, persist: bool = True, binary: str = "redis-server") -> list[str]:
    """A loopback redis-server in the foreground; with `persist`, an append-only file under `data_dir`
    (fsync every second) that outlives the process. Tests and benchmarks start theirs from here too."""
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    return [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        *persistence,
        "--save", "",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip


def start_embedded(launcher: Launcher, binary: str, data_dir: Path, port: int) -> tuple[Child, str]:
    """A redis-server on loopback whose append-only file under `data_dir` outlives the cluster."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return launcher.start("redis", server_argv(port, data_dir, binary=binary)), f"redis://127.0.0.1:{port}/0"
