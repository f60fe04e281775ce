"""Discovery and connectivity across hosts on the 3-host bed: every service with a network is on the
cluster's pod network (a subnet per engine, routed between hosts), and its name resolves, from any
host, to its ready replicas on every host (the cluster DNS each agent serves)."""

from __future__ import annotations

import contextlib

import httpx

from shared import labels
from shared.podnet import network_name
from tests.support.multihost import MultiHost, engine
from tests.support.procs import TEST_IMAGE, wait_for

# Each replica answers GET /id with its task id (its hostname is the task id with '-' for '.').
IDENTIFYING_HTTPD = ["sh", "-c", "hostname > /www/id && exec httpd -f -p 80 -h /www"]
SLEEP = ["sleep", "3600"]


def service(name: str, replicas: int, command: list[str], **fields: object) -> dict[str, object]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": command,
            "restart_policy": "always", **fields}


def client_on(multihost: MultiHost, index: int) -> str:
    """The container id of the `client` replica on host `index`."""
    [container] = [c for c in multihost.containers(index) if c.labels[labels.SERVICE] == "client"]
    return str(container.id)


def fetch(multihost: MultiHost, index: int, container_id: str, target: str, path: str = "/id") -> str:
    """GET path from `target` (a name or an address) with nc, inside a container on host `index`."""
    script = f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target} 80 | tail -n 1"
    with contextlib.closing(engine(multihost.bed.host(index))) as client:
        code, output = client.containers.get(container_id).exec_run(["sh", "-c", script])
    return output.decode(errors="replace").strip() if code == 0 else ""


def test_containers_reach_each_other_by_address_across_hosts(multihost: MultiHost) -> None:
    api = multihost.start()
    web = service("web", 3, IDENTIFYING_HTTPD, network="app")
    client = service("client", 3, SLEEP, network="app")
    for spec in (web, client):
        assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 3) and multihost.running("client", 3), timeout=90,
             what="web and client running on every host")
    tasks = [task for task in multihost.store.tasks() if task.service == "web"]
    assert len({task.node for task in tasks}) == 3
    subnets = multihost.store.subnets()
    assert len(set(subnets.values())) == 3  # an engine each, none shared
    for host in multihost.bed.all_hosts():
        with contextlib.closing(engine(host)) as client_engine:
            [net] = client_engine.networks.list(names=[network_name(multihost.cluster)])
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] in subnets.values()
        container = client_on(multihost, host.index)
        for task in tasks:
            assert task.address is not None
            assert fetch(multihost, host.index, container, task.address) == task.id.replace(".", "-")
