"""Convergence: wall time from POST /v1/services (N replicas, 2 nodes) until the API reports N running.

Measured against, in the same run, the floor (N `docker run -d` of the same image from 2 parallel
CLI clients) and Docker Swarm (`docker service create --replicas N` until N tasks are running).
Target: gorchester within 1.2x of the floor and faster than Swarm at every N. Runs are interleaved
(gorchester, floor, swarm, in an order rotated per run) so load from other work on the machine falls
on all three alike. A fourth timing per run, outside the targets, shows what service discovery costs:
the same service with `network` set (a user-defined bridge network where its name resolves; like a
Swarm service without `--network`, neither the target's gorchester service nor the baselines have one).

    .venv/bin/python -m bench.convergence --runs 3 --write
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence

from bench import harness
from bench.harness import Samples, log, poll_until

SIZES = (10, 30, 100)
TARGET = 1.2
TIMEOUT = 180.0
SETTLE = 1.0  # seconds of quiet after cleanup, before the next timed run
KINDS = ("gorchester", "floor", "swarm", "network")  # "network": gorchester with service discovery


def time_gorchester(cluster: harness.Cluster, name: str, replicas: int, network: str | None = None) -> float:
    start = time.perf_counter()
    cluster.create_service(name, replicas, network=network)
    poll_until(lambda: cluster.running(name, replicas), TIMEOUT, f"{replicas} running replicas of {name}")
    elapsed = time.perf_counter() - start
    nodes = sorted({t["node"] for t in cluster.tasks(name)})
    cluster.delete_service(name)
    log(f"gorchester N={replicas}{' on ' + network if network else ''}: {elapsed:.2f}s on {nodes}")
    return elapsed


def time_floor(replicas: int, engines: Sequence[str | None] = (None, None)) -> float:
    """N × `docker run -d`, one client per entry of `engines` (default: 2 clients, the machine's engine)."""
    label = f"bench={uuid.uuid4().hex[:10]}"
    try:
        start = time.perf_counter()
        harness.docker_run_parallel(replicas, label, engines)
        elapsed = time.perf_counter() - start
    finally:
        for engine in set(engines):
            harness.remove_labelled(label, engine)
    log(f"floor      N={replicas}: {elapsed:.2f}s")
    return elapsed


def time_swarm(swarm: harness.Swarm, name: str, replicas: int, *extra: str) -> float:
    """`extra`: more `docker service create` options."""
    try:
        start = time.perf_counter()
        swarm.create_service(name, replicas, *extra)
        poll_until(lambda: len(swarm.running_tasks(name)) >= replicas, TIMEOUT, f"{replicas} swarm tasks of {name}")
        elapsed = time.perf_counter() - start
    finally:
        swarm.remove_service(name)
    log(f"swarm      N={replicas}: {elapsed:.2f}s")
    return elapsed


def sizes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="replica counts (default %(default)s)")


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0], extra=sizes_option)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    results = {n: {k: Samples(k) for k in KINDS} for n in sizes}
    ratios = {n: {"floor": Samples("floor"), "swarm": Samples("swarm")} for n in sizes}
    with harness.swarm() as swarm, harness.cluster(args.keep_logs) as cluster:
        time_gorchester(cluster, "warmup", 1, network=f"{cluster.name}-net")  # untimed: makes the network
        for run in range(args.runs):
            for n in sizes:
                measure = {
                    "gorchester": lambda n=n, run=run: time_gorchester(cluster, f"c{n}r{run}", n),
                    "floor": lambda n=n: time_floor(n),
                    "swarm": lambda n=n, run=run: time_swarm(swarm, f"{swarm.prefix}c{n}r{run}", n),
                    "network": lambda n=n, run=run: time_gorchester(
                        cluster, f"d{n}r{run}", n, network=f"{cluster.name}-net"
                    ),
                }
                order = list(measure)
                order = order[run % 4 :] + order[: run % 4]
                got = {}
                for kind in order:
                    time.sleep(SETTLE)
                    got[kind] = measure[kind]()
                    results[n][kind].add(got[kind])
                for base in ("floor", "swarm"):
                    ratios[n][base].add(got["gorchester"] / got[base])
            log(f"run {run + 1}/{args.runs} done")
    report = render(results, ratios, args.runs)
    print(report)
    if args.write:
        harness.write_section("convergence", report)


def render(results: dict, ratios: dict, runs: int) -> str:
    rows = []
    for n in results:
        r, q = results[n], ratios[n]
        floor_ratio = q["floor"].median
        rows.append(
            [
                n,
                f"**{r['gorchester'].median:.2f}** ({r['gorchester'].spread()})",
                f"**{r['floor'].median:.2f}** ({r['floor'].spread()})",
                f"**{r['swarm'].median:.2f}** ({r['swarm'].spread()})",
                f"**{floor_ratio:.2f}x**",
                f"{q['swarm'].median:.2f}x",
                "met" if floor_ratio <= TARGET else "**missed**",
                "met" if q["swarm"].median < 1 else "**missed**",
                f"{r['network'].median:.2f} ({r['network'].spread()})",
            ]
        )
    table = harness.markdown_table(
        [
            "N",
            "gorchester s (min–max)",
            "floor: N× `docker run -d`, 2 clients s",
            "Docker Swarm s",
            "gorchester / floor",
            "gorchester / swarm",
            f"target ≤ {TARGET}x floor",
            "target: faster than Swarm",
            "gorchester with `network` (discovery) s",
        ],
        rows,
    )
    raw = "\n".join(
        f"- N={n} {kind}: {results[n][kind].all()}" for n in results for kind in KINDS
    )
    ratio_note = (
        "Ratios are the median of the per-run ratios (each run times gorchester and its baselines back to back)."
    )
    return (
        f"_Command:_ `.venv/bin/python -m bench.convergence --runs {runs} --write`\n\n"
        f"_Machine:_ {harness.machine()}\n\n"
        f"Medians of {runs} runs, seconds (min–max in brackets):\n\n{table}\n\n{ratio_note}\n\n"
        f"<details><summary>All runs (seconds, in run order)</summary>\n\n{raw}\n\n</details>\n"
    )


if __name__ == "__main__":
    main()
