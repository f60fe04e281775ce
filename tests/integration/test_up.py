"""`gorchester up` as a user runs it: a whole local cluster from one command, stopped by one signal."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from cli.launcher import Launcher
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
            # A network that does not exist yet, made by the first of the two agents sharing this engine.
            f"    network: {cluster}-net\n"
        )
        self.output = tmp_path / "up.out"
        env = {key: value for key, value in os.environ.items() if key != "GORCHESTER_REDIS_URL"}
        self.env = {**env, **FAST_SETTINGS}
        self.proc: subprocess.Popen | None = None
        self.options: list[str] = []

    def argv(self) -> list[str]:
        return [GORCHESTER, "up", "--config", str(self.config), "--nodes", "2", "--redis-port", str(self.redis_port),
                *self.options]

    def start(self) -> None:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv(), env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def log_tails(self, prefixes: tuple[str, ...], lines: int = 40) -> str:
        """The last `lines` of each child's log whose name starts with one of `prefixes`, for a failure message."""
        tails = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            if path.name.startswith(prefixes):
                tails.append(f"== {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

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


def cluster_networks(cluster: str) -> list:
    return docker.from_env().networks.list(filters={"label": f"{labels.CLUSTER}={cluster}"})


CHILD_COMMANDS = {  # how each kind of child shows in /proc/PID/cmdline
    "redis": "redis-server ",
    "api": "/uvicorn api.app:app ",
    "scheduler": " -m scheduler",
    "node-1": " worker.agent.NodeAgent node-1",
}


def child_pid(children: dict[int, str], name: str) -> int | None:
    found = [pid for pid, cmd in children.items() if CHILD_COMMANDS[name] in f" {cmd} "]
    assert len(found) <= 1, children
    return found[0] if found else None


def running_containers(cluster: str) -> set[tuple[str, str]]:
    """(id, start time) of each running container: one restarted in place would show a new start time."""
    return {
        (container.id, container.attrs["State"]["StartedAt"])
        for container in cluster_containers(cluster)
        if container.status == "running"
    }


def all_at_desired_replicas(up: Up) -> bool:
    services = httpx.get(f"{up.url}/v1/services", timeout=2).json()
    statuses = [service["status"] for service in services]
    return bool(statuses) and all(status["running_replicas"] == status["desired_replicas"] for status in statuses)


def ready_nodes(up: Up) -> set[str]:
    return {node["id"] for node in httpx.get(f"{up.url}/v1/nodes", timeout=2).json() if node["status"] == "ready"}


@contextlib.contextmanager
def held_port(port: int) -> Iterator[socket.socket]:
    """A socket listening on the port (as another program would), so a child binding it fails."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, never past a listener
        wait_for(lambda: sock.bind(("127.0.0.1", port)) is None, what=f"port {port} to be free")
        sock.listen()
        yield sock


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


def test_up_with_redis_replicas_fails_over_by_itself(up: Up, cluster: str) -> None:
    """`--redis-replicas 2`: a master, two replicas and three sentinels beside the cluster. SIGKILL of the
    master: /v1/health names another within seconds, the replicas keep running, the launcher starts the
    killed server again and it rejoins as a replica; SIGTERM stops all of it."""
    up.options = ["--redis-replicas", "2"]
    up.start()
    wait_for(lambda: "Press Ctrl-C to stop." in up.text(), timeout=90, what=f"`up` to be ready: {up.text()}")
    assert "redis+sentinel://" in up.text()

    def redis_health() -> dict:
        return dict(httpx.get(f"{up.url}/v1/health", timeout=2).json()["redis"])

    first = wait_for(lambda: (h := redis_health())["replicas_in_sync"] == 2 and h, timeout=60,
                     what="two replicas in sync")["master"]
    # redis-server shows itself as `redis-server HOST:PORT`, a sentinel as `... [sentinel]`.
    redis = {pid: cmd.split()[1] for pid, cmd in up.children().items() if "redis-server" in cmd}
    servers = {address: pid for pid, address in redis.items() if "[sentinel]" not in up.children()[pid]}
    assert (len(servers), len(redis) - len(servers)) == (3, 3), up.children()
    wait_for(lambda: len(up.running_tasks()) == 2, timeout=60, what="two running tasks")
    master_pid = servers[first]
    os.kill(master_pid, signal.SIGKILL)
    wait_for(lambda: redis_health()["master"] != first, timeout=30, what="another master named")
    try:
        wait_for(lambda: redis_health()["replicas_in_sync"] == 2, timeout=60,
                 what="the killed server started again and following the new master")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{redis_health()}\n{up.log_tails(('redis', 'sentinel'))}") from None
    assert len(up.running_tasks()) == 2

    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=90) == 0, up.text()
    assert cluster_containers(cluster) == []


def test_a_child_that_dies_is_started_again_and_the_containers_keep_running(up: Up, cluster: str) -> None:
    # The cluster's own grace for a silent node, long enough for a restarted agent to be back in it
    # on a busy machine: a node gone for longer is lost by design and its replicas move.
    up.env |= {"GORCHESTER_HEARTBEAT_INTERVAL": "1", "GORCHESTER_HEARTBEAT_MISSES": "10"}
    up.start()
    wait_until_up(up)
    replicas = 2
    wait_for(lambda: len(up.running_tasks()) == replicas, timeout=60, what="two running tasks")
    containers = running_containers(cluster)
    assert len(containers) == replicas

    for restarts, name in enumerate(["scheduler", "node-1", "api", "redis"], start=1):
        replicas += 1
        containers = kill_and_heal(up, cluster, name, containers, replicas)
        assert up.text().count("restarting in") == restarts  # nothing else died meanwhile

    children = up.children()
    assert up.proc is not None
    up.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert up.proc.wait(timeout=90) == 0, up.text()
    assert not [cmd for pid, cmd in children.items() if alive(pid)]
    assert cluster_containers(cluster) == []


def kill_and_heal(
    up: Up, cluster: str, name: str, containers: set[tuple[str, str]], replicas: int
) -> set[tuple[str, str]]:
    """SIGKILL the child `name`: it is started again, `containers` keep running, and the cluster heals
    and scales to `replicas`. Returns the running containers then."""
    killed = child_pid(up.children(), name)
    assert killed is not None
    os.killpg(killed, signal.SIGKILL)
    wait_for(lambda: f"{name} exited (killed by SIGKILL); restarting in 0.5s (restart 1)" in up.text(),
             what=f"up to notice {name} died")
    again = wait_for(lambda: len(up.children()) == len(COMPONENTS) and child_pid(up.children(), name),
                     timeout=60, what=f"{name} to be started again")
    assert again != killed
    assert containers <= running_containers(cluster), f"a container stopped when {name} died"
    assert f"{name} exited (killed by SIGKILL)" in (up.data_dir / "logs" / f"{name}.log").read_text()

    # Healed: the API answers, the service is at its desired replicas, and a change is carried out.
    wait_for(lambda: all_at_desired_replicas(up), timeout=60, what=f"every service at its replicas after {name}")
    wait_for(lambda: ready_nodes(up) == {"node-1", "node-2"}, timeout=60, what="both nodes ready")
    scaled = httpx.post(f"{up.url}/v1/services/loop/scale", json={"replicas": replicas}, timeout=10)
    assert scaled.status_code == 200, scaled.text
    wait_for(lambda: len(up.running_tasks()) == replicas, timeout=60, what=f"{replicas} running tasks")
    now_running = running_containers(cluster)
    assert containers <= now_running and len(now_running) == replicas
    return now_running


def test_a_child_that_dies_while_starting_makes_up_fail(up: Up, cluster: str) -> None:
    with held_port(up.api_port):
        up.start()
        assert up.proc is not None
        assert up.proc.wait(timeout=90) == 1, up.text()
    assert (
        f"api exited (status 3) while waiting for the API to answer /v1/health; see {up.data_dir / 'logs' / 'api.log'}"
        in up.text()
    )  # uvicorn's status when it cannot start
    assert "address already in use" in (up.data_dir / "logs" / "api.log").read_text()
    assert "restarting" not in up.text()
    assert up.children() == {}
    assert cluster_containers(cluster) == []


def test_sigterm_while_starting_stops_what_was_started(up: Up, cluster: str) -> None:
    up.start()
    children = wait_for(up.children, what="the first child")
    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=60) == 0, up.text()
    assert not [cmd for pid, cmd in children.items() if alive(pid)]
    assert "Press Ctrl-C" not in up.text()


def test_the_launcher_starts_an_exited_child_again_with_its_argv_and_env_after_its_back_off(tmp_path: Path) -> None:
    launcher = Launcher({"PATH": os.environ["PATH"], "WHO": "first"}, tmp_path)
    child = launcher.start("sleeper", ["sh", "-c", 'echo "env $WHO"; exec sleep 60'])
    launcher.env["WHO"] = "changed"  # as up adds the Redis URL once Redis answers
    try:
        wait_for(lambda: "env first" in child.log_path.read_text(), what="the first start's output")
        first = child.proc
        first.kill()
        first.wait()
        now = time.monotonic()
        assert launcher.supervise(now) == ["sleeper exited (killed by SIGKILL); restarting in 0.5s (restart 1)"]
        assert launcher.next_restart() == now + 0.5
        assert launcher.supervise(now + 0.49) == [] and child.proc is first  # waiting out the back-off
        assert launcher.supervise(now + 0.5) == [] and child.proc is not first and child.running()
        assert launcher.next_restart() is None
        wait_for(lambda: child.log_path.read_text().count("env first") == 2, what="the second start's output")
        log = child.log_path.read_text()
        assert "sleeper exited (killed by SIGKILL); restarting in 0.5s (restart 1)" in log
        assert log.count("starting: sh -c") == 2 and "changed" not in log
    finally:
        launcher.stop(launcher.children, grace=5)
    assert not child.running()


def test_a_child_that_cannot_be_started_again_is_retried_later(tmp_path: Path) -> None:
    program = tmp_path / "sleep"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    launcher = Launcher({}, tmp_path / "logs")
    child = launcher.start("sleeper", [str(program), "60"])
    program.unlink()
    child.proc.kill()
    child.proc.wait()
    now = time.monotonic()
    assert launcher.supervise(now) == ["sleeper exited (killed by SIGKILL); restarting in 0.5s (restart 1)"]
    [line] = launcher.supervise(now + 0.5)
    assert line.startswith(f"sleeper could not start ([Errno 2] No such file or directory: '{program}')")
    assert line.endswith("; restarting in 1.0s (restart 2)")
    assert launcher.next_restart() == now + 1.5
    launcher.stop(launcher.children, grace=5)  # a child waiting out its back-off is simply dropped
    assert launcher.children == []
