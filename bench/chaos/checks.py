"""After the faults: wait until the cluster settles, then check what must hold of a healthy cluster.

The invariants: every service at the replica count its users were last told (the ledger), with that
many running tasks and no task stuck in another state; each slot with exactly one running
container, the task's; no container that no task owns; the records all there; every node ready;
every process alive and one live leader.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.cluster import NODES, ChaosCluster
from bench.chaos.ledger import Ledger
from bench.harness import log
from shared import labels


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Outcome:
    running_after: float | None = None  # seconds after the last process restart
    clean_after: float | None = None
    checks: list[Check] = field(default_factory=list)
    first_failures: list[Check] = field(default_factory=list)  # at the moment running == desired


def all_running(cluster: ChaosCluster, ledger: Ledger) -> bool:
    services = cluster.http.get(f"{cluster.url}/v1/services").json()
    stored = {s["service_name"]: s["status"]["desired_replicas"] for s in services}
    if ledger.mismatches(stored):
        return False
    return all(s["status"]["running_replicas"] == s["status"]["desired_replicas"] for s in services)


def invariants(cluster: ChaosCluster, ledger: Ledger) -> list[Check]:
    api = cluster.url
    services: list[dict[str, Any]] = cluster.http.get(f"{api}/v1/services").json()
    tasks: list[dict[str, Any]] = cluster.http.get(f"{api}/v1/tasks").json()
    nodes: list[dict[str, Any]] = cluster.http.get(f"{api}/v1/nodes").json()
    every = cluster.containers(all=True)  # on every engine: this machine's, or each host's of a bed
    by_task = {t["id"]: t for t in tasks}
    desired = {s["service_name"]: s["status"]["desired_replicas"] for s in services}
    checks: list[Check] = []

    # 1. what the users were told: every acknowledged write present
    bad = ledger.mismatches(desired)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(desired.items()))
    checks.append(Check("every acknowledged write present", not bad, "; ".join(bad) or summary))

    # 2. every service at its desired replica count (API status and task states)
    bad = []
    for s in services:
        name, st = s["service_name"], s["status"]
        running = sum(1 for t in tasks if t["service"] == name and t["state"] == "running")
        if not (st["running_replicas"] == st["desired_replicas"] == running):
            bad.append(f"{name}: status {st['running_replicas']}/{st['desired_replicas']}, running tasks {running}")
    checks.append(Check("each service's running tasks == replicas", not bad, "; ".join(bad) or summary))

    # 3. no task stuck: after settling, every task runs
    stuck = [f"{t['id']} {t['state']} ({t.get('reason') or 'no reason'})" for t in tasks if t["state"] != "running"]
    checks.append(Check("no task stuck", not stuck, "; ".join(stuck) or f"{len(tasks)} tasks running"))

    # 4. every slot: exactly one running container, the task's (id, gen, node)
    running_by_task: dict[str, list] = {}
    for c in every:
        if c.status == "running":
            running_by_task.setdefault(c.labels.get(labels.TASK, "?"), []).append(c)
    bad = []
    for t in tasks:
        mine = running_by_task.get(t["id"], [])
        if len(mine) != 1:
            bad.append(f"{t['id']}: {len(mine)} running containers {[c.name for c in mine]}")
            continue
        c = mine[0]
        if (c.id, int(c.labels.get(labels.GEN, -1)), c.labels.get(labels.NODE)) != (t["container_id"], t["gen"],
                                                                                    t["node"]):
            bad.append(
                f"{t['id']}: container {c.name} ({c.id[:12]}, gen {c.labels.get(labels.GEN)}, "
                f"{c.labels.get(labels.NODE)}) vs task ({(t['container_id'] or '')[:12]}, gen {t['gen']}, {t['node']})"
            )
    checks.append(Check("each slot has exactly one running container, the task's", not bad,
                        "; ".join(bad) or f"{len(tasks)} slots"))

    # 5. no container (any state) whose task record is missing or has another gen/node
    bad = []
    for c in every:
        owner = by_task.get(c.labels.get(labels.TASK, ""))
        label = (int(c.labels.get(labels.GEN, -1)), c.labels.get(labels.NODE))
        if owner is None or (owner["gen"], owner["node"]) != label:
            want = "no task record" if owner is None else f"task at gen {owner['gen']} on {owner['node']}"
            bad.append(f"{c.name} ({c.status}, {c.labels.get(labels.NODE)}): {want}")
    checks.append(Check("no container that no task owns", not bad,
                        "; ".join(bad) or f"{len(every)} containers, all owned"))

    # 6. records: nodes and tasks
    node_state = {n["id"]: n["status"] for n in nodes}
    checks.append(Check(
        "nodes == those registered, all ready",
        sorted(node_state) == sorted(NODES) and set(node_state.values()) == {"ready"},
        ", ".join(f"{k} {v}" for k, v in sorted(node_state.items())),
    ))
    expected_ids = {f"{name}.{slot}" for name, n in desired.items() for slot in range(1, n + 1)}
    ids = [t["id"] for t in tasks]
    checks.append(Check(
        "task records == sum of replicas (each slot once)",
        len(ids) == len(expected_ids) and set(ids) == expected_ids,
        f"{len(ids)} records"
        + (f"; missing {sorted(expected_ids - set(ids))}" if expected_ids - set(ids) else "")
        + (f"; extra {sorted(set(ids) - expected_ids)}" if set(ids) - expected_ids else ""),
    ))

    # 7. processes and leadership
    dead = [name for name, up in cluster.alive().items() if not up]
    checks.append(Check("every process alive", not dead, "dead: " + ", ".join(dead) if dead else "all alive"))
    leader = cluster.leader()
    checks.append(Check("one live scheduler leads", leader is not None, leader[0] if leader else "no live leader"))
    return checks


def settle(cluster: ChaosCluster, ledger: Ledger, timeout: float) -> Outcome:
    outcome = Outcome()
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if all_running(cluster, ledger):
                outcome.running_after = time.monotonic() - start
                break
        time.sleep(0.2)
    log(f"running == desired after {outcome.running_after}s")
    first = True
    while True:
        try:
            outcome.checks = invariants(cluster, ledger)
        except Exception as exc:  # noqa: BLE001 - an unanswering API is a failure to report
            outcome.checks = [Check("API and engine answer", False, repr(exc))]
        failed = [c for c in outcome.checks if not c.ok]
        if first:
            outcome.first_failures, first = failed, False
        if not failed:
            outcome.clean_after = time.monotonic() - start
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    log(f"invariants all hold after {outcome.clean_after}s" if outcome.clean_after is not None else "invariants FAIL")
    return outcome
