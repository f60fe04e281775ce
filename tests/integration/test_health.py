"""Health checks on real containers: http, tcp and command checks, unhealthy replicas replaced,
service health from its replicas' health."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_end_to_end import service, tasks
from tests.support.procs import Processes, free_port, wait_for

MIB = 1024 * 1024
NODES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}
# httpd serving /www (index.html and /health say "ok"), exiting at once on SIGTERM.
HTTPD = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
FAST = {"interval": 1, "timeout": 1, "retries": 2}


def http_check(path: str = "/health", port: int = 80) -> dict:
    return {"type": "http", "http_path": path, "port": port, **FAST}


def create(api: str, spec: dict) -> None:
    response = httpx.post(f"{api}/v1/services", json=spec, timeout=5)
    assert response.status_code == 201, response.text


def status(api: str, name: str) -> dict:
    return httpx.get(f"{api}/v1/services/{name}", timeout=5).json()["status"]


def wait_healthy(api: str, name: str, count: int, timeout: float = 60) -> list[dict]:
    def settled() -> list[dict] | None:
        current = tasks(api, name)
        ok = [t for t in current if t["state"] == "running" and t["health"] == "healthy" and t["previous"] is None]
        return ok if len(ok) == count == len(current) else None

    return wait_for(settled, timeout=timeout, what=f"{count} healthy replicas of {name}")


def event_types(api: str, **params: str) -> list[str]:
    return [e["type"] for e in httpx.get(f"{api}/v1/events", params=params, timeout=5).json()]


def start_cluster(procs: Processes, nodes: int = 2, scheduler_env: dict[str, str] | None = None) -> str:
    api = procs.api(free_port())
    procs.scheduler(extra_env=scheduler_env)
    chosen = dict(list(NODES.items())[:nodes])
    for node, address in chosen.items():
        procs.agent(node, address, cpu=4000, memory=4096 * MIB)
    wait_for(
        lambda: {n["id"]: n["status"] for n in httpx.get(f"{api}/v1/nodes", timeout=5).json()}
        == dict.fromkeys(chosen, "ready"),
        what="ready nodes",
    )
    return api


@pytest.fixture
def one_node(procs: Processes) -> str:
    return start_cluster(procs, 1)


def test_http_tcp_and_command_checks_reach_healthy(one_node: str):
    api = one_node
    create(api, service("web", 1, command=HTTPD, health_check=http_check()))
    create(api, service("tcp", 1, command=HTTPD, health_check={"type": "tcp", "port": 80, **FAST}))
    create(api, service("cmd", 1, command=SLEEPER, health_check={"command": ["test", "-d", "/www"], **FAST}))
    for name in ("web", "tcp", "cmd"):
        [replica] = wait_healthy(api, name, 1)
        assert replica["health_output"], replica
        assert status(api, name)["health"] == "healthy"
    assert "HTTP 200" in tasks(api, "web")[0]["health_output"]
    assert tasks(api, "web")[0]["address"]  # the container's address on its network, where it was probed


def test_failing_check_makes_the_replica_unhealthy_and_it_is_replaced_with_restarts_counted(one_node: str):
    api = one_node
    create(api, service("sick", 1, command=HTTPD, restart_policy="on-failure", health_check=http_check("/missing")))
    failed = wait_for(
        lambda: [t for t in tasks(api, "sick") if t["state"] == "failed"],
        timeout=60,
        interval=0.05,
        what="the replica to fail its checks",
    )
    assert failed[0]["health"] == "unhealthy"
    assert failed[0]["reason"].startswith("unhealthy: GET /missing: HTTP 404"), failed[0]
    replaced = wait_for(lambda: [t for t in tasks(api, "sick") if t["restarts"] >= 2], timeout=60, what="restarts")
    assert replaced[0]["gen"] >= 3
    assert "task_restarted" in event_types(api, service="sick")
    assert status(api, "sick")["health"] == "unhealthy"


def test_service_health_is_degraded_when_some_replicas_are_unhealthy(one_node: str):
    api = one_node
    # Replica 2 (hostname sick2-2) always fails its check; replica 1 passes.
    check = {"command": ["sh", "-c", '[ "$(hostname)" != sick2-2 ]'], **FAST}
    create(api, service("sick2", 2, command=SLEEPER, restart_policy="always", health_check=check))
    wait_for(
        lambda: (s := status(api, "sick2"))["health"] == "degraded" and s["healthy_replicas"] == 1,
        timeout=30,
        what="degraded",
    )
    by_slot = {t["slot"]: t for t in tasks(api, "sick2")}
    assert by_slot[1]["health"] == "healthy"
    assert by_slot[2]["health"] != "healthy"
    # Only the healthy replica is an endpoint.
    endpoints = httpx.get(f"{api}/v1/services/sick2/endpoints", timeout=5).json()
    assert [e["task"] for e in endpoints] == ["sick2.1"]


def test_checks_of_a_container_without_a_reachable_network_run_inside_it(one_node: str):
    api = one_node
    create(api, service("isolated", 1, command=HTTPD, network_mode="none", health_check=http_check()))
    create(api, service("isotcp", 1, command=HTTPD, network_mode="none",
                        health_check={"type": "tcp", "port": 80, **FAST}))
    for name in ("isolated", "isotcp"):
        [replica] = wait_healthy(api, name, 1)
        assert replica["address"] is None
