"""`POST /v1/tasks/{task}/exec` and `gorchester exec` through the node's agent, on real parts: output and
exit code, the output's bound, a timeout, bad bodies, and a node whose agent died."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.node_requests import ANSWER_SECONDS, EXEC_OUTPUT_LIMIT
from shared.storage import Store
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for

GORCHESTER = str(Path(sys.executable).parent / "gorchester")
MIB = 1024 * 1024


def tasks(api: str, service: str) -> list[dict[str, Any]]:
    return httpx.get(f"{api}/v1/tasks", params={"service": service}, timeout=5).json()


def run(api: str, task: str, command: list[str], timeout: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {"command": command}
    if timeout is not None:
        body["timeout"] = timeout
    return httpx.post(f"{api}/v1/tasks/{task}/exec", json=body, timeout=60)


@pytest.fixture
def running_api(procs: Processes, cluster: str) -> Iterator[str]:
    # A node stays ready for 20 s after its last beat: long enough to ask a dead agent, and be left unanswered.
    procs.env["GORCHESTER_HEARTBEAT_MISSES"] = "40"
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    config = {
        "cluster_name": cluster,
        "services": [
            {"service_name": "box", "image": TEST_IMAGE, "replicas": 1, "command": ["sleep", "3600"],
             "resources": {"cpu_millicores": 50, "memory_bytes": 16 * MIB}},
            {"service_name": "huge", "image": TEST_IMAGE, "replicas": 1, "command": ["sleep", "60"],
             "resources": {"cpu_millicores": 999_000, "memory_bytes": 16 * MIB}},
        ],
    }
    assert httpx.post(f"{api}/v1/apply", json=config, timeout=10).status_code == 200
    wait_for(lambda: [t["state"] for t in tasks(api, "box")] == ["running"], timeout=60, what="box running")
    yield api


def test_output_exit_code_bounds_and_timeout(running_api: str, store: Store) -> None:
    api = running_api
    done = run(api, "box.1", ["sh", "-c", "echo out; printf 'err\\377\\n' >&2; exit 3"])
    assert done.status_code == 200, done.text
    result = done.json()
    assert (result["exit_code"], result["truncated"], result["timed_out"]) == (3, False, False)
    # stdout and stderr both (in either order: the engine reads the two pipes side by side), a byte
    # that is not UTF-8 replaced.
    assert sorted(result["output"].splitlines()) == ["err\ufffd", "out"]

    ok = run(api, "box.1", ["cat", "/etc/hostname"])
    assert ok.json()["exit_code"] == 0 and ok.json()["output"] == "box-1\n"

    # 3 MiB of output: the last 1 MiB comes back, and says so.
    big = run(api, "box.1", ["sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' a; echo END"])
    result = big.json()
    assert result["exit_code"] == 0 and result["truncated"] is True
    assert len(result["output"]) == EXEC_OUTPUT_LIMIT and result["output"].endswith("aaaEND\n")

    started = time.monotonic()
    slow = run(api, "box.1", ["sh", "-c", "echo begun; sleep 30"], timeout=1)
    assert slow.status_code == 200
    assert slow.json() == {"exit_code": None, "output": "begun\n", "truncated": False, "timed_out": True}
    assert time.monotonic() - started < 1 + ANSWER_SECONDS

    missing = run(api, "box.1", ["/no/such/program"])
    assert missing.status_code == 200 and missing.json()["exit_code"] not in (0, None)

    assert not list(store._client.scan_iter(f"{store._keys.prefix}:reply:*"))  # every reply deleted


def test_refusals(running_api: str) -> None:
    api = running_api
    assert run(api, "ghost.1", ["true"]).status_code == 404
    pending = run(api, "huge.1", ["true"])
    assert pending.status_code == 409 and "no container" in pending.json()["message"]
    invalid = {
        "no command": {"timeout": 5},
        "empty command": {"command": []},
        "a NUL": {"command": ["echo", "a\u0000b"]},
        "too many items": {"command": ["x"] * 1001},
        "an item too long": {"command": ["x" * (32 * 1024 + 1)]},
        "timeout 0": {"command": ["true"], "timeout": 0},
        "timeout too long": {"command": ["true"], "timeout": 3601},
        "timeout as text": {"command": ["true"], "timeout": "5"},
        "an item not text": {"command": ["echo", 5]},
        "an unknown field": {"command": ["true"], "user": "root"},
    }
    for why, body in invalid.items():
        response = httpx.post(f"{api}/v1/tasks/box.1/exec", json=body, timeout=10)
        assert response.status_code == 422, (why, response.text)
        assert response.json()["errors"], why
    for raw in (b"{not json", b"[1, 2]"):
        response = httpx.post(f"{api}/v1/tasks/box.1/exec", content=raw,
                              headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 400, response.text
    assert httpx.post(f"{api}/v1/tasks/box.1/exec", content=b"true", timeout=10).status_code == 415

    # A stopped container is there, but not running: 409 from the agent.
    assert httpx.post(f"{api}/v1/tasks/box.1/stop", timeout=10).status_code == 202
    wait_for(lambda: tasks(api, "box")[0]["state"] == "stopped", timeout=60, what="box stopped")
    stopped = run(api, "box.1", ["true"])
    assert stopped.status_code == 409 and "not running" in stopped.json()["message"]


def test_cli_exec(running_api: str) -> None:
    api = ["--api", running_api]
    shown = subprocess.run([GORCHESTER, "exec", *api, "box.1", "--", "sh", "-c", "echo hi; echo there >&2; exit 4"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 4, shown.stderr
    assert sorted(shown.stdout.splitlines()) == ["hi", "there"]
    slow = subprocess.run([GORCHESTER, "exec", *api, "--timeout", "1", "box.1", "--", "sleep", "20"],
                          capture_output=True, text=True, timeout=60)
    assert slow.returncode == 124 and "did not end within 1 s" in slow.stderr
    pending = subprocess.run([GORCHESTER, "exec", *api, "huge.1", "--", "true"], capture_output=True, text=True,
                             timeout=60)
    assert pending.returncode == 1 and "no container" in pending.stderr


def test_a_dead_agent_is_503_within_the_bound(running_api: str, procs: Processes) -> None:
    api = running_api
    procs.kill("node-1")  # SIGKILL: its node still looks ready (its last beat is recent)
    assert httpx.get(f"{api}/v1/nodes/node-1", timeout=5).json()["status"] == "ready"
    for method, path, body in (("POST", "/v1/tasks/box.1/exec", {"command": ["true"]}),
                               ("GET", "/v1/tasks/box.1/logs", None)):
        started = time.monotonic()
        response = httpx.request(method, f"{api}{path}", json=body, timeout=30)
        assert response.status_code == 503, response.text
        assert "node node-1 did not answer" in response.json()["reason"]
        assert time.monotonic() - started < ANSWER_SECONDS + 3  # the bound, with slack for a loaded machine
