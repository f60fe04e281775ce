"""The pure parts of `stop`, `endpoints`, `top`, `drain`'s wait, `describe`'s events and `events --follow`'s lines."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from cli import draining, endpoints, events, resources, top
from cli.main import build_parser
from shared.event_kinds import EventKind
from shared.records import ACTIVE_STATES, TaskState


def rendered(renderable: Any) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def task(task_id: str, state: str, node: str | None, previous: str | None = None, reason: str | None = None) -> dict:
    return {"id": task_id, "state": state, "node": node, "reason": reason,
            "previous": {"node": previous, "gen": 1, "container_id": "c", "ports": []} if previous else None}


# --- events --follow --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(EventKind))
def test_a_followed_line_keeps_every_kind_apart_from_its_message(kind: EventKind) -> None:
    line = events.line({"time": "2024-05-01T12:00:03.250Z", "type": kind.value, "message": "the message"})
    assert line.startswith(f"2024-05-01T12:00:03Z  {kind.value}  ")
    # Every kind's message starts in the same column, so followed lines read as a table.
    assert line.index("the message") == len("2024-05-01T12:00:03Z  ") + events.KIND_WIDTH + 2


def test_a_kind_longer_than_any_known_still_does_not_touch_the_message() -> None:
    kind = "x" * (events.KIND_WIDTH + 5)
    assert f"{kind}  message" in events.line({"time": None, "type": kind, "message": "message"})


# --- drain's wait -----------------------------------------------------------------------------------

def test_the_states_that_hold_a_node_are_the_records_own() -> None:
    assert {state.value for state in ACTIVE_STATES | {TaskState.SHUTDOWN}} == draining.HOLDING_STATES


def test_a_node_is_empty_once_no_container_of_a_task_is_left_on_it() -> None:
    tasks = [
        task("web.1", "running", "node-1"),
        task("web.2", "starting", "node-2", previous="node-1"),  # moved start-first, the old one still serves
        task("web.3", "running", "node-2"),
        task("dns.1", "shutdown", "node-1"),  # a global replica retired by the drain, its container not yet removed
        task("job.1", "stopped", "node-1"),
        task("job.2", "failed", "node-1"),
        task("web.4", "pending", None, reason="no node fits"),
    ]
    left = draining.left_on("node-1", tasks)
    assert [t["id"] for t in left] == ["web.1", "web.2", "dns.1"]
    assert draining.progress("node-1", left) == "node-1: 3 tasks left (web.1, web.2, dns.1)"
    assert draining.progress("node-1", left[:1]) == "node-1: 1 task left (web.1)"
    assert [draining.describe_left("node-1", t) for t in left] == [
        "web.1 running", "web.2 moving to node-2", "dns.1 shutdown",
    ]
    assert draining.left_on("node-1", tasks[4:]) == []
    assert draining.progress("node-1", []) == "node-1: empty"
    assert draining.left_on("node-3", tasks) == []


# --- describe's events ------------------------------------------------------------------------------

def test_describe_ends_with_the_events_or_none() -> None:
    service = {"service_name": "web", "image": "nginx:alpine"}
    happened = [{"time": "2024-05-01T12:00:03Z", "type": "service_created", "message": "service web created"},
                {"time": "2024-05-01T12:00:09Z", "type": "service_update_paused", "message": "paused: web.1 failed"}]
    text = rendered(resources.describe_table({"service": service, "tasks": [], "events": happened}))
    lines = [line.rstrip() for line in text.splitlines()]
    at = lines.index("Events")
    assert lines[at + 1].split() == ["TIME", "TYPE", "MESSAGE"]
    assert "service_created" in lines[at + 3] and "service_update_paused" in lines[at + 4]  # newest last
    assert lines.index("Tasks: none") < at
    none = rendered(resources.describe_table({"service": service, "tasks": [], "events": []}))
    assert none.rstrip().endswith("Events: <none>")


# --- top and endpoints ------------------------------------------------------------------------------

def test_top_services_shows_each_replica_then_the_average() -> None:
    sampled = {"cpu_millicores": 120.4, "cpu_percent": 24.08, "memory_bytes": 64 * 2**20, "memory_percent": 12.5}
    unsampled = dict.fromkeys(sampled)
    usage = {
        "service": "web",
        "replicas": [{"task": "web.1", "node": "node-1", "state": "running", **sampled},
                     {"task": "web.2", "node": None, "state": "pending", **unsampled}],
        "average": {**sampled, "replicas_sampled": 1},
    }
    rows = [line.split() for line in rendered(top.services_table([usage])).splitlines() if line.strip()]
    assert rows[0] == ["SERVICE", "TASK", "NODE", "CPU", "CPU%", "MEMORY", "MEMORY%"]
    assert rows[2:] == [
        ["web", "web.1", "node-1", "120m", "24.1%", "64Mi", "12.5%"],
        ["web", "web.2", "-", "-", "-", "-", "-"],
        ["web", "average", "of", "1", "120m", "24.1%", "64Mi", "12.5%"],
    ]


def test_top_nodes_shows_use_against_capacity_and_dashes_before_a_sample() -> None:
    capacity = {"cpu_millicores": 4000, "memory_bytes": 2**32}
    measured = {"used": {"cpu_millicores": 500.0, "memory_bytes": 2**30}, "cpu_percent": 12.5,
                "memory_percent": 25.0, "containers": 3}
    nodes = [{"id": "node-1", "capacity": capacity, "usage": measured},
             {"id": "node-2", "capacity": capacity, "usage": {}}]
    rows = [line.split() for line in rendered(top.nodes_table(nodes)).splitlines() if line.strip()]
    assert rows[2:] == [["node-1", "500m/4000m", "12.5%", "1Gi/4Gi", "25.0%", "3"],
                        ["node-2", "-/4000m", "-", "-/4Gi", "-", "-"]]


def test_endpoints_table() -> None:
    endpoint = {"task": "web.1", "slot": 1, "gen": 2, "node": "node-1", "node_address": "10.0.0.7",
                "ports": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"}],
                "network": "gorchester-web", "address": "10.10.0.3", "health": "healthy"}
    rows = [line.split() for line in rendered(endpoints.endpoints_table([endpoint])).splitlines() if line.strip()]
    assert rows[2] == ["web.1", "node-1", "10.0.0.7", "8080->80/tcp", "10.10.0.3", "healthy"]


# --- the commands' arguments ------------------------------------------------------------------------

def test_the_new_commands_parse() -> None:
    parser = build_parser()
    assert parser.parse_args(["stop", "web.2"]).task == "web.2"
    assert parser.parse_args(["endpoints", "web"]).service == "web"
    assert (parser.parse_args(["top", "services"]).kind, parser.parse_args(["top", "nodes", "n1"]).name) == (
        "services", "n1")
    drain = parser.parse_args(["drain", "node-1"])
    assert (drain.no_wait, drain.timeout) == (False, draining.DEFAULT_TIMEOUT)
    drain = parser.parse_args(["drain", "node-1", "--no-wait", "--timeout", "5"])
    assert (drain.no_wait, drain.timeout) == (True, 5.0)
    assert parser.parse_args(["activate", "node-1"]).no_wait is True  # activating has nothing to wait for
    with pytest.raises(SystemExit):
        parser.parse_args(["top", "pods"])
