"""A cluster of three hosts, each a network namespace with its own Docker engine (cli/hostbed.py): the
agents run inside their hosts against their own engines only, as on three machines."""

from __future__ import annotations

import ipaddress
import socket

import httpx

from shared import labels
from tests.integration.test_end_to_end import service
from tests.integration.test_health import FAST, MIB, create, http_check, wait_healthy
from tests.integration.test_health import HTTPD as GRACEFUL_HTTPD
from tests.integration.test_metrics import values
from tests.support.multihost import MultiHost, http_get_in
from tests.support.procs import TEST_IMAGE, wait_for

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]


def test_replicas_spread_over_three_engines_and_answer_across_hosts(multihost: MultiHost) -> None:
    api = multihost.start()
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 6, "command": HTTPD, "restart_policy": "always",
            "ports": [{"container_port": 80}]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 6), timeout=90, what="6 replicas running")

    tasks = {task.id: task for task in multihost.store.tasks()}
    for host in multihost.bed.all_hosts():
        node = multihost.node(host.index)
        on_engine = {c.labels[labels.TASK] for c in multihost.containers(host.index)}
        assert on_engine == {task_id for task_id, task in tasks.items() if task.node == node}  # each engine its own
        assert len(on_engine) == 2  # spread: two per host
    # Each published port answers at its node's address, from another host.
    for task in tasks.values():
        [port] = task.ports
        index = int(task.node.rpartition("-")[2]) if task.node else 0
        assert port.host_ip == multihost.bed.host(index).address
        other = index % len(multihost.bed.all_hosts()) + 1
        assert http_get_in(multihost.bed, other, port.host_ip, port.host_port) == "HTTP/1.1 200 OK"
    # ... and not from the root namespace's loopback: the port is the host's, not this machine's.
    with socket.socket() as sock:
        sock.settimeout(1)
        assert sock.connect_ex(("127.0.0.1", next(iter(tasks.values())).ports[0].host_port)) != 0


def test_health_checks_and_usage_samples_work_inside_each_host(multihost: MultiHost) -> None:
    """The agent checks its replicas from inside its host (their addresses are on its engine's bridge)
    and reads their usage from the cgroups its engine made (under the engine's own cgroup parent)."""
    multihost.procs.env["GORCHESTER_METRICS_INTERVAL"] = "1"
    api = multihost.start()
    resources = {"cpu_millicores": 100, "memory_bytes": 32 * MIB}
    create(api, service("web", 3, command=GRACEFUL_HTTPD, health_check=http_check(), resources=resources))
    create(api, service("tcp", 3, command=GRACEFUL_HTTPD, health_check={"type": "tcp", "port": 80, **FAST}))
    for name in ("web", "tcp"):
        replicas = wait_healthy(api, name, 3)
        assert {replica["node"] for replica in replicas} == {"node-1", "node-2", "node-3"}
        for replica in replicas:
            host = multihost.bed.host(int(replica["node"].rpartition("-")[2]))
            assert ipaddress.ip_address(replica["address"]) in ipaddress.ip_network(host.bridge_cidr, strict=False)

    def sampled() -> dict | None:
        body = httpx.get(f"{api}/v1/services/web/metrics", timeout=5).json()
        return body if body["average"]["replicas_sampled"] == 3 else None

    body = wait_for(sampled, timeout=60, what="every replica of web sampled")
    for replica in body["replicas"]:
        assert 0 < replica["memory_bytes"] < 32 * MIB and replica["fresh"], replica
    # Every sample came from the cgroup files, none from the engine's (slow) stats API.
    exposed = values(httpx.get(f"{api}/metrics", timeout=5).text)
    counted = {(lab["node"], lab["source"]): count for lab, count in exposed["gorchester_metrics_samples_total"]}
    for host in multihost.bed.all_hosts():
        node = multihost.node(host.index)
        assert counted.get((node, "cgroup"), 0) > 0 and (node, "engine") not in counted, counted
