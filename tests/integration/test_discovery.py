"""Service discovery: a service's name resolves on its network from another service's container,
and GET /v1/services/{name}/endpoints lists where its ready replicas answer."""

from __future__ import annotations

import docker
import httpx

from tests.integration.test_end_to_end import containers, service
from tests.integration.test_health import HTTPD, SLEEPER, create, http_check, start_cluster, wait_healthy
from tests.support.procs import Processes, wait_for

NODE_ADDRESSES = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}


def test_a_service_reaches_another_by_name_and_endpoints_list_its_replicas(procs: Processes, cluster: str):
    api = start_cluster(procs, 2)
    network = f"{cluster}-net"  # a network of the test's own: aliases never meet another test's services
    backend = f"be-{cluster}"
    create(api, service(backend, 2, command=HTTPD, network=network, ports=[{"container_port": 80}],
                        health_check=http_check()))
    create(api, service("client", 1, command=SLEEPER, network=network))
    replicas = wait_healthy(api, backend, 2)
    wait_for(lambda: containers(cluster, "client"), what="the client's container")

    [client] = containers(cluster, "client")
    code, output = client.exec_run(["wget", "-q", "-O", "-", f"http://{backend}:80/health"])
    assert code == 0 and output.decode().strip() == "ok", output

    endpoints = httpx.get(f"{api}/v1/services/{backend}/endpoints", timeout=5).json()
    assert sorted(e["task"] for e in endpoints) == sorted(t["id"] for t in replicas)
    engine = docker.from_env()
    for endpoint in endpoints:
        assert endpoint["network"] == network
        assert endpoint["node_address"] == NODE_ADDRESSES[endpoint["node"]]
        [port] = endpoint["ports"]
        assert port["host_ip"] == endpoint["node_address"] and port["container_port"] == 80
        body = httpx.get(f"http://{port['host_ip']}:{port['host_port']}/health", timeout=2).text
        assert body.strip() == "ok"
        # The container address is the one the engine gave it on the service network.
        [container] = [c for c in containers(cluster, backend) if c.labels["gorchester.task"] == endpoint["task"]]
        attrs = engine.api.inspect_container(container.id)
        assert attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == endpoint["address"]
        assert backend in attrs["NetworkSettings"]["Networks"][network]["Aliases"]
    assert httpx.get(f"{api}/v1/services/nope/endpoints", timeout=5).status_code == 404
