"""Connection setup across hosts: by a service's name against the replica's address directly.

On a bed of 3 hosts (cli/hostbed.py), each its own engine, with gorchester as in bench/multihost.py
(default settings): a service `web` of 2 replicas (busybox httpd) and a service `client` of 3
(`sleep`), both with `network: app`, so on the cluster's pod network. From the `client` replica on the
host that runs no `web` replica, a loop of `--connections` HTTP requests with busybox `nc` (a process
each: resolve, connect, `GET /`, read to the close) to
- `web`: resolved by each `nc` through the cluster DNS its host's agent serves at the bridge, which
  answers with both replicas' addresses in a varying order, both on other hosts;
- the two replicas' addresses, alternately: the same connections with no name to resolve.
Both loops run in the same container through one `docker exec` each, interleaved per run (the order
rotated); reported per connection (the loop's wall time over its connections), and their ratio.

    .venv/bin/python -m bench.discovery --runs 5 --write
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Callable

from bench import harness
from bench.harness import Samples, log
from bench.multihost import HOSTS, bed_cluster
from cli.hostbed import bed
from shared import labels
from tests.support.procs import wait_for

CONNECTIONS = 200
WEB = ["sh", "-c", "echo ok > /www/index.html && exec httpd -f -p 80 -h /www"]
SLEEP = ["sleep", "3600"]
KINDS = ("name", "address")
# Each target in turn, as many connections as asked; prints how many failed (none expected).
LOOP = (
    'n=$1; shift; failed=0; i=0; while [ $i -lt "$n" ]; do for target in "$@"; do '
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \"$target\" 80 | grep -q '^ok' || failed=$((failed+1)); "
    "i=$((i+1)); done; done; echo $failed"
)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="connections per measurement")


def service(name: str, replicas: int, command: list[str]) -> dict[str, object]:
    return {"service_name": name, "image": harness.IMAGE, "replicas": replicas, "command": command,
            "restart_policy": "always", "network": "app"}


def timed_loop(container, connections: int, targets: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Seconds per connection of `connections` requests to `targets` in turn, from inside `container`."""
    started = time.perf_counter()
    code, output = container.exec_run(["sh", "-c", LOOP, "loop", str(connections), *targets])
    elapsed = time.perf_counter() - started
    failed = output.decode(errors="replace").strip()
    if code != 0 or failed != "0":
        raise RuntimeError(f"connections to {targets}: exit {code}, failed {failed!r}")
    return elapsed / connections


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], extra=options)
    per_connection = {kind: Samples(kind) for kind in KINDS}
    ratios = Samples("ratio")
    loads = []
    with bed(f"db{uuid.uuid4().hex[:4]}", HOSTS, images=[harness.IMAGE]) as hosts, \
            bed_cluster(hosts, args.keep_logs) as cluster:
        for spec in (service("web", 2, WEB), service("client", HOSTS, SLEEP)):
            response = cluster.http.post(f"{cluster.url}/v1/services", json=spec)
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")
        web = wait_for(lambda: cluster.running("web", 2), timeout=120, what="web running")
        wait_for(lambda: cluster.running("client", HOSTS), timeout=120, what="client running")
        web_nodes = {task["node"] for task in web}
        addresses = [task["address"] for task in web]
        [index, *_] = [host.index for host in hosts.all_hosts() if cluster.node(host.index) not in web_nodes]
        engine = harness.docker_client(hosts.host(index).docker_host)
        with contextlib.closing(engine):
            [client] = engine.containers.list(
                filters={"label": [f"{labels.CLUSTER}={cluster.name}", f"{labels.SERVICE}=client"]})
            log(f"client on host{index}; web on {sorted(web_nodes)} at {addresses}")
            measure: dict[str, Callable[[], float]] = {
                "name": lambda: timed_loop(client, args.connections, ["web"]),
                "address": lambda: timed_loop(client, args.connections, addresses),
            }
            for kind in KINDS:  # a warm-up of each, not counted
                try:
                    measure[kind]()
                except RuntimeError as exc:
                    log(f"warm-up: {exc}")
            for run in range(args.runs):
                loads.append(harness.load())
                got = {}
                for kind in KINDS[run % 2:] + KINDS[: run % 2]:
                    got[kind] = measure[kind]()
                    per_connection[kind].add(got[kind] * 1000)
                ratios.add(got["name"] / got["address"])
                log(f"run {run + 1}/{args.runs}: name {got['name'] * 1000:.2f} ms, "
                    f"address {got['address'] * 1000:.2f} ms per connection")
    command = f".venv/bin/python -m bench.discovery --runs {args.runs}"
    if args.connections != CONNECTIONS:
        command += f" --connections {args.connections}"
    report = render(command + " --write", per_connection, ratios, args.connections, loads)
    print(report)
    if args.write:
        harness.write_section("discovery", report)


def render(command: str, per_connection: dict[str, Samples], ratios: Samples, connections: int,
           loads: list[str]) -> str:
    def cell(samples: Samples, unit: str = "") -> str:
        return f"**{samples.median:.2f}{unit}** ({samples.spread()})"

    rows = [
        ["by name (`web`, the cluster DNS)", cell(per_connection["name"])],
        ["by address (the replicas', alternately)", cell(per_connection["address"])],
        ["name / address", cell(ratios, "x")],
    ]
    runs = "\n".join(f"- {samples.name}: {samples.all()}" for samples in (*per_connection.values(), ratios))
    return (
        f"_Command:_ `{command}`\n\n_Machine:_ {harness.machine()}; load averages at each run: "
        f"{'; '.join(loads)}\n\n"
        f"Medians of {len(ratios.values)} runs of {connections} connections each, milliseconds per "
        "connection (min–max in brackets):\n\n"
        + harness.markdown_table(["connection from host to a replica on another host", "ms per connection"], rows)
        + f"\n\n<details><summary>All runs (in run order)</summary>\n\n{runs}\n\n</details>\n"
    )


if __name__ == "__main__":
    main()
