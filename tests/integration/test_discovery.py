"""Service discovery on one engine: a service's name resolves on its network from another service's
container (the cluster DNS), and GET /v1/services/{name}/endpoints lists where its ready replicas answer."""

from __future__ import annotations

from pathlib import Path

import docker
import httpx

from cli.cluster import remove_cluster_objects
from shared.podnet import network_name
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
        # The container address is the one the engine gave it on the cluster's network, which every
        # service with a `network` joins (one bridge per cluster per engine: shared/podnet.py).
        [container] = [c for c in containers(cluster, backend) if c.labels["gorchester.task"] == endpoint["task"]]
        attrs = engine.api.inspect_container(container.id)
        assert attrs["NetworkSettings"]["Networks"][network_name(cluster)]["IPAddress"] == endpoint["address"]
    # The name is the cluster DNS's: it answers with exactly the endpoints' addresses.
    code, output = client.exec_run(["nslookup", f"{backend}.{network}"])
    answered = {line.split()[-1] for line in output.decode().splitlines()[2:] if line.startswith("Address")}
    assert code == 0 and answered == {e["address"] for e in endpoints}, output
    assert httpx.get(f"{api}/v1/services/nope/endpoints", timeout=5).status_code == 404


def test_two_clusters_on_one_engine_share_no_network_and_never_resolve_each_others_names(
    procs: Processes, cluster: str, tmp_path: Path, docker_cleanup: None
):
    other = f"{cluster}b"
    (tmp_path / other).mkdir()
    second = Processes({**procs.env, "GORCHESTER_CLUSTER": other}, tmp_path / other)
    try:
        apis = {cluster: start_cluster(procs, 2), other: start_cluster(second, 2)}
        for api in apis.values():  # the same names in both: `web` on network `app`, and a client
            create(api, service("web", 2, command=HTTPD, network="app"))
            create(api, service("client", 1, command=SLEEPER, network="app"))
        for name in apis:
            wait_for(lambda name=name: len(containers(name, "web")) == 2 and containers(name, "client"),
                     timeout=60, what=f"{name}'s replicas")
        engine = docker.from_env()
        nets = {name: engine.networks.get(network_name(name)) for name in apis}
        assert nets[cluster].id != nets[other].id
        addresses = {
            name: {e["address"] for e in wait_for(lambda api=api: _ready(api, 2), what="2 endpoints")}
            for name, api in apis.items()
        }
        assert not addresses[cluster] & addresses[other]
        for name in apis:
            [client] = containers(name, "client")
            code, output = client.exec_run(["nslookup", "web.app"])
            answered = {line.split()[-1] for line in output.decode().splitlines()[2:] if line.startswith("Address")}
            assert code == 0 and answered == addresses[name], output  # its own cluster's replicas only
            stranger = next(iter(addresses[other if name == cluster else cluster]))
            code, _ = client.exec_run(["sh", "-c", f"nc -w 2 {stranger} 80 </dev/null"])
            assert code != 0  # and the other cluster's replicas are out of reach
    finally:
        second.close()
        remove_cluster_objects(other, networks=True, volumes=True)


def _ready(api: str, replicas: int) -> list[dict] | None:
    endpoints = httpx.get(f"{api}/v1/services/web/endpoints", timeout=5).json()
    return endpoints if len(endpoints) == replicas else None
