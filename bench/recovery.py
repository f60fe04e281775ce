"""Recovery: time until a 10-replica service is whole again after losing a container or a node.

(a) container loss: `docker rm -f` one replica's container; time until 10 are running again with a
    new container for that slot. gorchester against Docker Swarm (default restart delay, 5 s, and
    `--restart-delay 0s`), interleaved. Target: faster than Swarm.
(b) node loss (gorchester only): SIGKILL the agent carrying the most replicas (about half); time until
    the API reports 10 running, all on the surviving node. Default settings (heartbeat 1 s, down after
    3 missed beats; 2 s when docs/benchmarks.md's numbers were taken). Target: under 10 s. A fresh cluster
    per run, since the agent stays dead.

    .venv/bin/python -m bench.recovery --runs 5 --write
"""

from __future__ import annotations

import datetime as dt
import time

from bench import harness
from bench.harness import Samples, log, poll_until

REPLICAS = 10
TIMEOUT = 120.0
SETTLE = 1.0
TARGET_NODE_LOSS = 10.0
SWARM_KINDS = {"swarm": (), "swarm --restart-delay 0s": ("--restart-delay", "0s")}


# (a) container loss ------------------------------------------------------------------------------


def gorchester_container_loss(cluster: harness.Cluster, service: str, run: int) -> float:
    tasks = sorted(cluster.running(service, REPLICAS) or [], key=lambda t: t["id"])
    if len(tasks) != REPLICAS:
        raise RuntimeError(f"{service} is not whole before the run")
    # A different slot each run, so no slot carries a restart streak (back-off) into its next loss.
    victim = tasks[run % REPLICAS]
    client = harness.docker_client()
    start = time.perf_counter()
    client.containers.get(victim["container_id"]).remove(force=True)

    def whole() -> bool:
        now = cluster.running(service, REPLICAS)
        if not now:
            return False
        slot = next(t for t in now if t["id"] == victim["id"])
        return slot["container_id"] != victim["container_id"] and victim["container_id"] not in {
            t["container_id"] for t in now
        }

    poll_until(whole, TIMEOUT, f"{service} whole again")
    elapsed = time.perf_counter() - start
    log(f"gorchester container loss ({victim['id']} on {victim['node']}): {elapsed:.2f}s")
    return elapsed


def swarm_container_loss(swarm: harness.Swarm, service: str, kind: str) -> float:
    before = swarm.running_tasks(service)
    if len(before) != REPLICAS:
        raise RuntimeError(f"swarm {service} is not whole before the run")
    victim = before[0]["Status"]["ContainerStatus"]["ContainerID"]
    start = time.perf_counter()
    swarm.client.containers.get(victim).remove(force=True)

    def whole() -> bool:
        tasks = swarm.running_tasks(service)
        ids = {t["Status"].get("ContainerStatus", {}).get("ContainerID") for t in tasks}
        return len(tasks) == REPLICAS and victim not in ids

    poll_until(whole, TIMEOUT, f"swarm {service} whole again")
    elapsed = time.perf_counter() - start
    log(f"{kind} container loss: {elapsed:.2f}s")
    return elapsed


def container_loss(runs: int, keep_logs: bool) -> dict[str, Samples]:
    results = {kind: Samples(kind) for kind in ("gorchester", *SWARM_KINDS)}
    with harness.swarm() as swarm, harness.cluster(keep_logs) as cluster:
        cluster.create_service("rec", REPLICAS)
        poll_until(lambda: cluster.running("rec", REPLICAS), TIMEOUT, "rec running")
        names = {}
        for i, (kind, extra) in enumerate(SWARM_KINDS.items()):
            names[kind] = f"{swarm.prefix}rec{i}"
            swarm.create_service(names[kind], REPLICAS, *extra)
            poll_until(lambda n=names[kind]: len(swarm.running_tasks(n)) == REPLICAS, TIMEOUT, f"{kind} running")
        try:
            for run in range(runs):
                measure = {"gorchester": lambda run=run: gorchester_container_loss(cluster, "rec", run)}
                for kind in SWARM_KINDS:
                    measure[kind] = lambda kind=kind: swarm_container_loss(swarm, names[kind], kind)
                order = list(measure)
                order = order[run % len(order) :] + order[: run % len(order)]
                for kind in order:
                    time.sleep(SETTLE)
                    results[kind].add(measure[kind]())
                log(f"container loss run {run + 1}/{runs} done")
        finally:
            for name in names.values():
                swarm.remove_service(name)
    return results


# (b) node loss -----------------------------------------------------------------------------------


def node_down_at(cluster: harness.Cluster, node: str) -> float | None:
    for event in cluster.http.get(f"{cluster.url}/v1/events").json():
        if event["type"] == "node_down" and event["data"].get("node") == node:
            return dt.datetime.fromisoformat(event["time"]).timestamp()
    return None


def node_loss_once(keep_logs: bool) -> tuple[float, float | None]:
    """Seconds from SIGKILL to 10 running on the survivor, and from SIGKILL to the node_down event."""
    with harness.cluster(keep_logs) as cluster:
        cluster.create_service("fo", REPLICAS)
        tasks = poll_until(lambda: cluster.running("fo", REPLICAS), TIMEOUT, "fo running")
        per_node = {node: sum(t["node"] == node for t in tasks) for node in harness.NODES}
        victim = max(per_node, key=lambda node: (per_node[node], node == "node-1"))
        survivor = next(node for node in harness.NODES if node != victim)
        time.sleep(SETTLE)
        wall = time.time()
        start = time.perf_counter()
        cluster.procs.kill(victim)  # SIGKILL to the agent's process group

        def moved() -> bool:
            now = cluster.running("fo", REPLICAS)
            return bool(now) and all(t["node"] == survivor for t in now)

        poll_until(moved, TIMEOUT, f"all replicas on {survivor}")
        elapsed = time.perf_counter() - start
        down = node_down_at(cluster, victim)
        detected = None if down is None else down - wall
        log(f"node loss ({victim} had {per_node[victim]} of {REPLICAS}): {elapsed:.2f}s, node_down after {detected}")
        return elapsed, detected


def node_loss(runs: int, keep_logs: bool) -> tuple[Samples, Samples]:
    total, detected = Samples("node loss"), Samples("node_down event")
    for run in range(runs):
        elapsed, down = node_loss_once(keep_logs)
        total.add(elapsed)
        if down is not None:
            detected.add(down)
        log(f"node loss run {run + 1}/{runs} done")
    return total, detected


# report ------------------------------------------------------------------------------------------


def render(runs: int, loss: dict[str, Samples], total: Samples, detected: Samples) -> str:
    g = loss["gorchester"]
    rows = []
    for kind, samples in loss.items():
        ratio = "—" if kind == "gorchester" else f"{g.median / samples.median:.2f}x"
        rows.append([kind, f"**{samples.median:.2f}** ({samples.spread()})", ratio])
    swarm_best = min(loss[kind].median for kind in SWARM_KINDS)
    if g.median >= loss["swarm"].median:
        verdict_a = "**missed**: not faster than Swarm"
    elif g.median < swarm_best:
        verdict_a = "met: faster than Swarm at its default restart delay and at `--restart-delay 0s`"
    else:
        verdict_a = "met against Swarm's default restart delay; **not** faster than `--restart-delay 0s`"
    table_a = harness.markdown_table(["system", "median s (min–max)", "gorchester / this"], rows)
    split = (
        f"; of which detection (SIGKILL → `node_down` event): median **{detected.median:.2f}** s ({detected.spread()})"
        if detected.values
        else ""
    )
    verdict_b = "met" if total.median < TARGET_NODE_LOSS else "**missed**"
    raw = "\n".join(f"- {s.name}: {s.all()}" for s in (*loss.values(), total, detected) if s.values)
    return (
        f"_Command:_ `.venv/bin/python -m bench.recovery --runs {runs} --write`\n\n"
        f"_Machine:_ {harness.machine()}\n\n"
        f"**(a) Container loss** (`docker rm -f` of one of {REPLICAS} replicas, until {REPLICAS} run again "
        f"with a new container for that slot), medians of {runs} runs:\n\n{table_a}\n\n"
        f"Target (faster than Swarm): {verdict_a}.\n\n"
        f"**(b) Node loss** (SIGKILL of the agent carrying ~half of {REPLICAS} replicas, until all "
        f"{REPLICAS} run on the surviving node), default settings: median **{total.median:.2f}** s "
        f"({total.spread()}){split}. Target (< {TARGET_NODE_LOSS:.0f} s): {verdict_b}.\n\n"
        f"<details><summary>All runs (seconds, in run order)</summary>\n\n{raw}\n\n</details>\n"
    )


def main() -> None:
    args = harness.arguments(__doc__.splitlines()[0])
    loss = container_loss(args.runs, args.keep_logs)
    total, detected = node_loss(args.runs, args.keep_logs)
    report = render(args.runs, loss, total, detected)
    print(report)
    if args.write:
        harness.write_section("recovery", report)


if __name__ == "__main__":
    main()
