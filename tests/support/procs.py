"""Start the real processes of a cluster (API, scheduler, node agents) for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TEST_IMAGE = os.environ.get("GORCHESTER_TEST_IMAGE", "gorchester/busybox:latest")

# Short intervals so failure tests finish in seconds, not minutes.
FAST_SETTINGS = {
    "GORCHESTER_HEARTBEAT_INTERVAL": "0.5",
    "GORCHESTER_HEARTBEAT_MISSES": "3",
    "GORCHESTER_RECONCILE_INTERVAL": "2",
    "GORCHESTER_ASSIGNED_TIMEOUT": "10",
    "GORCHESTER_RESTART_BACKOFF_BASE": "0.2",
    "GORCHESTER_RESTART_BACKOFF_MAX": "2",
    "GORCHESTER_LEADER_LEASE": "2",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `condition()` is truthy and return it; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - conditions may fail while things start
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; last error: {last_error}")


class Processes:
    """Owns every process a test starts; `close()` SIGKILLs what is left, even after a failure."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def api(self, port: int, name: str = "api") -> str:
        self.start(name, [str(VENV_BIN / "uvicorn"), "api.app:app", "--host", "127.0.0.1", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        import httpx

        wait_for(lambda: httpx.get(f"{url}/v1/health", timeout=1).status_code == 200, what="the API to answer")
        return url

    def scheduler(self, name: str = "scheduler", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "scheduler"], extra_env)

    def agent(
        self, node: str, address: str, *, cpu: int | None = None, memory: int | None = None, labels: str = ""
    ) -> subprocess.Popen:
        extra = {"GORCHESTER_NODE_ADDRESS": address, "GORCHESTER_NODE_LABELS": labels}
        if cpu is not None:
            extra["GORCHESTER_NODE_CPU"] = str(cpu)
        if memory is not None:
            extra["GORCHESTER_NODE_MEMORY"] = str(memory)
        argv = [str(VENV_BIN / "rq"), "worker", "-w", "worker.agent.NodeAgent", node]
        return self.start(node, argv, extra)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")
