"""Discovery and connectivity across hosts on the 3-host bed: every service with a network is on the
cluster's pod network (a subnet per engine, routed between hosts), and its name resolves, from any
host, to its ready replicas on every host (the cluster DNS each agent serves)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from shared import labels
from shared.podnet import gateway, network_name
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


def test_a_name_reaches_replicas_on_every_host(multihost: MultiHost) -> None:
    api = multihost.start()
    for spec in (service("web", 3, IDENTIFYING_HTTPD, network="app"), service("client", 3, SLEEP, network="app")):
        assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 3) and multihost.running("client", 3), timeout=90,
             what="web and client running on every host")
    node_of = {task.id.replace(".", "-"): task.node for task in multihost.store.tasks() if task.service == "web"}
    for host in multihost.bed.all_hosts():
        container = client_on(multihost, host.index)
        script = (
            "for i in $(seq 60); do printf 'GET /id HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80 | tail -n 1; done"
        )
        with contextlib.closing(engine(host)) as client:
            code, output = client.containers.get(container).exec_run(["sh", "-c", script])
        answered = output.decode(errors="replace").split()
        assert code == 0 and len(answered) == 60, output[-500:]
        reached = {node_of[replica] for replica in answered}
        others = reached - {multihost.node(host.index)}
        assert len(others) >= 2, f"from host{host.index}: {sorted(answered)}"


WATCH = """
import json, sys, time
import dns.message, dns.query, dns.rdatatype
server, name, until = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
while True:  # asked at least once
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1)
        found = sorted(item.address for rrset in reply.answer for item in rrset)
    except Exception as exc:
        found = None
    print(json.dumps({"t": time.time(), "a": found}), flush=True)
    if time.time() >= until:
        break
    time.sleep(0.05)
"""


class DnsWatch:
    """The cluster DNS of host `index` asked for `name` every 50 ms for `seconds` (at least once),
    from inside the host."""

    def __init__(self, multihost: MultiHost, index: int, name: str, seconds: float):
        subnets = multihost.store.subnets()
        [engine_id] = {n.engine_id for n in multihost.store.nodes() if n.id == multihost.node(index)}
        assert engine_id is not None
        server = gateway(subnets[engine_id])
        argv = multihost.bed.command_in(index, [sys.executable, "-c", WATCH, server, name, str(seconds)])
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def samples(self) -> list[tuple[float, set[str] | None]]:
        out, _ = self.proc.communicate(timeout=120)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [(row["t"], None if row["a"] is None else set(row["a"])) for row in rows]


def endpoint_samples(api: str, service_name: str, seconds: float) -> list[tuple[float, set[str]]]:
    """The endpoints, each stamped with when its request was sent: what it shows is the state at that
    time or later (stamped on arrival, a slow answer under load showed an older state than its stamp)."""
    samples = []
    until = time.time() + seconds
    while time.time() < until:
        sent = time.time()
        endpoints = httpx.get(f"{api}/v1/services/{service_name}/endpoints", timeout=5).json()
        samples.append((sent, {e["address"] for e in endpoints}))
        time.sleep(0.05)
    return samples


def follows_within(api: list[tuple[float, set[str]]], dns: list[tuple[float, set[str] | None]],
                   lag: float) -> list[str]:
    """Every DNS answer equals what the API's endpoints said at most `lag` seconds before it, or in the
    API's first request sent after it (the DNS a poll behind at most; and the two are sampled apart,
    so the DNS may show a change only that request shows); returns the answers that did not. Answers
    after the last endpoints sample are not judged: the endpoints of that time were not sampled."""
    wrong = []
    for when, answer in dns:
        if api and when > api[-1][0]:
            continue
        if answer is None:
            wrong.append(f"{when:.2f}: no answer")
            continue
        recent = [addresses for t, addresses in api if when - lag <= t <= when]
        recent += [addresses for t, addresses in api if t > when][:1]
        if recent and answer not in recent:
            wrong.append(f"{when:.2f}: {sorted(answer)} vs endpoints {[sorted(a) for a in recent[-3:]]}")
    return wrong


def test_a_drained_replica_stops_being_answered_and_its_replacement_starts(multihost: MultiHost) -> None:
    api = multihost.start()
    assert httpx.post(f"{api}/v1/services", json=service("web", 3, IDENTIFYING_HTTPD, network="app"),
                      timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 3), timeout=90, what="web running on every host")
    moved = next(task for task in multihost.store.tasks() if task.node == multihost.node(2))
    # The DNS follows the records a poll later: until host1's has seen all three running, its answers
    # show a state from before the endpoints were first sampled, which nothing here could judge them by.
    running = {task.address for task in multihost.store.tasks()}
    wait_for(lambda: DnsWatch(multihost, 1, "web.app", 0).samples()[-1][1] == running, timeout=10,
             what="host1's cluster DNS answering the three replicas")
    watch = DnsWatch(multihost, 1, "web.app", 12)
    with ThreadPoolExecutor(1) as pool:  # the endpoints from before the drain on
        sampling = pool.submit(endpoint_samples, api, "web", 10)
        time.sleep(0.5)
        httpx.post(f"{api}/v1/nodes/{multihost.node(2)}/drain", timeout=5).raise_for_status()
        api_samples = sampling.result()
    dns_samples = watch.samples()
    assert follows_within(api_samples, dns_samples, 2.0) == []
    final = dns_samples[-1][1]
    replacement = multihost.store.task(moved.id)
    assert final is not None and moved.address not in final and replacement.address in final
    assert replacement.node != multihost.node(2)


def test_a_scaled_down_service_is_never_answered_by_a_stopped_replica(multihost: MultiHost) -> None:
    api = multihost.start()
    # Stops at once on SIGTERM (unlike httpd as PID 1): the quickest a replica can be gone.
    quick = ["sh", "-c", "trap 'exit 0' TERM; hostname > /www/id; httpd -f -p 80 -h /www & wait"]
    spec = service("web", 3, quick, network="app")
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201
    wait_for(lambda: multihost.running("web", 3), timeout=90, what="web running on every host")
    before = {task.id: task for task in multihost.store.tasks()}
    watch = DnsWatch(multihost, 1, "web.app", 8)
    stopped_at: dict[str, float] = {}
    httpx.post(f"{api}/v1/services/web/scale", json={"replicas": 1}, timeout=5).raise_for_status()
    until = time.time() + 8
    while time.time() < until:  # when each retired replica's container stopped, from its engine
        for task_id, task in before.items():
            if task_id in stopped_at or task.slot == 1:
                continue
            index = int((task.node or "node-0").rpartition("-")[2])
            running = {c.labels[labels.TASK] for c in multihost.containers(index)}
            if task_id not in running:
                stopped_at[task_id] = time.time()
        time.sleep(0.05)
    assert set(stopped_at) == {"web.2", "web.3"}
    for when, answer in watch.samples():
        assert answer is not None
        for task_id, stopped in stopped_at.items():
            if when >= stopped:
                late = when - stopped
                assert before[task_id].address not in answer, f"{task_id} answered {late:.2f}s after it stopped"
