"""Node and engine failures on three hosts (cli/hostbed.py), each with its own engine: an engine that
dies under its living agent, a whole host lost and back, a host cut off from the others for 30 s, an
agent that starts before its engine.

After each, the cluster must settle on every engine: no service with more running containers than it
wants, each running slot's container on its task's node, nothing left that no task owns.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from shared import labels
from tests.support.multihost import MultiHost
from tests.support.procs import TEST_IMAGE, wait_for

GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]  # stops at once on SIGTERM
PARTITION = 30.0  # seconds the cut-off host stays cut off (the partition)


def sleeper(name: str, replicas: int) -> dict[str, Any]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": GRACEFUL,
            "restart_policy": "always"}


def node_view(api: str, node: str) -> dict[str, Any]:
    return httpx.get(f"{api}/v1/nodes/{node}", timeout=5).json()


def spread(multihost: MultiHost, api: str, service: str, replicas: int) -> None:
    """Create `service` and wait until it runs on every host alike (the scheduler spreads a service)."""
    assert httpx.post(f"{api}/v1/services", json=sleeper(service, replicas), timeout=5).status_code == 201
    wait_for(lambda: multihost.running(service, replicas), timeout=90, what=f"{replicas} replicas of {service}")
    per_host = replicas // len(multihost.bed.all_hosts())
    for host in multihost.bed.all_hosts():
        assert len(multihost.containers(host.index)) == per_host


def moved_off(multihost: MultiHost, service: str, replicas: int, node: str) -> bool:
    """Every replica runs again, none on `node`, each on its node's engine (`node`'s is not looked at)."""
    tasks = [task for task in multihost.store.tasks() if task.service == service]
    if not multihost.running(service, replicas) or any(task.node == node for task in tasks):
        return False
    for host in multihost.bed.all_hosts():
        if multihost.node(host.index) == node:
            continue
        on_engine = {c.labels[labels.TASK] for c in multihost.containers(host.index)}
        if on_engine != {task.id for task in tasks if task.node == multihost.node(host.index)}:
            return False
    return True


def settled(multihost: MultiHost, empty: int) -> bool:
    """Nothing misplaced on any engine, and host `empty` left with no container of the cluster."""
    return not multihost.misplaced() and not multihost.containers(empty, all=True)


def test_an_engine_lost_under_its_agent_moves_its_replicas_and_its_return_removes_them(multihost: MultiHost):
    multihost.procs.env["GORCHESTER_HEARTBEAT_MISSES"] = "10"  # a 5 s window: not_ready is seen before down
    api = multihost.start()
    spread(multihost, api, "web", 6)

    multihost.bed.kill_engine(2)
    sick = wait_for(lambda: (view := node_view(api, "node-2"))["status"] == "not_ready" and view, timeout=30,
                    what="node-2 not ready")
    assert sick["reason"].startswith("engine unreachable: "), sick
    wait_for(lambda: moved_off(multihost, "web", 6, "node-2"), timeout=60, what="web's replicas moved off node-2")
    down = node_view(api, "node-2")
    assert down["status"] == "down" and down["reason"].startswith("engine unreachable: "), down
    assert multihost.procs.procs["node-2"].poll() is None  # the agent lives on through all of it

    multihost.bed.start_engine(2)
    wait_for(lambda: node_view(api, "node-2")["status"] == "ready", timeout=30, what="node-2 ready again")
    # The agent's sweep removes what moved meanwhile (the engine's restart stopped them).
    wait_for(lambda: settled(multihost, 2), timeout=60, what="no stale container left on node-2")
    # Its event stream follows the new engine: a replica placed there and killed is reported and replaced.
    assert httpx.post(f"{api}/v1/services/web/scale", json={"replicas": 7}, timeout=5).status_code == 200
    wait_for(lambda: multihost.running("web", 7), timeout=60, what="a 7th replica")
    [placed] = [task for task in multihost.store.tasks() if task.node == "node-2"]
    [container] = multihost.containers(2)
    container.kill()
    wait_for(lambda: multihost.store.task(placed.id).gen > placed.gen and multihost.running("web", 7), timeout=60,
             what="the killed replica replaced")
    assert multihost.procs.log("node-2").count("following the engine's events") >= 2
    wait_for(lambda: not multihost.misplaced(), timeout=60, what="every engine settled")


def test_a_host_lost_whole_and_back_leaves_no_replica_twice(multihost: MultiHost):
    api = multihost.start()
    spread(multihost, api, "web", 6)

    multihost.procs.kill("node-2")  # a power loss: the agent, the engine and its containers at once
    multihost.bed.kill_host(2)
    wait_for(lambda: moved_off(multihost, "web", 6, "node-2"), timeout=60, what="web's replicas moved off node-2")
    lost = node_view(api, "node-2")
    assert lost["status"] == "down" and lost["reason"].startswith("no heartbeat for "), lost

    multihost.bed.start_engine(2)
    multihost.agent(2)
    wait_for(lambda: node_view(api, "node-2")["status"] == "ready", timeout=30, what="node-2 back")
    wait_for(lambda: settled(multihost, 2), timeout=60, what="no stale container left on node-2")
    assert multihost.running("web", 6)


def test_a_host_cut_off_for_30s_keeps_serving_and_rejoins_without_a_restart(multihost: MultiHost):
    api = multihost.start()
    spread(multihost, api, "web", 6)
    agent = multihost.procs.procs["node-2"]
    cut_off = {container.id for container in multihost.containers(2)}

    multihost.bed.partition(2)
    cut_at = time.monotonic()
    wait_for(lambda: moved_off(multihost, "web", 6, "node-2"), timeout=PARTITION - 5,
             what="web's replicas moved off node-2")
    lost = node_view(api, "node-2")
    assert lost["status"] == "down" and lost["reason"].startswith("no heartbeat for "), lost
    # The rest of the cluster works on: the API answers and the other hosts take new work.
    assert httpx.post(f"{api}/v1/services", json=sleeper("more", 2), timeout=5).status_code == 201
    wait_for(lambda: multihost.running("more", 2), timeout=PARTITION - 5, what="a new service on the other hosts")
    assert {task.node for task in multihost.store.tasks() if task.service == "more"} <= {"node-1", "node-3"}
    # The cut-off host keeps its containers running (docs/architecture.md says why): they may still serve.
    assert {container.id for container in multihost.containers(2)} == cut_off
    time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))  # the fault's length, not a wait for a condition

    multihost.bed.partition(2, cut=False)
    wait_for(lambda: node_view(api, "node-2")["status"] == "ready", timeout=30, what="node-2 back")
    wait_for(lambda: settled(multihost, 2), timeout=60, what="the duplicates on node-2 removed")
    assert agent.poll() is None  # the same agent: it recovered by itself
    # Its job queue works again too (RQ's own connection): new replicas go to the emptiest host, node-2.
    assert httpx.post(f"{api}/v1/services/web/scale", json={"replicas": 8}, timeout=5).status_code == 200
    wait_for(lambda: multihost.running("web", 8), timeout=60, what="8 replicas")
    assert any(task.node == "node-2" for task in multihost.store.tasks() if task.service == "web")
    wait_for(lambda: not multihost.misplaced(), timeout=60, what="every engine settled")


def test_an_agent_started_while_its_engine_is_down_reports_it_and_serves_once_it_answers(multihost: MultiHost):
    """As when a host boots and its agent comes up before its engine does."""
    multihost.bed.kill_engine(2)
    agent = multihost.agent(2)
    api = multihost.start(agents=[1, 3])
    sick = wait_for(lambda: (view := node_view(api, "node-2")).get("reason") and view, timeout=30,
                    what="node-2 registered, not ready")
    assert sick["status"] in ("not_ready", "down") and sick["reason"].startswith("engine unreachable: "), sick
    assert httpx.post(f"{api}/v1/services", json=sleeper("web", 4), timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 4), timeout=60, what="4 replicas on the other hosts")
    assert {task.node for task in multihost.store.tasks()} == {"node-1", "node-3"}

    multihost.bed.start_engine(2)
    wait_for(lambda: node_view(api, "node-2")["status"] == "ready", timeout=30, what="node-2 ready")
    assert agent.poll() is None  # the same agent, never restarted
    assert httpx.post(f"{api}/v1/services", json=sleeper("more", 3), timeout=5).status_code == 201
    wait_for(lambda: multihost.running("more", 3), timeout=60, what="a replica of more on each host")
    assert {task.node for task in multihost.store.tasks() if task.service == "more"} == {"node-1", "node-2", "node-3"}
