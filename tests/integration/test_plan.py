"""`gorchester plan` on real parts: the plan of a config on a quiet cluster is what the apply then does,
placements and waiting replicas included; a dry run writes nothing; a check index refuses an apply
once a service changed since the plan."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from tests.integration.test_end_to_end import service, tasks
from tests.integration.test_health import HTTPD, start_cluster
from tests.integration.test_rollout_commands import gorchester
from tests.support.procs import Processes, free_port, wait_for

MIB = 1024 * 1024


def write(tmp_path: Path, *services: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"services": list(services)}))
    return str(path)


def web(command: list[str] = HTTPD) -> dict:
    return service("web", 3, command=command, resources={"cpu_millicores": 1000, "memory_bytes": 16 * MIB})


# Asks more cpu than any node has (4000m each): it waits, and each node says so.
BIG = service("big", 1, command=HTTPD, resources={"cpu_millicores": 6000, "memory_bytes": 16 * MIB})


def test_a_plan_is_what_the_apply_then_does_and_a_check_index_guards_it(procs: Processes, tmp_path: Path):
    api = start_cluster(procs, 2)
    config = write(tmp_path, web(), BIG)

    planned = gorchester(api, "plan", "-f", config, "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    assert "+ web: created (version 1)" in planned.stdout
    assert "big.1 would wait: 0 of 2 nodes" in planned.stdout
    assert "node-1: not enough cpu (needs 6000m, " in planned.stdout
    shown = json.loads(gorchester(api, "apply", "-f", config, "--dry-run", "-o", "json").stdout)
    assert httpx.get(f"{api}/v1/services", timeout=5).json() == []  # a dry run writes nothing
    plans = {plan["service"]: plan for plan in shown["services"]}
    where = {placed["task"]: placed["node"] for placed in plans["web"]["placements"]}
    assert sorted(where) == ["web.1", "web.2", "web.3"]
    [waiting] = plans["big"]["pending"]
    assert waiting["task"] == "big.1" and waiting["nodes_fitting"] == 0 and waiting["nodes_total"] == 2

    applied = gorchester(api, "apply", "-f", config, "--check-index", shown["check_index"])
    assert applied.returncode == 0, applied.stderr
    running = wait_for(lambda: len(ts := [t for t in tasks(api, "web") if t["state"] == "running"]) == 3 and ts,
                       what="web running")
    assert {t["id"]: t["node"] for t in running} == where  # placed where the plan said
    # The pass that places web judges big first (as the plan's `reason` says); the passes after it judge
    # big with web placed, as the plan's per-node verdicts do, and that is the reason it keeps.
    settled = "; ".join(f"{node['node']}: {node['reason']}" for node in waiting["nodes"])
    wait_for(lambda: [t["reason"] for t in tasks(api, "big")] == [settled], what=f"big pending: {settled}")

    unchanged = gorchester(api, "plan", "-f", config, "--detailed-exitcode")
    assert unchanged.returncode == 0 and "= web: unchanged" in unchanged.stdout, unchanged.stderr

    changed = write(tmp_path, web(command=[*HTTPD[:2], HTTPD[2] + " "]), BIG)
    rolling = gorchester(api, "plan", "-f", changed)
    assert "~ web: updated (version 1 -> 2)\n    command: " in rolling.stdout
    assert "rolling update of 3 replica(s), 1 at a time, start-first" in rolling.stdout
    assert "web.1 updated from node-" in rolling.stdout and "beside the old one until it is ready" in rolling.stdout
    index = json.loads(gorchester(api, "plan", "-f", changed, "-o", "json").stdout)["check_index"]
    assert httpx.post(f"{api}/v1/services/big/scale", json={"replicas": 0}, timeout=5).status_code == 200
    refused = gorchester(api, "apply", "-f", changed, "--check-index", index)
    assert refused.returncode == 1
    assert "the services changed since the plan" in refused.stderr and "plan again" in refused.stderr
    assert httpx.get(f"{api}/v1/services/web", timeout=5).json()["version"] == 1  # nothing written


def test_a_plan_too_big_to_compute_is_refused_naming_the_bound(procs: Processes, tmp_path: Path):
    api = start_cluster(procs, 1)
    many = [service(f"s{n}", 10_000) for n in range(3)]
    response = httpx.post(f"{api}/v1/apply", params={"dry_run": "true"}, json={"services": many}, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == ["dry_run: a plan covers at most 20000 replicas; the services would have 30000"]


def test_a_rebalance_plan_is_held_to_the_same_bound(procs: Processes):
    """The cluster as it stands is planned: more than the bound's replicas in it refuses the dry run.
    No scheduler runs, so the services are only records and nothing is placed."""
    api = procs.api(free_port())
    for n in range(3):
        created = httpx.post(f"{api}/v1/services", json=service(f"s{n}", 10_000), timeout=10)
        assert created.status_code == 201, created.text
    response = httpx.post(f"{api}/v1/services/s0/rebalance", params={"dry_run": "true"}, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == ["dry_run: a plan covers at most 20000 replicas; the services would have 30000"]
