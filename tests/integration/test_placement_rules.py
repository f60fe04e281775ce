"""Placement rules on real agents and containers: constraints on the labels agents start with,
max_replicas_per_node, a rule no node meets, and replicas moving when their node's labels change."""

from __future__ import annotations

import httpx

from tests.integration.test_end_to_end import service, tasks, wait_running
from tests.integration.test_self_healing import GRACEFUL, MIB, NODES, create, node_status
from tests.support.procs import Processes, free_port, wait_for


def start(procs: Processes, node: str, labels: str) -> None:
    procs.agent(node, NODES[node], cpu=4000, memory=4096 * MIB, labels=labels)


def test_replicas_follow_the_constraints_and_say_which_rule_holds_them_back(procs: Processes) -> None:
    api = procs.api(free_port())
    procs.scheduler()
    start(procs, "node-1", "zone=a")
    start(procs, "node-2", "zone=b,disk=ssd")
    wait_for(lambda: node_status(api) == {"node-1": "ready", "node-2": "ready"}, what="two ready nodes")

    create(api, service("web", 2, command=GRACEFUL, placement={"constraints": ["node.labels.zone == b"]}))
    assert {t["node"] for t in wait_running(api, "web", 2)} == {"node-2"}

    create(api, service("one", 3, command=GRACEFUL, placement={"max_replicas_per_node": 1}))
    wait_for(lambda: sorted(t["state"] for t in tasks(api, "one")) == ["pending", "running", "running"],
             what="two replicas of 'one' running, one per node, the third pending")
    [held] = [t for t in tasks(api, "one") if t["state"] == "pending"]
    assert held["reason"] == "node-1: max_replicas_per_node 1 reached; node-2: max_replicas_per_node 1 reached"

    create(api, service("nowhere", 1, command=GRACEFUL, placement={"constraints": ["node.labels.disk == hdd"]}))
    reason = wait_for(lambda: (ts := tasks(api, "nowhere")) and ts[0]["reason"], what="a pending reason")
    rule = "constraint node.labels.disk == hdd not met"
    assert reason == f"node-1: {rule}; node-2: {rule}"
    placement = httpx.get(f"{api}/v1/tasks/{held['id']}/placement", timeout=5).json()
    assert {n["reason"] for n in placement["nodes"]} == {"max_replicas_per_node 1 reached"}

    # node-2 comes back with other labels: web's replicas move to the node that now matches.
    procs.kill("node-2")
    start(procs, "node-2", "zone=c")
    procs.kill("node-1")
    start(procs, "node-1", "zone=b")
    wait_for(lambda: {t["node"] for t in tasks(api, "web") if t["state"] == "running"} == {"node-1"}
             and len([t for t in tasks(api, "web") if t["state"] == "running"]) == 2,
             timeout=60, what="web's replicas moved to node-1, now in zone b")
