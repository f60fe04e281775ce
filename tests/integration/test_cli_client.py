"""The `gorchester` REST-client commands as a user runs them: subprocesses against a real API and Redis.

No scheduler or node agents run here, so nothing is ever placed: these tests are about what the CLI
sends and shows, and how it fails, not about containers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from shared.records import Availability, NodeRecord, TaskRecord, TaskState
from shared.storage import Store
from tests.support.cli import as_from_a_terminal
from tests.support.procs import ROOT, TEST_IMAGE, VENV_BIN, Processes, free_port, wait_for
from tests.support.tasks import seed

GORCHESTER = str(VENV_BIN / "gorchester")
CONFIG = f"""\
services:
  - service_name: web
    image: {TEST_IMAGE}
    replicas: 2
    ports:
      - container_port: 80
"""


def gorchester(api: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GORCHESTER, *argv, "--api", api], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def ok(api: str, *argv: str) -> str:
    result = gorchester(api, *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(api: str, *argv: str) -> Any:
    return json.loads(ok(api, *argv, "-o", "json"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def api(procs: Processes) -> str:
    return procs.api(free_port())


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def services(api: str) -> dict[str, dict[str, Any]]:
    return {service["service_name"]: service for service in as_json(api, "get", "services")}


def test_apply_scale_rm(api: str, config: str) -> None:
    assert ok(api, "apply", "-f", config).strip() == "created: web"
    assert ok(api, "apply", "-f", config).strip() == "unchanged: web"
    web = services(api)["web"]
    assert (web["image"], web["replicas"], web["deleting"]) == (TEST_IMAGE, 2, False)
    table = ok(api, "get", "services")
    assert "NAME" in table and "web" in table and TEST_IMAGE in table

    assert "scaled to 5 replicas" in ok(api, "scale", "web", "5")
    assert services(api)["web"]["status"]["desired_replicas"] == 5

    assert "marked for deletion" in ok(api, "rm", "web")
    assert services(api)["web"]["deleting"] is True
    events = [event["type"] for event in as_json(api, "get", "events", "--service", "web")]
    assert events == ["service_created", "service_scaled", "service_deleted"]


def test_describe_service(api: str, config: str) -> None:
    ok(api, "apply", "-f", config)
    text = ok(api, "describe", "service", "web")
    assert "service_name" in text and TEST_IMAGE in text and "any->80/tcp" in text and "Tasks: none" in text
    described = as_json(api, "describe", "service", "web")
    assert (described["service"]["service_name"], described["tasks"]) == ("web", [])


def test_describe_task_explains_a_pending_one_node_by_node(api: str, config: str, store: Store) -> None:
    ok(api, "apply", "-f", config)
    for node_id, availability in (("node-a", Availability.ACTIVE), ("node-b", Availability.DRAIN)):
        store.register_node(NodeRecord(id=node_id, address="10.0.0.7", cpu_millicores=4000, memory_bytes=2**32,
                                       availability=availability, heartbeat_interval=1.0, last_heartbeat=time.time()))
    seed(store, [
        TaskRecord(id="web.1", service="web", slot=1, node="node-a", state=TaskState.RUNNING),
        TaskRecord(id="web.2", service="web", slot=2, state=TaskState.PENDING, reason="node-b: node is draining"),
    ])
    text = ok(api, "describe", "task", "web.2")
    assert "node-b: node is draining" in text and "Nodes: 1 of 2 take it now" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("node-")]
    assert rows == [["node-a", "yes", "-"], ["node-b", "no", "node", "is", "draining"]]
    described = as_json(api, "describe", "task", "web.2")
    assert (described["task"]["id"], described["placement"]["nodes_total"]) == ("web.2", 2)
    assert described["placement"]["nodes"][1] == {"node": "node-b", "fits": False, "reason": "node is draining"}

    running = ok(api, "describe", "task", "web.1")
    assert "running" in running and "Nodes" not in running
    assert as_json(api, "describe", "task", "web.1")["placement"]["nodes"] == []
    assert "gorchester describe task web.2" in ok(api, "describe", "service", "web")
    assert_one_line_error(gorchester(api, "describe", "task", "web.9"), "'web.9' not found")
    invalid = gorchester(api, "describe", "task", "web")
    assert invalid.returncode == 1 and "task: must be a task id" in invalid.stderr, invalid


def test_apply_invalid_file_prints_every_field_path(api: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - service_name: web\n    image: nginx\n    replicas: -1\n")
    result = gorchester(api, "apply", "-f", str(bad))
    assert result.returncode == 1
    assert "services[0].replicas: must be at least 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert as_json(api, "get", "services") == []


def test_unknown_service_is_one_line(api: str) -> None:
    assert_one_line_error(gorchester(api, "describe", "service", "nope"), "'nope' not found")
    assert_one_line_error(gorchester(api, "scale", "nope", "2"), "'nope' not found")


def test_nodes_drain_and_activate(api: str, store: Store) -> None:
    store.register_node(NodeRecord(id="node-a", address="10.0.0.7", cpu_millicores=4000, memory_bytes=2**32,
                                   heartbeat_interval=1.0, last_heartbeat=time.time()))
    table = ok(api, "get", "nodes")
    assert "node-a" in table and "10.0.0.7" in table and "0m/4000m" in table and "0B/4Gi" in table

    assert "availability drain" in ok(api, "drain", "node-a")
    assert as_json(api, "get", "nodes", "--node", "node-a")[0]["availability"] == "drain"
    assert as_json(api, "activate", "node-a")["availability"] == "active"
    assert as_json(api, "get", "nodes")[0]["availability"] == "active"
    assert_one_line_error(gorchester(api, "drain", "node-x"), "'node-x' not found")


def test_node_rm_forgets_a_down_node_and_refuses_a_live_one_unless_forced(api: str, store: Store) -> None:
    for node_id, beat in (("node-a", time.time()), ("node-b", time.time() - 600)):
        store.register_node(NodeRecord(id=node_id, address="10.0.0.7", cpu_millicores=4000, memory_bytes=2**32,
                                       heartbeat_interval=1.0, last_heartbeat=beat))
    assert ok(api, "node", "rm", "node-b") == "node node-b removed\n"
    assert_one_line_error(gorchester(api, "node", "rm", "node-a"), "'node-a' is ready, not down")
    assert as_json(api, "node", "rm", "node-a", "--force")["was"]["status"] == "ready"
    assert as_json(api, "get", "nodes") == []
    assert_one_line_error(gorchester(api, "node", "rm", "node-a"), "'node-a' not found")


def test_apply_wait_times_out_naming_the_short_service(api: str, config: str) -> None:
    started = time.monotonic()
    result = gorchester(api, "apply", "-f", config, "--wait", "--timeout", "3")
    assert result.returncode == 1
    assert "created: web" in result.stdout
    assert "web 0/2" in result.stderr
    assert "timed out after 3s" in result.stderr
    assert "web: 0/2 running" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_events_follow_prints_new_events_until_ctrl_c(api: str, config: str, tmp_path: Path) -> None:
    out = tmp_path / "follow.out"
    with out.open("w") as sink:
        follower = subprocess.Popen([GORCHESTER, "events", "--follow", "--api", api], cwd=ROOT, stdout=sink,
                                    stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
    try:
        ok(api, "apply", "-f", config)
        ok(api, "scale", "web", "3")
        wait_for(lambda: "scaled to 3" in out.read_text(), timeout=10, what="the followed event")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.stderr is not None and follower.stderr.read() == ""
    lines = out.read_text().splitlines()
    assert len(lines) == 2, lines  # each event once, though every poll's `since` repeats the newest
    assert "service_created" in lines[0] and "service_scaled" in lines[1]


def test_dead_api_is_one_line_and_exit_1() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for argv in (["get", "services"], ["scale", "web", "1"], ["events", "--follow"]):
        assert_one_line_error(gorchester(dead, *argv), f"cannot reach the API at {dead}")


def test_usage_errors_exit_2(api: str) -> None:
    assert gorchester(api, "get", "widgets").returncode == 2
    assert gorchester(api, "scale", "web", "lots").returncode == 2
    assert gorchester(api, "apply", "-f", "/nonexistent/config.yaml").returncode == 2
