"""Node identity from the environment, and how container exits read as task states."""

from __future__ import annotations

import os

import pytest

from shared.records import TaskState
from shared.settings import Settings
from worker.exits import exit_fields
from worker.identity import DEFAULT_ADDRESS, node_record, parse_labels, total_memory


def test_identity_from_the_environment() -> None:
    env = {
        "GORCHESTER_NODE_ADDRESS": "10.0.0.7",
        "GORCHESTER_NODE_CPU": "1500",
        "GORCHESTER_NODE_MEMORY": "1073741824",
        "GORCHESTER_NODE_LABELS": "zone=a, disk=ssd",
    }
    node = node_record("node-1", Settings(heartbeat_interval=0.5), env, now=100.0)
    assert (node.id, node.address, node.cpu_millicores, node.memory_bytes) == ("node-1", "10.0.0.7", 1500, 2**30)
    assert node.labels == {"zone": "a", "disk": "ssd"}
    assert (node.heartbeat_interval, node.registered_at, node.last_heartbeat) == (0.5, 100.0, 100.0)


def test_defaults_are_the_machine() -> None:
    node = node_record("node-1", Settings(), {}, now=0.0)
    assert node.address == DEFAULT_ADDRESS
    assert node.cpu_millicores == (os.cpu_count() or 1) * 1000
    assert node.memory_bytes == total_memory() > 0
    assert node.labels == {}


def test_bad_values_stop_the_agent_with_the_variable_named() -> None:
    with pytest.raises(SystemExit, match="GORCHESTER_NODE_CPU"):
        node_record("n", Settings(), {"GORCHESTER_NODE_CPU": "lots"}, now=0.0)
    with pytest.raises(SystemExit, match="GORCHESTER_NODE_LABELS"):
        parse_labels("zone")


@pytest.mark.parametrize(
    ("address", "redis_url"),
    [(None, "redis://127.0.0.1:6379/0"), ("127.0.0.2", "redis://localhost:6379/0"), ("10.0.0.12", "rediss://10.0.0.11/0"),
     ("10.0.0.11", "redis://127.0.0.1/0")],
)
def test_a_loopback_address_serves_a_cluster_on_one_machine(address: str | None, redis_url: str) -> None:
    env = {"GORCHESTER_NODE_ADDRESS": address} if address else {}
    assert node_record("n", Settings(redis_url=redis_url), env, now=0.0).address == (address or DEFAULT_ADDRESS)


@pytest.mark.parametrize("address", [None, "127.0.0.1", "127.0.0.3"])
def test_an_agent_with_redis_on_another_machine_refuses_a_loopback_address(address: str | None) -> None:
    env = {"GORCHESTER_NODE_ADDRESS": address} if address else {}
    with pytest.raises(SystemExit, match=r"GORCHESTER_NODE_ADDRESS .*loopback.*Redis is at 10\.0\.0\.11"):
        node_record("n", Settings(redis_url="rediss://gorchester:pw@10.0.0.11:6379/0"), env, now=0.0)


@pytest.mark.parametrize(
    ("code", "oom", "removed", "state", "reason"),
    [
        (0, False, False, TaskState.STOPPED, "exited with code 0"),
        (3, False, False, TaskState.FAILED, "exited with code 3"),
        (137, True, False, TaskState.FAILED, "OOM killed"),
        (137, False, True, TaskState.FAILED, "container removed"),
    ],
)
def test_exit_fields(code: int, oom: bool, removed: bool, state: TaskState, reason: str) -> None:
    fields = exit_fields(code, oom=oom, removed=removed)
    assert (fields["state"], fields["reason"], fields["exit_code"]) == (state, reason, code)
