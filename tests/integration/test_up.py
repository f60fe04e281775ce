"""`gorchester up` as a user runs it: a whole local cluster from one command, stopped by one signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from shared import labels
from tests.support.procs import FAST_SETTINGS, TEST_IMAGE, free_port, wait_for

GORCHESTER = str(Path(sys.executable).parent / "gorchester")
COMPONENTS = {"redis", "api", "scheduler", "node-1", "node-2"}


class Up:
    """One `gorchester up` process, its output in a file, and the children it started."""

    def __init__(self, tmp_path: Path, cluster: str):
        self.api_port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            f"cluster_name: {cluster}\n"
            f"listen_addr: '127.0.0.1:{self.api_port}'\n"
            f"data_dir: '{self.data_dir}'\n"
            "services:\n"
            "  - service_name: loop\n"
            f"    image: {TEST_IMAGE}\n"
            "    replicas: 2\n"
            "    command: ['sh', '-c', 'while true; do sleep 1; done']\n"
            "    resources: {cpu_millicores: 50, memory_bytes: 16777216}\n"
        )
        self.output = tmp_path / "up.out"
        env = {key: value for key, value in os.environ.items() if key != "GORCHESTER_REDIS_URL"}
        self.env = {**env, **FAST_SETTINGS}
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        return [GORCHESTER, "up", "--config", str(self.config), "--nodes", "2", "--redis-port", str(self.redis_port)]

    def start(self) -> None:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv(), env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """pid -> command line of every live process whose parent is the launcher."""
        assert self.proc is not None
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                found[int(entry.name)] = cmdline
        return found

    def running_tasks(self) -> list[dict]:
        tasks = httpx.get(f"{self.url}/v1/tasks", timeout=2).json()
        return [task for task in tasks if task["service"] == "loop" and task["state"] == "running"]

    def kill(self) -> None:
        """After a failure: SIGKILL the launcher; its children die with it (parent-death signal)."""
        if self.proc is not None and self.proc.poll() is None:
            pids = list(self.children())
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path, cluster: str, docker_cleanup: None) -> Iterator[Up]:
    launched = Up(tmp_path, cluster)
    yield launched
    launched.kill()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def cluster_containers(cluster: str) -> list:
    return docker.from_env().containers.list(all=True, filters={"label": f"{labels.CLUSTER}={cluster}"})


def wait_until_up(up: Up) -> dict[int, str]:
    wait_for(lambda: "Press Ctrl-C to stop." in up.text(), timeout=60, what=f"`up` to be ready: {up.text()}")
    return wait_for(lambda: len(up.children()) == len(COMPONENTS) and up.children(), what="five children")


def test_up_runs_the_cluster_and_sigterm_stops_everything(up: Up, cluster: str) -> None:
    up.start()
    children = wait_until_up(up)
    text = up.text()
    assert up.url in text
    assert f"redis://127.0.0.1:{up.redis_port}/0 (embedded)" in text
    assert str(up.data_dir / "logs") in text
    assert "created loop" in text

    tasks = wait_for(lambda: len(up.running_tasks()) == 2 and up.running_tasks(), timeout=60,
                     what="two running tasks")
    assert {task["node"] for task in tasks} == {"node-1", "node-2"}
    assert len(cluster_containers(cluster)) == 2
    assert {path.name for path in (up.data_dir / "logs").iterdir()} == {f"{name}.log" for name in COMPONENTS}

    second = subprocess.run(up.argv(), env=up.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert f"already running at {up.url}" in second.stdout

    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=90) == 0, up.text()
    assert not [cmd for pid, cmd in children.items() if alive(pid)]
    assert cluster_containers(cluster) == []
    assert (up.data_dir / "redis" / "appendonlydir").is_dir()
    assert up.text().rstrip().endswith("stopped")


def test_a_child_that_dies_is_named_and_everything_stops(up: Up, cluster: str) -> None:
    up.start()
    children = wait_until_up(up)
    agent = next(pid for pid, cmd in children.items() if cmd.rstrip().endswith("NodeAgent node-2"))
    os.killpg(agent, signal.SIGKILL)

    assert up.proc is not None
    assert up.proc.wait(timeout=90) == 1, up.text()
    assert f"node-2 exited unexpectedly (status -9); see {up.data_dir / 'logs' / 'node-2.log'}" in up.text()
    assert not [cmd for pid, cmd in children.items() if alive(pid)]
    assert cluster_containers(cluster) == []


def test_sigterm_while_starting_stops_what_was_started(up: Up, cluster: str) -> None:
    up.start()
    children = wait_for(up.children, what="the first child")
    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=60) == 0, up.text()
    assert not [cmd for pid, cmd in children.items() if alive(pid)]
    assert "Press Ctrl-C" not in up.text()
