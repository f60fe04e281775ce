"""Records nothing can handle, written straight into Redis next to good services, with a real
scheduler, two real agents running real containers and the API: the cluster carries on around them.

A service with memory no float can hold made the scheduler die with OverflowError on every restart;
one bad record stopped every pass. Now each poisoned service is failed alone (with its reason and
one `service_failed` event), the rest converges, and replacing or deleting a poisoned service
recovers it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from shared.storage import Store
from shared.storage.connection import connect
from tests.integration.test_end_to_end import cluster_api  # noqa: F401 - the fixture: API, scheduler, two agents
from tests.support.procs import TEST_IMAGE, Processes, wait_for

MIB = 1024 * 1024
GRACEFUL = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]  # stops at once on SIGTERM
AGENTS = ("node-1", "node-2")


def get(api: str, path: str, **params: Any) -> Any:
    response = httpx.get(f"{api}{path}", params=params, timeout=5)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def service(name: str, replicas: int, **fields: Any) -> dict[str, Any]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": GRACEFUL, **fields}


def stored(spec: dict[str, Any]) -> bytes:
    """A service record as an older version, a hand or a bug may have written it (no validation)."""
    now = time.time()
    return json.dumps({"spec": spec, "version": 1, "created_at": now, "updated_at": now}).encode()


def status(api: str, name: str) -> dict[str, Any]:
    return {s["service_name"]: s for s in get(api, "/v1/services")}[name]["status"]


def running(api: str, name: str, count: int) -> bool:
    return status(api, name)["running_replicas"] == count and len(get(api, "/v1/tasks", service=name)) == count


def events(api: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in get(api, "/v1/events", limit=10000) if event["type"] == kind]


def test_poisoned_records_fail_alone_and_the_cluster_converges_around_them(
    procs: Processes, cluster_api: str, store: Store, redis_server: Any  # noqa: F811 - the imported fixture
):
    api = cluster_api
    raw = connect(redis_server.url, decode=False)
    huge = service("huge", 1, resources={"cpu_millicores": 100, "memory_bytes": 10**400})
    raw.hset(store._keys.services, mapping={
        "garbage": b"\xff\x00\xfe not json",
        "shaped": b'{"spec": [1, 2, 3]}',
        "huge": stored(huge),
        "nl\n": stored(service("nl\n", 1)),
    })
    raw.hset(store._keys.assignments, "junk", b"[]")
    raw.sadd(store._keys.nodes, "node-bad")
    raw.hset(store._keys.node("node-bad"), mapping={"id": b'"node-bad"', "address": b'"127.0.0.9"',
                                                   "cpu_millicores": b"{broken", "memory_bytes": b"1"})
    for name in ("good", "other"):
        assert httpx.post(f"{api}/v1/services", json=service(name, 2), timeout=5).status_code == 201

    for name in ("good", "other"):
        wait_for(lambda name=name: running(api, name, 2), timeout=60, what=f"2 running replicas of {name}")
    # A task record of a running replica turns to garbage: a clean record of a new incarnation
    # replaces it and runs again; the old incarnation's container goes as a stray.
    raw.hset(store._keys.assignments, "good.2", b"\x00garbage")
    wait_for(lambda: any(e["data"]["task"] == "good.2" for e in events(api, "task_unreadable")), what="its event")
    wait_for(lambda: running(api, "good", 2), timeout=60, what="good.2 running again")

    for name, reason in (("garbage", "record cannot be read: invalid JSON"), ("shaped", "record cannot be read"),
                         ("huge", "")):
        wait_for(lambda name=name: status(api, name)["health"] == "failed", what=f"{name} failed")
        assert status(api, name)["reason"].startswith(reason), status(api, name)
        assert httpx.get(f"{api}/v1/services/{name}", timeout=5).json()["status"]["health"] == "failed"
    assert status(api, "nl\n")["running_replicas"] == 0  # refused by the model (failed), or by the engine
    store.notify("another pass")
    wait_for(lambda: running(api, "other", 2) and running(api, "good", 2), what="the good services, still")
    failed = [event["data"]["service"] for event in events(api, "service_failed")]
    assert sorted(name for name in failed if name != "nl\n") == ["garbage", "huge", "shaped"]  # once each
    assert [event["data"]["node"] for event in events(api, "node_unreadable")] == ["node-bad"]
    assert any(event["data"]["task"] == "junk" for event in events(api, "task_unreadable"))
    assert "junk" not in store._client.hkeys(store._keys.assignments)
    assert sorted(node["id"] for node in get(api, "/v1/nodes")) == ["node-1", "node-2"]
    for name in ("scheduler", *AGENTS):
        assert procs.procs[name].poll() is None, f"{name} died:\n{procs.log(name)[-3000:]}"

    # Fixed or deleted, a poisoned service recovers.
    fixed = httpx.put(f"{api}/v1/services/huge", json=service("huge", 1, resources={
        "cpu_millicores": 100, "memory_bytes": 64 * MIB}), timeout=5)
    assert fixed.status_code == 200, fixed.text
    assert httpx.put(f"{api}/v1/services/shaped", json=service("shaped", 1), timeout=5).status_code == 200
    assert httpx.delete(f"{api}/v1/services/garbage", timeout=5).status_code == 202
    for name in ("huge", "shaped"):
        wait_for(lambda name=name: running(api, name, 1) and status(api, name)["health"] == "healthy",
                 timeout=60, what=f"{name} running")
    assert httpx.get(f"{api}/v1/services/garbage", timeout=5).status_code == 404
    wait_for(lambda: {e["data"]["service"] for e in events(api, "service_recovered")} >= {"huge", "shaped"},
             what="service_recovered events")
    assert store.faults().keys() <= {"nl\n"}
