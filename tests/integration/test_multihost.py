"""A cluster of three hosts, each a network namespace with its own Docker engine (cli/hostbed.py): the
agents run inside their hosts against their own engines only, as on three machines."""

from __future__ import annotations

import socket
import subprocess

import httpx

from shared import labels
from shared.records import TaskState
from tests.support.multihost import MultiHost
from tests.support.procs import TEST_IMAGE, wait_for

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]


def running(multihost: MultiHost, service: str, replicas: int) -> bool:
    tasks = [task for task in multihost.store.tasks() if task.service == service]
    return len(tasks) == replicas and all(task.state is TaskState.RUNNING for task in tasks)


def http_get_from(multihost: MultiHost, index: int, address: str, port: int) -> str:
    """GET / at address:port from inside host `index` (its own namespace, across the bed's LAN)."""
    probe = (
        "import socket,sys\n"
        f"s=socket.create_connection(({address!r},{port}),timeout=5)\n"
        "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "print(s.recv(200).decode(errors='replace').splitlines()[0])\n"
    )
    argv = multihost.bed.command_in(index, ["python3", "-c", probe])
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout.strip()


def test_replicas_spread_over_three_engines_and_answer_across_hosts(multihost: MultiHost) -> None:
    api = multihost.start()
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 6, "command": HTTPD, "restart_policy": "always",
            "ports": [{"container_port": 80}]}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_for(lambda: running(multihost, "web", 6), timeout=90, what="6 replicas running")

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
        assert http_get_from(multihost, other, port.host_ip, port.host_port) == "HTTP/1.1 200 OK"
    # ... and not from the root namespace's loopback: the port is the host's, not this machine's.
    with socket.socket() as sock:
        sock.settimeout(1)
        assert sock.connect_ex(("127.0.0.1", next(iter(tasks.values())).ports[0].host_port)) != 0
