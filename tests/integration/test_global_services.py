"""A global service on real parts: one replica on every ready node, one more for a node that joins,
none left for a node drained or removed, and none moved elsewhere when a node dies."""

from __future__ import annotations

import httpx

from tests.integration.test_end_to_end import containers, tasks
from tests.integration.test_health import HTTPD, MIB, start_cluster
from tests.integration.test_rollout_commands import gorchester
from tests.support.procs import Processes, wait_for

AGENT = {"service_name": "agent", "image": "gorchester/busybox:latest", "mode": "global", "command": HTTPD}


def placed(api: str) -> dict[str, str]:
    """Each running replica's node, by node."""
    return {t["node"]: t["id"] for t in tasks(api, "agent") if t["state"] == "running"}


def desired(api: str) -> int:
    return httpx.get(f"{api}/v1/services/agent", timeout=5).json()["status"]["desired_replicas"]


def test_a_global_service_follows_nodes_joining_and_leaving(cluster: str, procs: Processes):
    api = start_cluster(procs, 2)
    response = httpx.post(f"{api}/v1/services", json=AGENT, timeout=5)
    assert response.status_code == 201, response.text
    assert "replicas" not in response.json() or response.json()["replicas"] is None
    wait_for(lambda: set(placed(api)) == {"node-1", "node-2"}, what="one replica per node")
    assert desired(api) == 2

    procs.agent("node-3", "127.0.0.4", cpu=4000, memory=4096 * MIB)
    wait_for(lambda: set(placed(api)) == {"node-1", "node-2", "node-3"}, timeout=60, what="node-3's replica")
    assert desired(api) == 3 and len(containers(cluster, "agent")) == 3

    procs.kill("node-3")  # SIGKILL: its replica waits for it, never moved to another node
    wait_for(lambda: any(t["state"] == "pending" and "node-3" in (t["reason"] or "") for t in tasks(api, "agent")),
             timeout=60, what="node-3's replica waiting for it")
    assert set(placed(api)) == {"node-1", "node-2"}
    removed = gorchester(api, "node", "rm", "node-3")
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: len(tasks(api, "agent")) == 2, what="node-3's slot retired")

    assert httpx.post(f"{api}/v1/nodes/node-1/drain", timeout=5).status_code == 200
    wait_for(lambda: [t["node"] for t in tasks(api, "agent")] == ["node-2"], timeout=60, what="node-1's replica gone")
    assert desired(api) == 1
    assert httpx.post(f"{api}/v1/nodes/node-1/activate", timeout=5).status_code == 200
    wait_for(lambda: set(placed(api)) == {"node-1", "node-2"}, timeout=60, what="node-1's replica back")

    scale = httpx.post(f"{api}/v1/services/agent/scale", json={"replicas": 3}, timeout=5)
    assert scale.status_code == 422 and "replicas: not allowed with mode global" in scale.text
