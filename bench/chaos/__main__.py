"""`python -m bench.chaos`: run one or more soaks (see bench/chaos/__init__.py) and report them."""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys
import uuid
from collections import Counter

from bench import harness
from bench.chaos import checks
from bench.chaos.cluster import SERVICES, ChaosCluster
from bench.chaos.faults import HOST_KINDS, KINDS, REPLICA_KINDS, Chaos
from bench.chaos.ledger import Ledger
from bench.chaos.report import Soak, render
from bench.harness import log
from cli.hostbed import bed
from shared import defaults

NODES_ON_ONE_ENGINE = "three agents (node-1 127.0.0.2, node-2 127.0.0.3, node-3 127.0.0.4) on the one Docker engine"
NODES_ON_A_BED = (
    "three hosts of a bed (`--hosts`, cli/hostbed.py), each a network namespace with its own `dockerd`, and "
    "node-I's agent inside host I against that engine only (Redis also on the bed's gateway)"
)
ONE_REDIS = 'redis-server `--appendonly yes --appendfsync everysec --save ""` in the temp dir'
REPLICATED_REDIS = (
    "Redis as `gorchester up --redis-replicas 2` runs it: a master, two replicas and three sentinels "
    "(append-only files, down-after 2000 ms, quorum 2), every process given the `redis+sentinel://` URL"
)
SETUP = (
    "{redis}, the API, two "
    "schedulers (`python -m scheduler`, one leads), {nodes}; **default settings** (heartbeat {heartbeat:g} s, "
    "down after {misses:g} missed beats, reconcile 10 s, assigned timeout 30 s, back-off 1 s doubling to 60 s, leader "
    "lease 3 s; nothing shortened). Services: `web` 6 × httpd with a published port (always), `worker` 4 "
    "× `sleep 3600` (always), `batch` 2 × `sleep 3600` (on-failure), image `gorchester/busybox:latest`. "
    "Faults, one every 3–8 s, in rounds of each chosen kind once in a random order: SIGKILL an agent's "
    "process group and start it again after 0–10 s (agent); SIGKILL the scheduler holding the leader "
    "lease and start it again at once (leader); `docker rm -f` a random running replica container of web, "
    "worker or batch (container); SIGKILL redis-server and start it again on the same port and dir after "
    "0–3 s (redis); scale web (3–8), worker (2–6) or batch (1–3), or create or delete the service `extra` "
    "(2 × sleep, restart no), each answer kept in a ledger (writes); 3–6 of issue 11's hostile requests, "
    "and now and then a body that never arrives whole (hostile); on a bed only, SIGKILL a host's "
    "`dockerd` and start it again after 1–15 s (engine), cut a host's cable for 5–30 s (partition). At "
    "most one fault per node at a time (agent, engine, partition); with the replicated Redis, the redis "
    "fault SIGKILLs the master (a failover if it stays away over 2 s), and SIGKILL the master and start it "
    "again after 5–15 s, as a replica of the promoted one (failover)"
)


def kinds(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in chosen if kind not in KINDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(KINDS)} (got {text!r})")
    return chosen


def soak_once(args: argparse.Namespace, seed: int) -> Soak:
    log(f"seed {seed}, duration {args.duration:.0f}s, faults {','.join(args.faults)}"
        + (", on a bed of three hosts" if args.hosts else ""))
    hosts = bed(f"c{uuid.uuid4().hex[:5]}", 3, images=[harness.IMAGE]) if args.hosts else contextlib.nullcontext()
    with harness.workdir(args.keep_logs) as path, hosts as made:
        cluster = ChaosCluster(path, made, replicated=args.replicated)
        try:
            cluster.start()
            for spec in SERVICES:
                response = cluster.http.post(f"{cluster.url}/v1/services", json=spec)
                if response.status_code != 201:
                    raise RuntimeError(f"POST /v1/services: {response.status_code} {response.text}")
            ledger = Ledger({str(spec["service_name"]): int(spec["replicas"]) for spec in SERVICES})  # type: ignore[call-overload]
            harness.poll_until(lambda: checks.all_running(cluster, ledger), 120, "every service running")
            log("every service running; chaos starts")
            chaos = Chaos(cluster, random.Random(seed), args.faults, ledger)
            chaos.soak(args.duration)
            log(f"chaos over: {len(chaos.faults)} faults {dict(Counter(f.kind for f in chaos.faults))}, "
                f"{len(chaos.errors)} injector errors; settling")
            outcome = checks.settle(cluster, ledger, args.settle)
            for check in outcome.checks:
                log(f"{'pass' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
            for defect in chaos.hostile_defects():
                log(f"FAIL  hostile request: {defect}")
        finally:
            cluster.close()
    return Soak(seed, args.duration, chaos, outcome)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults per soak (default 600)")
    parser.add_argument("--runs", type=int, default=1, help="soaks in a row, each with its own seed (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="the first soak's RNG seed (default: random)")
    machine_kinds = tuple(kind for kind in KINDS if kind not in HOST_KINDS | REPLICA_KINDS)
    parser.add_argument(
        "--faults", type=kinds, default=None,
        help=f"comma-separated fault kinds (default {','.join(machine_kinds)}; with --hosts, also "
             f"{','.join(sorted(HOST_KINDS))}, which imply --hosts; with --replicated, also "
             f"{','.join(sorted(REPLICA_KINDS))}, which implies --replicated)",
    )
    parser.add_argument("--settle", type=float, default=120.0, help="seconds allowed to settle (default 120)")
    parser.add_argument("--hosts", action="store_true", help="the three nodes are hosts of a bed, each with its "
                        "own engine (root; cli/hostbed.py)")
    parser.add_argument("--replicated", action="store_true", help="Redis as a master, two replicas and three "
                        "sentinels (`gorchester up --redis-replicas 2`); the redis fault then kills the master")
    parser.add_argument("--write", action="store_true", help="update the chaos section of docs/benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the cluster's process logs (path printed)")
    args = parser.parse_args()
    args.hosts = args.hosts or bool(HOST_KINDS & set(args.faults or ()))
    args.replicated = args.replicated or bool(REPLICA_KINDS & set(args.faults or ()))
    args.faults = args.faults or tuple(
        kind for kind in KINDS
        if (args.hosts or kind not in HOST_KINDS) and (args.replicated or kind not in REPLICA_KINDS)
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup runs

    machine = harness.machine()
    seeds = random.SystemRandom()
    soaks = []
    for run in range(args.runs):
        seed = args.seed if run == 0 and args.seed is not None else seeds.randrange(1, 2**31)
        soaks.append(soak_once(args, seed))
        log(f"soak {run + 1}/{args.runs} (seed {seed}): {'pass' if soaks[-1].passed else 'FAIL'}")
    command = (f".venv/bin/python -m bench.chaos --duration {args.duration:.0f} --runs {args.runs} "
               f"--faults {','.join(args.faults)}{' --hosts' if args.hosts else ''}"
               f"{' --replicated' if args.replicated else ''} --write")
    setup = SETUP.format(nodes=NODES_ON_A_BED if args.hosts else NODES_ON_ONE_ENGINE,
                         redis=REPLICATED_REDIS if args.replicated else ONE_REDIS,
                         heartbeat=defaults.DEFAULT_HEARTBEAT_INTERVAL, misses=defaults.DEFAULT_HEARTBEAT_MISSES)
    report = render(command, machine, setup, soaks, args.settle)
    print(report)
    if args.write:
        harness.write_section("chaos", report)
    return 0 if all(soak.passed for soak in soaks) else 1


if __name__ == "__main__":
    sys.exit(main())
