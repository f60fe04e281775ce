"""`gorchester rebalance` on real parts: after a node comes back, replicas move to it one at a time,
start-first, and the service never has fewer healthy replicas than it asks for."""

from __future__ import annotations

import json

import httpx

from tests.integration.test_end_to_end import containers, tasks
from tests.integration.test_health import start_cluster, wait_healthy
from tests.integration.test_rolling import sampling, serving, web
from tests.integration.test_rollout_commands import gorchester
from tests.support.procs import Processes, wait_for


def moving(api: str) -> int:
    """Replicas being moved: a new container started, the old one kept until it is ready."""
    return sum(1 for task in tasks(api, "web") if task["previous"] is not None)


def test_a_rebalance_spreads_replicas_back_without_dropping_below_desired(cluster: str, procs: Processes):
    api = start_cluster(procs, 2)
    assert httpx.post(f"{api}/v1/nodes/node-2/drain", timeout=5).status_code == 200
    assert httpx.post(f"{api}/v1/services", json=web(4), timeout=5).status_code == 201
    assert {t["node"] for t in wait_healthy(api, "web", 4)} == {"node-1"}
    assert httpx.post(f"{api}/v1/nodes/node-2/activate", timeout=5).status_code == 200
    wait_for(lambda: httpx.get(f"{api}/v1/nodes/node-2", timeout=5).json()["status"] == "ready", what="node-2")

    planned = json.loads(gorchester(api, "rebalance", "web", "--dry-run", "-o", "json").stdout)
    [plan] = planned["services"]
    assert plan["moves"] == ["web.4", "web.3"]
    assert [(p["task"], p["from_node"], p["node"]) for p in plan["placements"]] == [("web.4", "node-1", "node-2")]
    assert "rebalance: moves web.4, web.3" in gorchester(api, "rebalance", "web", "--dry-run").stdout
    assert {t["node"] for t in wait_healthy(api, "web", 4)} == {"node-1"}  # a dry run moved nothing

    with sampling(lambda: serving(api, "web")) as healthy, sampling(lambda: moving(api)) as in_flight:
        done = gorchester(api, "rebalance", "web", "--wait", "--timeout", "120")
        assert done.returncode == 0, done.stderr
        assert "service web rebalanced" in done.stdout and "short of" not in done.stdout
    assert healthy and min(healthy) >= 4, healthy
    assert in_flight and max(in_flight) == 1, in_flight  # one move at a time, and there was one
    wait_for(lambda: len(containers(cluster, "web")) == 4, what="the moved replicas' old containers removed")
    nodes = [t["node"] for t in wait_healthy(api, "web", 4)]
    assert sorted(nodes) == ["node-1", "node-1", "node-2", "node-2"]
    again = gorchester(api, "rebalance", "web", "--dry-run")
    assert "spread evenly already" in again.stdout, again.stdout
