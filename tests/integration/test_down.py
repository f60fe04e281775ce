"""`gorchester down` stops what `gorchester up` started, found through up's pidfile under data_dir."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_up import (
    GORCHESTER,
    Up,
    alive,
    child_pid,
    cluster_containers,
    cluster_networks,
    held_port,
    wait_until_up,
)
from tests.support.procs import wait_for

ADMIN = "down-admin-9a3f"


@pytest.fixture
def launched(tmp_path: Path, cluster: str, docker_cleanup: None) -> Iterator[Up]:
    up = Up(tmp_path, cluster)
    yield up
    up.kill()


def down(up: Up, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GORCHESTER, "down", "--config", str(up.config), *extra], env=up.env,
                          capture_output=True, text=True, timeout=90)


def test_down_stops_the_cluster_up_started(launched: Up, cluster: str) -> None:
    up = launched
    up.env["GORCHESTER_ADMIN_TOKEN"] = ADMIN  # up's API requires it; up uses it for its own calls
    up.start()
    children = wait_until_up(up)
    pidfile = up.data_dir / "gorchester-up.pid"
    assert pidfile.read_text().strip() == str(up.proc.pid if up.proc else None)
    assert httpx.get(f"{up.url}/v1/tasks", timeout=5).status_code == 401

    def running() -> int:
        tasks = httpx.get(f"{up.url}/v1/tasks", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).json()
        return sum(task["state"] == "running" for task in tasks)

    wait_for(lambda: running() == 2, timeout=60, what="two running tasks")

    result = down(up)
    assert result.returncode == 0, result.stderr
    assert f"stopping {cluster}" in result.stdout and "stopped" in result.stdout
    # down returns only once up has exited: everything it started is gone.
    assert up.proc is not None and up.proc.wait(timeout=5) == 0
    assert not any(alive(pid) for pid in children)
    assert cluster_containers(cluster) == []
    assert cluster_networks(cluster) == []  # the service's network, made by an agent, goes too
    assert not pidfile.exists()

    again = down(up)
    assert again.returncode == 0
    assert "not running" in again.stdout


def test_down_stops_the_cluster_while_a_child_is_being_restarted(launched: Up, cluster: str) -> None:
    up = launched
    up.start()
    children = wait_until_up(up)
    wait_for(lambda: len(up.running_tasks()) == 2, timeout=60, what="two running tasks")
    api = child_pid(children, "api")
    assert api is not None
    os.killpg(api, signal.SIGKILL)
    # Another program takes the API's port: every restart fails until up gives a crash loop its name.
    with held_port(up.api_port):
        wait_for(lambda: "(restart 5); it keeps failing: 5 exits in a row" in up.text(), timeout=120,
                 what="up to report the API's crash loop")
        assert "api exited (status 3); restarting in 8.0s (restart 5)" in up.text()
        assert up.proc is not None and up.proc.poll() is None

        result = down(up)  # while up waits out the API's back-off
    assert result.returncode == 0, result.stderr
    assert up.proc.wait(timeout=5) == 0
    assert not any(alive(pid) for pid in up.children()) and not any(alive(pid) for pid in children)
    assert cluster_containers(cluster) == []
    assert not (up.data_dir / "gorchester-up.pid").exists()


def test_down_removes_a_stale_pidfile_and_signals_nothing(launched: Up, cluster: str) -> None:
    up = launched
    up.data_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])  # a live pid that is not a `gorchester up`
    try:
        (up.data_dir / "gorchester-up.pid").write_text(f"{sleeper.pid}\n")
        result = down(up)
        assert result.returncode == 0, result.stderr
        assert "stale pidfile" in result.stdout
        assert sleeper.poll() is None
        assert not (up.data_dir / "gorchester-up.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
