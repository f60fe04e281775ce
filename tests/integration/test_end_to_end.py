"""The whole path on real parts: REST API -> Redis -> scheduler -> RQ queues -> node agents -> Docker."""

from __future__ import annotations

import docker
import httpx
import pytest

from shared import labels
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for

MIB = 1024 * 1024


def service(name: str, replicas: int, **fields) -> dict:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, **fields}


def tasks(api: str, service_name: str) -> list[dict]:
    return httpx.get(f"{api}/v1/tasks", params={"service": service_name}, timeout=5).json()


def running(api: str, service_name: str) -> list[dict]:
    return [t for t in tasks(api, service_name) if t["state"] == "running"]


def wait_running(api: str, service_name: str, count: int, timeout: float = 60) -> list[dict]:
    def settled() -> list[dict] | None:
        current = tasks(api, service_name)
        ok = [t for t in current if t["state"] == "running"]
        return ok if len(ok) == count and len(current) == count else None

    return wait_for(settled, timeout=timeout, what=f"{count} running replicas of {service_name}")


def containers(cluster: str, service_name: str) -> list:
    client = docker.from_env()
    return client.containers.list(
        filters={"label": [f"{labels.CLUSTER}={cluster}", f"{labels.SERVICE}={service_name}"]}
    )


@pytest.fixture
def cluster_api(procs: Processes) -> str:
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    procs.agent("node-2", "127.0.0.3", cpu=2000, memory=2048 * MIB)
    wait_for(
        lambda: [n["status"] for n in httpx.get(f"{api}/v1/nodes", timeout=5).json()] == ["ready", "ready"],
        what="two ready nodes",
    )
    return api


def test_apply_runs_replicas_as_configured_and_spread(cluster: str, cluster_api: str):
    api = cluster_api
    config = {
        "cluster_name": cluster,
        "services": [
            service(
                "web",
                3,
                command=["httpd", "-f", "-p", "8080", "-h", "/www"],
                ports=[{"host_port": 0, "container_port": 8080}],
                env=["GREETING=hello", "MODE=test"],
                resources={"cpu_millicores": 250, "memory_bytes": 64 * MIB},
                restart_policy="always",
            ),
            service(
                "ticker",
                3,
                command=["sh", "-c", "while true; do sleep 1; done"],
                resources={"cpu_millicores": 100, "memory_bytes": 32 * MIB},
            ),
        ],
    }
    response = httpx.post(f"{api}/v1/apply", json=config, timeout=10)
    assert response.status_code == 200, response.text
    assert sorted(response.json()["created"]) == ["ticker", "web"]

    web = wait_running(api, "web", 3)
    wait_running(api, "ticker", 3)
    for name in ("web", "ticker"):
        nodes = {t["node"] for t in running(api, name)}
        assert nodes == {"node-1", "node-2"}, f"{name} not spread: {nodes}"

    by_id = {t["container_id"]: t for t in web}
    for container in containers(cluster, "web"):
        attrs = container.attrs
        task = by_id[container.id]
        assert attrs["Config"]["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]
        assert {"GREETING=hello", "MODE=test"} <= set(attrs["Config"]["Env"])
        assert attrs["HostConfig"]["Memory"] == 64 * MIB
        assert attrs["HostConfig"]["CpuQuota"] == 25_000 and attrs["HostConfig"]["CpuPeriod"] == 100_000
        assert attrs["Config"]["Labels"][labels.TASK] == task["id"]
        assert attrs["Config"]["Labels"][labels.NODE] == task["node"]
        binding = attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
        address = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}[task["node"]]
        assert binding["HostIp"] == address
        [published] = task["ports"]
        assert published["host_ip"] == address and published["host_port"] == int(binding["HostPort"]) > 0
        # the replica answers on its node's address and the engine-chosen port
        body = wait_for(
            lambda p=published: httpx.get(f"http://{p['host_ip']}:{p['host_port']}/index.html", timeout=2).text,
            what="the replica to serve HTTP",
        )
        assert body.strip() == "ok"

    started = httpx.get(f"{api}/v1/events", params={"service": "web"}, timeout=5).json()
    assert sorted(e["data"]["task"] for e in started if e["type"] == "task_started") == ["web.1", "web.2", "web.3"]

    status = httpx.get(f"{api}/v1/services/web", timeout=5).json()["status"]
    assert status["desired_replicas"] == 3 and status["running_replicas"] == 3 and status["health"] == "healthy"


def test_scale_up_down_and_delete(cluster: str, cluster_api: str):
    api = cluster_api
    # Exits on SIGTERM, so each scale-down stop is prompt (busybox sleep as PID 1 ignores SIGTERM).
    spec = service("scaled", 3, command=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_running(api, "scaled", 3)

    assert httpx.post(f"{api}/v1/services/scaled/scale", json={"replicas": 5}, timeout=5).status_code == 200
    wait_running(api, "scaled", 5)
    assert len(containers(cluster, "scaled")) == 5

    assert httpx.post(f"{api}/v1/services/scaled/scale", json={"replicas": 1}, timeout=5).status_code == 200
    wait_running(api, "scaled", 1)
    wait_for(lambda: len(containers(cluster, "scaled")) == 1, what="scaled-down containers removed")
    assert [t["slot"] for t in tasks(api, "scaled")] == [1]

    assert httpx.delete(f"{api}/v1/services/scaled", timeout=5).status_code in (200, 202)
    wait_for(lambda: httpx.get(f"{api}/v1/services/scaled", timeout=5).status_code == 404, what="service gone")
    docker_client = docker.from_env()
    leftovers = docker_client.containers.list(
        all=True, filters={"label": [f"{labels.CLUSTER}={cluster}", f"{labels.SERVICE}=scaled"]}
    )
    assert leftovers == []
    assert tasks(api, "scaled") == []


def test_missing_image_fails_the_task_with_the_image_named(cluster_api: str):
    api = cluster_api
    image = "gorchester/does-not-exist:1.0"
    spec = {"service_name": "ghost", "image": image, "replicas": 1}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    failed = wait_for(
        lambda: [t for t in tasks(api, "ghost") if t["state"] == "failed"], what="the task to fail", timeout=60
    )
    assert image in failed[0]["reason"]
    events = httpx.get(f"{api}/v1/events", params={"service": "ghost"}, timeout=5).json()
    # The container never ran, so it is retried with the back-off (test_networks.py): one or more failures.
    failures = [e for e in events if e["type"] == "task_failed"]
    assert failures and all(e["data"]["task"] == failed[0]["id"] and image in e["message"] for e in failures)


def test_too_big_for_every_node_stays_pending_until_a_bigger_node_joins(procs: Processes, cluster_api: str):
    api = cluster_api
    spec = service("big", 1, command=["sleep", "3600"], resources={"cpu_millicores": 3000, "memory_bytes": 64 * MIB})
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    pending = wait_for(lambda: [t for t in tasks(api, "big") if t["state"] == "pending"], what="a pending task")
    reason = pending[0]["reason"]
    assert "node-1: not enough cpu (needs 3000m, 2000m free)" in reason
    assert "node-2: not enough cpu" in reason

    procs.agent("node-3", "127.0.0.4", cpu=4000, memory=2048 * MIB)
    [task] = wait_running(api, "big", 1)
    assert task["node"] == "node-3"
