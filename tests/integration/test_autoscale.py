"""Autoscaling on real parts: busy and idle busybox replicas, sampled every second, a 30 s cooldown.

The three services run side by side in one cluster, so the test waits out one cooldown, not three.
"""

from __future__ import annotations

import math
import time

import httpx

from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for

MIB = 1024 * 1024
BURN = ["sh", "-c", "while true; do :; done"]
RESOURCES = {"cpu_millicores": 100, "memory_bytes": 32 * MIB}


def service(name: str, replicas: int, command: list[str], policy: dict | None = None) -> dict:
    spec = {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": command,
            "resources": RESOURCES}
    if policy is not None:
        spec["scale_policy"] = policy
    return spec


def get(api: str, path: str, **params) -> object:
    response = httpx.get(f"{api}{path}", params=params, timeout=5)
    response.raise_for_status()
    return response.json()


def autoscaled(api: str, name: str) -> list[dict]:
    return [e for e in get(api, "/v1/events", service=name) if e["type"] == "service_autoscaled"]


def running(api: str, name: str) -> int:
    return sum(1 for t in get(api, "/v1/tasks", service=name) if t["state"] == "running")


def test_busy_scales_up_idle_scales_down_after_cooldown_and_no_policy_is_untouched(procs: Processes):
    procs.env["GORCHESTER_METRICS_INTERVAL"] = "1"
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=4000, memory=2048 * MIB)
    wait_for(lambda: get(api, "/v1/nodes")[0]["status"] == "ready", what="a ready node")

    created = time.time()
    config = {
        "services": [
            service("hot", 1, BURN, {"min_replicas": 1, "max_replicas": 3, "target_cpu": 50.0, "cooldown_seconds": 30}),
            service("idle", 3, ["sleep", "3600"],
                    {"min_replicas": 1, "max_replicas": 3, "target_cpu": 50.0, "cooldown_seconds": 30}),
            service("plain", 1, BURN),
        ]
    }
    assert httpx.post(f"{api}/v1/apply", json=config, timeout=10).status_code == 200

    # A replica burning its whole 100m quota is at ~100% of a 50% target: ratio ~2, so 1 -> 2 at once
    # (or 3 when CFS accounting measures a hair over 100%: ceil(2.02) = 3, within max_replicas).
    [first] = wait_for(lambda: autoscaled(api, "hot"), timeout=40, what="hot to scale up")
    to = first["data"]["desired"]
    assert first["data"]["current"] == 1 and to in (2, 3) and first["data"]["direction"] == "up"
    cpu = first["data"]["metrics"]["cpu"]
    assert cpu["target"] == 50 and cpu["utilisation"] > 55 and cpu["measured"] == 1
    assert to == min(3, math.ceil(cpu["ratio"] - 0.005)) or to == min(3, math.ceil(cpu["ratio"] + 0.005))
    wait_for(lambda: running(api, "hot") == to, timeout=30, what=f"{to} running replicas of hot")
    view = get(api, "/v1/services/hot")
    assert view["replicas"] == to and view["autoscale"]["current_replicas"] == to
    assert view["autoscale"]["last_scaled"]["from"] == 1 and view["autoscale"]["last_scaled"]["to"] == to

    # The idle service scales down, but not before a cooldown has passed since it was created. While its
    # replicas were starting, those without a sample counted as busy (HPA's rule on a scale-down), so the
    # window may still hold a recommendation of 2: then it reaches min_replicas one cooldown later.
    down = wait_for(lambda: autoscaled(api, "idle"), timeout=60, what="idle to scale down")[0]
    assert down["data"]["current"] == 3 and down["data"]["desired"] in (1, 2) and down["data"]["direction"] == "down"
    assert down["data"]["metrics"]["cpu"]["utilisation"] < 10
    waited = _event_time(down) - created
    assert waited >= 29, f"scaled down {waited:.1f}s after creation, inside the 30s cooldown"
    if down["data"]["desired"] == 2:
        again = wait_for(lambda: autoscaled(api, "idle")[1:], timeout=45, what="idle down to min_replicas")[0]
        assert again["data"]["current"] == 2 and again["data"]["desired"] == 1
        assert _event_time(again) - _event_time(down) >= 29
    wait_for(lambda: running(api, "idle") == 1 and len(get(api, "/v1/tasks", service="idle")) == 1,
             timeout=30, what="idle down to 1 replica")

    if to == 2:
        # Still busy after its cooldown: 2 replicas at ~100% want 4, clamped to max_replicas 3.
        second = wait_for(lambda: autoscaled(api, "hot")[1:], timeout=45, what="hot to scale up again")[0]
        assert second["data"]["current"] == 2 and second["data"]["desired"] == 3
        assert _event_time(second) - _event_time(first) >= 29  # one action per cooldown
    wait_for(lambda: running(api, "hot") == 3, timeout=30, what="3 running replicas of hot")

    metrics = get(api, "/v1/services/hot/metrics")
    assert metrics["autoscale"]["desired_replicas"] == 3 and metrics["average"]["cpu_percent"] > 50
    assert metrics["autoscale"]["last_decision"]["metrics"]["cpu"]["target"] == 50

    # No policy: never touched, however busy.
    plain = get(api, "/v1/services/plain")
    assert plain["replicas"] == 1 and plain["version"] == 1 and plain["autoscale"] is None
    assert autoscaled(api, "plain") == []
    assert get(api, "/v1/services/plain/metrics")["average"]["cpu_percent"] > 50

    text = httpx.get(f"{api}/metrics", timeout=5).text
    assert f'gorchester_autoscaler_actions_total{{direction="up",service="hot"}} {3 - to + 1}.0' in text
    assert [e["data"]["desired"] for e in autoscaled(api, "hot")][-1] == 3  # never beyond max_replicas
    downs = len(autoscaled(api, "idle"))
    assert f'gorchester_autoscaler_actions_total{{direction="down",service="idle"}} {downs}.0' in text


def _event_time(event: dict) -> float:
    # Stream ids are the Redis time in milliseconds: exact, and free of ISO parsing.
    return int(event["id"].split("-")[0]) / 1000
