"""`gorchester drain` (waiting until the node is empty), `stop`, `endpoints`, `top` and `describe`'s events,
run as a user runs them against a real cluster: API, scheduler and agents on Redis and Docker."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import docker
import httpx
import pytest

from shared import labels
from shared.records import NodeRecord
from shared.storage import Store
from tests.integration.test_cli_client import CONFIG, as_json, assert_one_line_error, gorchester, ok
from tests.integration.test_end_to_end import service, tasks, wait_running
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for

MIB = 1024 * 1024
# Exits at once on SIGTERM (busybox sleep as PID 1 ignores it), so stopping it takes no grace period.
GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}


def start(procs: Processes, nodes: list[str]) -> str:
    procs.env["GORCHESTER_METRICS_INTERVAL"] = "1"  # `top` has samples within seconds
    api = procs.api(free_port())
    procs.scheduler()
    for node in nodes:
        procs.agent(node, NODES[node], cpu=4000, memory=4096 * MIB)
    wait_for(lambda: {n["id"]: n["status"] for n in as_json(api, "get", "nodes")} == dict.fromkeys(nodes, "ready"),
             what="ready nodes")
    return api


def create(api: str, spec: dict[str, Any]) -> None:
    response = httpx.post(f"{api}/v1/services", json=spec, timeout=5)
    assert response.status_code == 201, response.text


def event_types(api: str) -> Counter[str]:
    return Counter(event["type"] for event in as_json(api, "get", "events"))


def running_containers_on(cluster: str, node: str) -> list[str]:
    engine = docker.from_env()
    try:
        found = engine.containers.list(filters={"label": [f"{labels.CLUSTER}={cluster}", f"{labels.NODE}={node}"]})
        return [container.labels[labels.TASK] for container in found]
    finally:
        engine.close()


def event_kinds(described: str) -> list[str]:
    """The TYPE column of the Events table `describe` ends with (a long message may wrap onto its own line)."""
    rows = described[described.index("Events"):].splitlines()[3:]
    return [row.split()[1] for row in rows if row[:4].isdigit()]  # TIME is one word: 2026-12-03T14:00:03Z


@pytest.fixture
def two_nodes(procs: Processes) -> str:
    return start(procs, ["node-1", "node-2"])


@pytest.fixture
def one_node(procs: Processes) -> str:
    return start(procs, ["node-1"])


def test_drain_returns_once_the_node_is_empty_and_is_announced_once(cluster: str, two_nodes: str) -> None:
    api = two_nodes
    create(api, service("mobile", 4, command=GRACEFUL, restart_policy="always"))
    create(api, {"service_name": "everywhere", "image": TEST_IMAGE, "mode": "global", "command": GRACEFUL})
    wait_running(api, "mobile", 4)
    wait_running(api, "everywhere", 2)
    on_node_1 = sorted(t["id"] for t in as_json(api, "get", "tasks", "--node", "node-1") if t["state"] == "running")
    assert any(task_id.startswith("everywhere.") for task_id in on_node_1), on_node_1
    assert any(task_id.startswith("mobile.") for task_id in on_node_1), on_node_1

    drained = gorchester(api, "drain", "node-1", "--timeout", "120", timeout=180)
    assert drained.returncode == 0, drained.stderr
    assert "node node-1: availability drain, status draining" in drained.stdout
    progress = drained.stderr.splitlines()
    assert progress[0].startswith("node-1: ") and "tasks left (" in progress[0], progress
    assert progress[-1] == "node-1: empty", progress

    # Returned only once nothing of node-1's was left: no task there, no container, every replica on node-2.
    assert as_json(api, "get", "tasks", "--node", "node-1") == []
    assert running_containers_on(cluster, "node-1") == []
    mobile = tasks(api, "mobile")
    assert [(t["state"], t["node"], t["previous"]) for t in mobile] == [("running", "node-2", None)] * 4
    assert [t["node"] for t in tasks(api, "everywhere")] == ["node-2"]

    ok(api, "activate", "node-1")
    ok(api, "scale", "mobile", "6")  # the scheduler places on node-1 again: it has seen the activation
    assert {t["node"] for t in wait_running(api, "mobile", 6)} == {"node-1", "node-2"}
    wait_running(api, "everywhere", 2)
    kinds = event_types(api)
    assert (kinds["node_draining"], kinds["node_activated"], kinds["node_ready"]) == (1, 1, 0), kinds


def test_drain_times_out_naming_the_tasks_left_and_no_wait_returns_at_once(one_node: str) -> None:
    api = one_node
    create(api, service("stuck", 1, command=GRACEFUL, restart_policy="always"))
    wait_running(api, "stuck", 1)
    # One node only: its replica has nowhere to go, so it keeps serving there.
    result = gorchester(api, "drain", "node-1", "--timeout", "2")
    assert result.returncode == 1
    assert "node-1: 1 task left (stuck.1)" in result.stderr
    assert "error: timed out after 2s: node node-1 still holds 1 task(s)" in result.stderr
    assert "  stuck.1 running" in result.stderr
    assert "Traceback" not in result.stderr

    ok(api, "activate", "node-1")
    at_once = gorchester(api, "drain", "node-1", "--no-wait")
    assert (at_once.returncode, at_once.stderr) == (0, "")
    assert as_json(api, "drain", "node-1", "--no-wait")["availability"] == "drain"


def test_stop_endpoints_and_top_on_running_replicas(one_node: str) -> None:
    api = one_node
    create(api, service("web", 2, command=GRACEFUL, restart_policy="unless-stopped",
                        ports=[{"container_port": 80}]))
    wait_running(api, "web", 2)

    listed = as_json(api, "endpoints", "web")
    assert [(e["task"], e["node"], e["node_address"]) for e in listed] == [
        ("web.1", "node-1", "127.0.0.2"), ("web.2", "node-1", "127.0.0.2"),
    ]
    table = ok(api, "endpoints", "web")
    assert "TASK" in table and "web.1" in table and "127.0.0.2" in table and "->80/tcp" in table

    usage = wait_for(lambda: (u := as_json(api, "top", "services")) and u[0]["average"]["replicas_sampled"] == 2
                     and u, what="both replicas sampled")
    assert [(u["service"], [r["task"] for r in u["replicas"]]) for u in usage] == [("web", ["web.1", "web.2"])]
    rows = [line.split() for line in ok(api, "top", "services", "web").splitlines()]  # piped: no rule under the header
    # CPU and memory used; no percentages, as the service reserves nothing to measure them against.
    assert rows[1][:3] == ["web", "web.1", "node-1"] and rows[1][3].endswith("m") and rows[1][5] != "-"
    assert rows[3][:4] == ["web", "average", "of", "2"]
    wait_for(lambda: as_json(api, "top", "nodes")[0]["usage"].get("used"), what="node-1 sampled")
    node_row = ok(api, "top", "nodes", "node-1").splitlines()[1].split()
    assert node_row[0] == "node-1" and node_row[1].endswith("/4000m") and node_row[2].endswith("%")
    assert_one_line_error(gorchester(api, "top", "nodes", "node-9"), "node 'node-9' not found")

    assert ok(api, "stop", "web.1") == "task web.1: stop requested on node-1\n"
    wait_for(lambda: [t["state"] for t in tasks(api, "web")] == ["stopped", "running"], what="web.1 stopped")
    wait_for(lambda: [e["task"] for e in as_json(api, "endpoints", "web")] == ["web.2"], what="web.1 unlisted")
    assert_one_line_error(gorchester(api, "stop", "web.1"), "'web.1' is stopped, not running")
    assert_one_line_error(gorchester(api, "endpoints", "nope"), "'nope' not found")


def test_describe_ends_with_the_objects_newest_events(procs: Processes, store: Store, tmp_path: Any) -> None:
    api = procs.api(free_port())  # no scheduler: the events are the API's own
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    ok(api, "apply", "-f", str(config))
    ok(api, "scale", "web", "3")
    text = ok(api, "describe", "service", "web")
    assert text[text.index("Events"):].splitlines()[1].split() == ["TIME", "TYPE", "MESSAGE"]
    assert event_kinds(text) == ["service_created", "service_scaled"]
    assert set(as_json(api, "describe", "service", "web")) == {"service", "tasks"}  # events stay out of json

    store.register_node(NodeRecord(id="node-a", address="10.0.0.7", cpu_millicores=4000, memory_bytes=2**32,
                                   heartbeat_interval=1.0, last_heartbeat=time.time()))
    ok(api, "drain", "node-a")
    text = ok(api, "describe", "node", "node-a")
    kinds = event_kinds(text)
    assert kinds[-1] == "node_draining" and "service_created" not in kinds
    listed = ok(api, "get", "events", "--node", "node-a", "--no-headers").splitlines()
    assert [line.split()[1] for line in listed] == ["node_draining"]  # the API's node filter
