"""`gorchester up`'s Redis has a password: made once, kept 0600 under data_dir, on no command line."""

from __future__ import annotations

import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.redis_local import password
from shared.settings import with_password
from shared.storage.connection import connect
from tests.integration.test_up import Up, wait_until_up
from tests.support.procs import wait_for


@pytest.fixture
def up(tmp_path: Path, cluster: str, docker_cleanup: None) -> Iterator[Up]:
    launched = Up(tmp_path, cluster)
    yield launched
    launched.kill()


def raw_reply(port: int, command: bytes) -> bytes:
    """What Redis answers a client that has not authenticated (RESP inline command)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(command + b"\r\n")
        return conn.recv(200)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def proc_text(pid: int, name: str) -> str:
    try:
        return (Path(f"/proc/{pid}") / name).read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_up_starts_redis_with_a_password_every_process_uses(up: Up, cluster: str) -> None:
    up.start()
    children = wait_until_up(up)
    secret_file, config = up.data_dir / "redis" / "password", up.data_dir / "redis" / "redis.conf"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert (mode(secret_file), mode(config)) == (0o600, 0o600)

    assert raw_reply(up.redis_port, b"PING").startswith(b"-NOAUTH")
    assert raw_reply(up.redis_port, b"KEYS *").startswith(b"-NOAUTH")
    authenticated = connect(with_password(f"redis://127.0.0.1:{up.redis_port}/0", secret))
    assert authenticated.ping()
    # The cluster runs on it: API, scheduler and both agents (RQ's own connection too) authenticate.
    wait_for(lambda: len(up.running_tasks()) == 2, timeout=60, what="two running tasks")
    assert authenticated.scard(f"gorchester:{cluster}:nodes") == 2

    # The password is on no command line or initial environment, nor in up's output or its children's logs.
    for pid in children:
        assert secret not in proc_text(pid, "cmdline") and secret not in proc_text(pid, "environ"), children[pid]
    assert secret not in up.text()
    for log in (up.data_dir / "logs").iterdir():
        assert secret not in log.read_text(errors="replace"), log

    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=90) == 0, up.text()

    # A second `up` on the same data_dir keeps the password (and the data Redis persisted with it).
    up.start()
    wait_until_up(up)
    assert secret_file.read_text().strip() == secret
    assert raw_reply(up.redis_port, b"PING").startswith(b"-NOAUTH")
    assert connect(with_password(f"redis://127.0.0.1:{up.redis_port}/0", secret)).ping()


def test_up_uses_a_redis_the_user_names_as_it_is(up: Up, redis_server: Any) -> None:
    up.env["GORCHESTER_REDIS_URL"] = redis_server.url
    up.start()
    wait_for(lambda: "Press Ctrl-C to stop." in up.text(), timeout=60, what=f"`up` to be ready: {up.text()}")
    assert f"Redis  {redis_server.url}\n" in up.text()  # not "(embedded)"
    assert not (up.data_dir / "redis").exists()
    wait_for(lambda: len(up.running_tasks()) == 2, timeout=60, what="two running tasks")


def test_the_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first, path = password(tmp_path)
    path.chmod(0o644)
    again, _ = password(tmp_path)
    assert (again, mode(path)) == (first, 0o600)
    path.write_text("")
    assert password(tmp_path)[0] not in ("", first)
