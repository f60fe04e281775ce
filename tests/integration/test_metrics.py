"""Usage sampling and the Prometheus exposition on real parts: redis-server, Docker, API, scheduler, agent."""

from __future__ import annotations

import platform
import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.records import NodeRecord, UpdateState
from shared.storage import Store
from shared.version import build_version
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for

MIB = 1024 * 1024
BURN = ["sh", "-c", "while true; do :; done"]


def values(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of an exposition by sample name (histograms give _bucket, _sum, _count)."""
    result: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.setdefault(sample.name, []).append((sample.labels, sample.value))
    return result


def value(samples: dict, name: str, **labels: str) -> float:
    matches = [v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert matches, f"{name}{labels} not exposed"
    return sum(matches)


def scrape(api: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(f"{api}/metrics", timeout=5)
    assert response.status_code == 200
    return values(response.text)


def test_samples_service_metrics_node_usage_and_prometheus(procs: Processes):
    procs.env["GORCHESTER_METRICS_INTERVAL"] = "1"
    api = procs.api(free_port())
    procs.scheduler()
    procs.scheduler("standby")  # waits for the lease: not the leader
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    wait_for(lambda: httpx.get(f"{api}/v1/nodes", timeout=5).json()[0]["status"] == "ready", what="a ready node")

    spec = {
        "service_name": "burn",
        "image": TEST_IMAGE,
        "replicas": 2,
        "command": BURN,
        "resources": {"cpu_millicores": 100, "memory_bytes": 32 * MIB},
    }
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201

    def sampled() -> dict | None:
        body = httpx.get(f"{api}/v1/services/burn/metrics", timeout=5).json()
        return body if body["average"]["replicas_sampled"] == 2 else None

    body = wait_for(sampled, timeout=60, what="both replicas sampled")
    assert {r["task"] for r in body["replicas"]} == {"burn.1", "burn.2"}
    for replica in body["replicas"]:
        # A busy loop under a 100m quota uses about all of it.
        assert 50 <= replica["cpu_percent"] <= 150, replica
        assert replica["node"] == "node-1" and replica["fresh"] and replica["sampled_at"]
        assert 0 < replica["memory_bytes"] < 32 * MIB
        assert replica["memory_percent"] == round(replica["memory_bytes"] / (32 * MIB) * 100, 2)
    assert 50 <= body["average"]["cpu_percent"] <= 150 and body["sampled_at"]
    assert body["autoscale"] is None  # no scale_policy

    node = httpx.get(f"{api}/v1/nodes/node-1", timeout=5).json()
    usage = node["usage"]
    assert usage["capacity"] == {"cpu_millicores": 2000, "memory_bytes": 2048 * MIB}
    assert usage["allocated"] == {"cpu_millicores": 200, "memory_bytes": 64 * MIB}
    assert 100 <= usage["used"]["cpu_millicores"] <= 300 and usage["used"]["memory_bytes"] > 0
    assert usage["containers"] == 2

    assert httpx.get(f"{api}/v1/services/ghost/metrics", timeout=5).status_code == 404

    response = httpx.get(f"{api}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    exposed = values(response.text)
    assert value(exposed, "gorchester_service_desired_replicas", service="burn") == 2
    assert value(exposed, "gorchester_service_running_replicas", service="burn") == 2
    assert value(exposed, "gorchester_nodes", status="ready") == 1
    assert value(exposed, "gorchester_nodes", status="down") == 0
    assert value(exposed, "gorchester_tasks", state="running") == 2
    assert value(exposed, "gorchester_tasks", state="pending") == 0
    assert value(exposed, "gorchester_node_queue_depth", node="node-1") == 0
    # CPU in cores (base units); allocated: 2 replicas x 100m, as the node view counts it.
    assert value(exposed, "gorchester_node_cpu_capacity_cores", node="node-1") == 2.0
    assert value(exposed, "gorchester_node_memory_capacity_bytes", node="node-1") == 2048 * MIB
    assert value(exposed, "gorchester_node_cpu_used_cores", node="node-1") > 0.05
    assert value(exposed, "gorchester_node_cpu_allocated_cores", node="node-1") == 2 * 0.1
    assert value(exposed, "gorchester_node_memory_allocated_bytes", node="node-1") == 2 * 32 * MIB
    assert value(exposed, "gorchester_service_healthy_replicas", service="burn") == 2
    assert 0 <= value(exposed, "gorchester_node_heartbeat_age_seconds", node="node-1") < 10
    build = {"version": build_version(), "python": platform.python_version()}
    assert exposed["gorchester_build_info"] == [(build, 1.0)]
    # One leader of the two schedulers, named as its leader_changed event names it.
    events = httpx.get(f"{api}/v1/events", timeout=5).json()
    leader = [e["data"]["leader"] for e in events if e["type"] == "leader_changed"][-1]
    assert exposed["gorchester_scheduler_leader"] == [({"scheduler": leader[:8]}, 1.0)]
    assert "gorchester_service_rollout_state" not in exposed  # no update yet
    assert value(exposed, "gorchester_reconcile_duration_seconds_count") >= 1
    assert 0 < value(exposed, "gorchester_reconcile_duration_seconds_sum") < 60
    assert value(exposed, "gorchester_reconcile_duration_seconds_bucket", le="+Inf") == value(
        exposed, "gorchester_reconcile_duration_seconds_count"
    )
    latency_count = value(exposed, "gorchester_schedule_to_running_seconds_count")
    assert latency_count == 2
    assert 0 < value(exposed, "gorchester_schedule_to_running_seconds_sum") / latency_count < 60
    assert value(exposed, "gorchester_scheduler_events_total", type="task_scheduled") == 2
    assert value(exposed, "gorchester_metrics_samples_total", node="node-1", source="cgroup") >= 2
    assert "gorchester_task_restarts_total" in exposed or "gorchester_task_restarts" in {
        f.name for f in text_string_to_metric_families(response.text)
    }
    # This scrape's own requests were timed by the middleware, by route template.
    assert value(
        exposed, "gorchester_api_request_duration_seconds_count",
        method="GET", route="/v1/services/{name}/metrics", status="200",
    ) >= 1
    assert value(
        exposed, "gorchester_api_request_duration_seconds_count",
        method="GET", route="/v1/services/{name}/metrics", status="404",
    ) == 1

    # A changed template is rolled out: the rollout's state is one series per state, 1 on the current.
    changed = {**spec, "env": ["ROLLOUT=2"]}
    assert httpx.put(f"{api}/v1/services/burn", json=changed, timeout=5).status_code == 200

    def rollout_state() -> dict[str, float]:
        return {labels["state"]: v for labels, v in scrape(api).get("gorchester_service_rollout_state", [])}

    finished = wait_for(
        lambda: (state := rollout_state()).get("completed") == 1 and state, timeout=60, what="the rollout completed"
    )
    assert finished == {state.value: float(state is UpdateState.COMPLETED) for state in UpdateState}

    # A dead agent's heartbeat ages.
    procs.kill("node-1")
    first = value(scrape(api), "gorchester_node_heartbeat_age_seconds", node="node-1")
    wait_for(
        lambda: value(scrape(api), "gorchester_node_heartbeat_age_seconds", node="node-1") > first + 1,
        what="the heartbeat age to grow",
    )


def test_hostile_names_stay_label_values_and_promtool_is_clean(procs: Processes, store: Store):
    """A node id is the agent's argument: any text. prometheus-client escapes label values, so it
    cannot break the exposition; promtool (the `prometheus` package) finds nothing to lint."""
    api = procs.api(free_port())
    hostile = 'evil"} 1\n# TYPE gorchester_nodes counter\\'
    store.register_node(
        NodeRecord(id=hostile, address="10.0.0.7", cpu_millicores=1500, memory_bytes=2**30, last_heartbeat=time.time())
    )
    spec = {"service_name": "web", "image": TEST_IMAGE, "replicas": 1}
    assert httpx.post(f"{api}/v1/services", json=spec, timeout=5).status_code == 201

    text = httpx.get(f"{api}/metrics", timeout=5).text
    exposed = values(text)
    assert value(exposed, "gorchester_node_cpu_capacity_cores", node=hostile) == 1.5
    assert value(exposed, "gorchester_service_desired_replicas", service="web") == 1
    families = [family.name for family in text_string_to_metric_families(text)]
    assert len(families) == len(set(families))  # one HELP and TYPE per family
    assert "gorchester_scheduler_leader" in families and not exposed.get("gorchester_scheduler_leader")

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
