"""The REST API against a real redis-server, through Starlette's TestClient (lifespan included)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import pytest
import yaml
from starlette.testclient import TestClient

from api.app import create_app
from api.params import TASK_ID_RULE
from shared.records import NodeRecord, ServiceFault, TaskRecord, TaskState, record_digest
from shared.settings import Settings
from shared.storage import Store
from shared.storage.connection import connect
from tests.support.procs import free_port
from tests.support.tasks import seed

WEB = {"service_name": "web", "image": "nginx:alpine", "replicas": 2, "ports": [{"container_port": 80}]}


@pytest.fixture
def client(redis_server: Any, cluster: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_server.url, cluster=cluster))) as client:
        yield client


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/services", json={**WEB, **overrides})
    assert response.status_code == 201, response.text
    return response.json()


def event_types(client: TestClient) -> list[str]:
    return [event["type"] for event in client.get("/v1/events").json()]


def test_health(client: TestClient, cluster: str) -> None:
    body = client.get("/v1/health").json()
    assert body == {"status": "ok", "cluster": cluster, "redis": {"master": ANY, "replicas_in_sync": 0}}
    assert body["redis"]["master"].startswith("127.0.0.1:")  # the test's redis-server, which has no replica


def test_service_lifecycle(client: TestClient) -> None:
    created = create(client)
    assert created["service_name"] == "web"
    assert created["version"] == 1
    assert created["deleting"] is False
    assert created["status"]["desired_replicas"] == 2
    assert created["status"]["health"] == "unhealthy"

    assert client.get("/v1/services/web").json()["image"] == "nginx:alpine"
    assert [service["service_name"] for service in client.get("/v1/services").json()] == ["web"]

    updated = client.put("/v1/services/web", json={**WEB, "image": "nginx:1.27"})
    assert updated.status_code == 200
    assert (updated.json()["image"], updated.json()["version"]) == ("nginx:1.27", 2)

    scaled = client.post("/v1/services/web/scale", json={"replicas": 5})
    assert scaled.status_code == 200
    assert scaled.json()["replicas"] == 5
    assert scaled.json()["status"]["desired_replicas"] == 5

    deleted = client.delete("/v1/services/web")
    assert deleted.status_code == 202
    assert deleted.json()["deleting"] is True
    assert client.get("/v1/services/web").json()["deleting"] is True
    assert event_types(client) == [
        "service_created", "service_updated", "service_update_started", "service_scaled", "service_deleted"
    ]


def test_create_from_yaml(client: TestClient) -> None:
    response = client.post("/v1/services", content=yaml.safe_dump(WEB), headers={"content-type": "application/yaml"})
    assert response.status_code == 201
    assert response.json()["ports"] == [{"host_port": 0, "container_port": 80, "protocol": "tcp"}]


def test_invalid_service_lists_every_field_path(client: TestClient) -> None:
    body = {**WEB, "service_name": "Bad_Name", "resources": {"cpu_millicores": 100, "memory_bytes": 1000}}
    response = client.post("/v1/services", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    errors = response.json()["errors"]
    assert "resources.memory_bytes: must be at least 16777216" in errors
    assert any(line.startswith("service_name: ") for line in errors)


def test_duplicate_and_deleting_services_conflict(client: TestClient) -> None:
    create(client)
    response = client.post("/v1/services", json=WEB)
    assert response.status_code == 409
    assert "already exists" in response.json()["message"]
    client.delete("/v1/services/web")
    assert "being deleted" in client.post("/v1/services", json=WEB).json()["message"]
    assert client.put("/v1/services/web", json=WEB).status_code == 409


def test_unknown_things_are_404(client: TestClient) -> None:
    for path in ("/v1/services/nope", "/v1/nodes/nope", "/v1/tasks/nope.1", "/v1/nothing-here"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert client.put("/v1/services/nope", json={**WEB, "service_name": "nope"}).status_code == 404
    assert client.delete("/v1/services/nope").status_code == 404
    assert client.post("/v1/services/nope/scale", json={"replicas": 1}).status_code == 404
    assert client.post("/v1/nodes/nope/drain").status_code == 404


def test_wrong_method_is_405_json(client: TestClient) -> None:
    response = client.delete("/v1/apply")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_put_name_must_match_url(client: TestClient) -> None:
    create(client)
    response = client.put("/v1/services/web", json={**WEB, "service_name": "other"})
    assert response.status_code == 422
    assert response.json()["errors"] == ["service_name: must match the URL (web)"]
    without_name = {key: value for key, value in WEB.items() if key != "service_name"}
    assert client.put("/v1/services/web", json={**without_name, "replicas": 3}).json()["replicas"] == 3


def test_scale_is_checked_against_the_whole_spec(client: TestClient) -> None:
    create(client, replicas=2, scale_policy={"min_replicas": 1, "max_replicas": 4})
    too_many = client.post("/v1/services/web/scale", json={"replicas": 9})
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0].startswith("replicas: ")
    assert "max_replicas 4" in too_many.json()["errors"][0]
    negative = client.post("/v1/services/web/scale", json={"replicas": -1})
    assert negative.json()["errors"] == ["replicas: must be at least 0"]
    not_a_number = client.post("/v1/services/web/scale", json={"replicas": "three"})
    assert not_a_number.status_code == 422
    assert not_a_number.json()["errors"] == ["replicas: must be an integer"]
    assert client.post("/v1/services/web/scale", json={}).json()["errors"] == ["replicas: is required"]
    assert client.post("/v1/services/web/scale", json=[3]).status_code == 400


@pytest.mark.parametrize(
    ("content", "content_type", "parser"),
    [
        ('{"service_name": "web",', "application/json", "not valid JSON"),
        ("service_name: [web", "application/yaml", "not valid YAML"),
    ],
)
def test_malformed_bodies_are_400(client: TestClient, content: str, content_type: str, parser: str) -> None:
    for method, path in (("POST", "/v1/services"), ("POST", "/v1/apply"), ("PUT", "/v1/services/web")):
        response = client.request(method, path, content=content, headers={"content-type": content_type})
        assert response.status_code == 400, (method, path)
        assert response.json()["error"] == "malformed"
        assert parser in response.json()["message"]


def test_wrong_shape_is_a_client_error(client: TestClient) -> None:
    assert client.post("/v1/services", json=[WEB]).status_code == 400
    assert client.post("/v1/apply", json="web").status_code == 400
    assert client.post("/v1/apply", json={"services": {"web": WEB}}).json()["errors"] == ["services: must be a list"]
    assert client.post("/v1/services", json={**WEB, "ports": "80"}).status_code == 422


def test_large_body_is_413(client: TestClient) -> None:
    body = {**WEB, "env": [f"K{index}={'x' * 100}" for index in range(12_000)]}
    response = client.post("/v1/services", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/v1/services").json() == []


def test_large_streamed_body_without_length_is_413(client: TestClient) -> None:
    chunks = (b"x" * 100_000 for _ in range(20))
    response = client.post("/v1/apply", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "request_entity_too_large"


def test_empty_body_is_400(client: TestClient) -> None:
    response = client.post("/v1/services", content=b"", headers={"content-type": "application/yaml"})
    assert response.status_code == 400
    assert "empty body" in response.json()["message"]


def test_apply_creates_updates_and_prunes(client: TestClient) -> None:
    create(client, service_name="old")
    config = {"services": [WEB, {**WEB, "service_name": "api", "ports": []}]}
    first = client.post("/v1/apply", content=yaml.safe_dump(config), headers={"content-type": "application/yaml"})
    assert first.status_code == 200
    assert first.json() == {"created": ["web", "api"], "updated": [], "unchanged": [], "deleted": [],
                            "versions": {"web": 1, "api": 1}}

    config["services"][0] = {**WEB, "replicas": 4}
    second = client.post("/v1/apply?prune=true", json=config).json()
    assert second == {"created": [], "updated": ["web"], "unchanged": ["api"], "deleted": ["old"],
                      "versions": {"web": 2, "api": 1}}
    assert client.get("/v1/services/old").json()["deleting"] is True


def test_apply_single_service_document(client: TestClient) -> None:
    response = client.post("/v1/apply", content=yaml.safe_dump(WEB), headers={"content-type": "application/yaml"})
    assert response.json()["created"] == ["web"]


def test_apply_refuses_another_clusters_config(client: TestClient, cluster: str) -> None:
    response = client.post("/v1/apply", json={"cluster_name": "elsewhere", "services": [WEB]})
    assert response.status_code == 422
    assert response.json()["errors"] == [f"cluster_name: this API serves cluster {cluster}"]
    assert client.post("/v1/apply", json={"cluster_name": cluster, "services": [WEB]}).status_code == 200
    assert client.post("/v1/apply?prune=maybe", json={"services": []}).status_code == 400


def seed_node(store: Store, node_id: str, heartbeat: float) -> None:
    store.register_node(NodeRecord(id=node_id, address="127.0.0.1", cpu_millicores=4000, memory_bytes=2**32,
                                   labels={"zone": "a"}, heartbeat_interval=1.0, last_heartbeat=heartbeat))


def seed_tasks(store: Store) -> None:
    seed(store, [
        TaskRecord(id="web.1", service="web", slot=1, node="n1", state=TaskState.RUNNING, cpu_millicores=500,
                   memory_bytes=2**28, started_at=time.time(), container_id="c1", reason="was pending"),
        TaskRecord(id="web.2", service="web", slot=2, node="n2", state=TaskState.ASSIGNED, cpu_millicores=500,
                   memory_bytes=2**28),
        TaskRecord(id="db.1", service="db", slot=1, node="n1", state=TaskState.STARTING, cpu_millicores=250,
                   memory_bytes=2**27),
        TaskRecord(id="web.3", service="web", slot=3, state=TaskState.PENDING, reason="n1: not enough memory"),
    ])


def test_nodes_view(client: TestClient, store: Store) -> None:
    seed_node(store, "n1", time.time())
    seed_node(store, "n2", time.time() - 60)
    seed_tasks(store)
    nodes = {node["id"]: node for node in client.get("/v1/nodes").json()}
    assert nodes["n1"]["status"] == "ready"
    assert nodes["n2"]["status"] == "down"
    assert nodes["n1"]["allocated"] == {"cpu_millicores": 750, "memory_bytes": 2**28 + 2**27}
    assert nodes["n1"]["capacity"] == {"cpu_millicores": 4000, "memory_bytes": 2**32}
    assert nodes["n1"]["tasks"] == 2
    assert nodes["n1"]["labels"] == {"zone": "a"}
    assert client.get("/v1/nodes/n2").json() == nodes["n2"]

    drained = client.post("/v1/nodes/n1/drain").json()
    assert (drained["availability"], drained["status"]) == ("drain", "draining")
    assert client.post("/v1/nodes/n1/activate").json()["status"] == "ready"
    assert event_types(client) == ["node_draining", "node_activated"]


def test_a_node_is_removed_only_when_down_unless_forced(client: TestClient, store: Store) -> None:
    """As `docker node rm`: a down node goes (record, index, revision; its event); a live one is refused
    naming its status, and goes with force=true; an unreadable record goes as it is."""
    seed_node(store, "n1", time.time())
    seed_node(store, "n2", time.time() - 60)
    seed_tasks(store)
    refused = client.delete("/v1/nodes/n1")
    assert refused.status_code == 409 and "'n1' is ready, not down" in refused.json()["message"]
    removed = client.delete("/v1/nodes/n2")
    assert removed.status_code == 200, removed.text
    assert (removed.json()["id"], removed.json()["was"]["status"]) == ("n2", "down")
    assert client.get("/v1/nodes/n2").status_code == 404
    assert client.delete("/v1/nodes/n2").status_code == 404
    assert [node["id"] for node in client.get("/v1/nodes").json()] == ["n1"]
    assert not store._client.exists(store._keys.node_tasks("n2"), store._keys.node_revision("n2"))
    assert client.delete("/v1/nodes/n1?force=maybe").status_code == 400
    assert client.delete("/v1/nodes/n1?force=true").json()["was"]["id"] == "n1"
    store._client.sadd(store._keys.nodes, "n9")
    store._client.hset(store._keys.node("n9"), mapping={"id": '"n9"', "cpu_millicores": "oops"})
    assert client.delete("/v1/nodes/n9").json() == {"id": "n9", "was": None}
    assert client.get("/v1/nodes").json() == []
    assert event_types(client) == ["node_removed"] * 3
    assert client.get("/v1/nodes/n1?force=true").status_code == 400  # force is DELETE's alone


def test_tasks_filtering_and_service_status(client: TestClient, store: Store) -> None:
    create(client, replicas=3)
    seed_tasks(store)
    tasks = client.get("/v1/tasks").json()
    assert [task["id"] for task in tasks] == ["db.1", "web.1", "web.2", "web.3"]
    assert [task["id"] for task in client.get("/v1/tasks?service=web&node=n1").json()] == ["web.1"]
    web1 = client.get("/v1/tasks/web.1").json()
    assert web1["reason"] is None
    assert (web1["state"], web1["node"], web1["container_id"], web1["gen"]) == ("running", "n1", "c1", 0)
    assert client.get("/v1/tasks/web.3").json()["reason"] == "n1: not enough memory"

    status = client.get("/v1/services/web").json()["status"]
    assert status["running_replicas"] == 1
    assert status["pending_replicas"] == 1
    assert status["health"] == "degraded"


def test_task_placement_gives_each_nodes_verdict_on_a_pending_task(client: TestClient, store: Store) -> None:
    for node_id, heartbeat in (("n1", time.time()), ("n2", time.time() - 60), ("n3", time.time()), ("n4", time.time())):
        seed_node(store, node_id, heartbeat)
    seed_tasks(store)  # web.1 (500m) and db.1 (250m) on n1, web.2 on n2; web.3 pending
    big = {"cpu_millicores": 3700, "memory_bytes": 2**28}
    create(client, service_name="big", replicas=1, resources=big, ports=[{"container_port": 80, "host_port": 8080}])
    seed(store, [
        TaskRecord(id="lb.1", service="lb", slot=1, node="n4", state=TaskState.RUNNING, host_ports=["8080/tcp"]),
        TaskRecord(id="big.1", service="big", slot=1, state=TaskState.PENDING, reason="as the scheduler stored it"),
    ])

    answer = client.get("/v1/tasks/big.1/placement").json()
    assert answer == {
        "task": "big.1", "state": "pending", "reason": "as the scheduler stored it",
        "nodes": [
            {"node": "n3", "fits": True, "reason": None},
            {"node": "n1", "fits": False, "reason": "not enough cpu (needs 3700m, 3250m free)"},
            {"node": "n2", "fits": False, "reason": "node is down"},
            {"node": "n4", "fits": False, "reason": "host port 8080/tcp in use"},
        ],
        "nodes_total": 4, "nodes_fitting": 1, "truncated": False,
    }
    bounded = client.get("/v1/tasks/big.1/placement?limit=2").json()
    assert ([entry["node"] for entry in bounded["nodes"]], bounded["nodes_total"], bounded["truncated"]) == (
        ["n3", "n1"], 4, True
    )
    # Not pending, or pending for a service that is gone: its state alone, no node judged.
    nothing = {"nodes": [], "nodes_total": 0, "nodes_fitting": 0, "truncated": False}
    assert client.get("/v1/tasks/web.1/placement").json() == {
        "task": "web.1", "state": "running", "reason": None, **nothing
    }
    assert client.get("/v1/tasks/web.3/placement").json() == {
        "task": "web.3", "state": "pending", "reason": "n1: not enough memory", **nothing
    }
    unknown = client.get("/v1/tasks/nope.1/placement")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    for query, rule in (("limit=0", "limit: must be an integer from 1 to 1000"),
                        ("limit=1001", "limit: must be an integer from 1 to 1000"),
                        ("limit=%C2%B2", "limit: must be an integer from 1 to 1000"),
                        ("limit=1&limit=2", "limit: given 2 times; give it once"),
                        ("limt=5", "limt: unknown query parameter (this endpoint takes limit)")):
        refused = client.get(f"/v1/tasks/big.1/placement?{query}")
        assert (refused.status_code, refused.json()["errors"]) == (400, [rule]), query
    for bad in ("big", "big.0", "big.10001", "Big.1", "%00.1"):
        refused = client.get(f"/v1/tasks/{bad}/placement")
        assert (refused.status_code, refused.json()["errors"]) == (400, [f"task: must be {TASK_ID_RULE}"]), bad
    for elsewhere in ("..%2Fbig.1", "big.1%2F..", "big.1%0A"):  # no route of the API's
        assert client.get(f"/v1/tasks/{elsewhere}/placement").status_code == 404, elsewhere


def test_events_filters(client: TestClient, store: Store) -> None:
    create(client)
    create(client, service_name="api")
    store.emit("custom", "long ago", now=1000.0, service="web")
    events = client.get("/v1/events").json()
    assert [event["type"] for event in events] == ["service_created", "service_created", "custom"]
    assert events[0]["data"] == {"service": "web"}
    assert events[0]["time"].endswith("Z")
    assert [event["message"] for event in client.get("/v1/events?service=api").json()] == ["service api created"]
    assert len(client.get("/v1/events?limit=1").json()) == 1
    store.emit("custom", "on node-1", now=1001.0, service="web", node="node-1")
    store.emit("custom", "on node-2", now=1002.0, node="node-2")
    assert [event["message"] for event in client.get("/v1/events?node=node-1").json()] == ["on node-1"]
    assert [event["message"] for event in client.get("/v1/events?node=node-2&service=web").json()] == []
    assert client.get("/v1/events?node=a%20b").status_code == 400
    since = events[1]["time"]
    assert len(client.get("/v1/events", params={"since": since}).json()) >= 1
    assert client.get("/v1/events?since=yesterday").status_code == 400
    assert client.get("/v1/events?limit=0").status_code == 400


def test_redis_down_is_503_not_500_or_hang(cluster: str) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", cluster=cluster)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.get("/v1/services")
        assert response.status_code == 503
        assert "redis unavailable" in response.json()["reason"]
        assert client.post("/v1/services", json=WEB).status_code == 503
        assert client.get("/v1/health").json()["status"] == "unavailable"
        assert time.monotonic() - started < 10


# -- records that cannot be read (written by hand, an older version or a bug) -------------------


def raw(redis_server: Any) -> Any:
    """A client that writes bytes as given (the store's decodes and encodes UTF-8)."""
    return connect(redis_server.url, decode=False)


def test_a_service_record_that_cannot_be_read_is_listed_failed_then_replaced_or_deleted(
    client: TestClient, store: Store, redis_server: Any
) -> None:
    create(client, service_name="good")
    raw(redis_server).hset(store._keys.services, mapping={"broken": b"\xff\x00 garbage", "shaped": b"[1, 2]"})
    listed = client.get("/v1/services")
    assert listed.status_code == 200
    by_name = {service["service_name"]: service for service in listed.json()}
    assert sorted(by_name) == ["broken", "good", "shaped"]
    broken = by_name["broken"]
    assert (broken["status"]["health"], broken["image"], broken["replicas"]) == ("failed", None, None)
    assert broken["status"]["reason"].startswith("record cannot be read: invalid JSON")
    assert by_name["shaped"]["status"]["reason"] == "record cannot be read: must be a mapping"
    assert by_name["good"]["status"]["health"] == "unhealthy" and by_name["good"]["status"]["reason"] is None
    assert client.get("/v1/services/broken").json() == {**broken, "autoscale": None}

    scaled = client.post("/v1/services/broken/scale", json={"replicas": 2})
    assert scaled.status_code == 409 and "replace it (PUT) or delete it" in scaled.json()["message"]
    assert client.post("/v1/services", json={**WEB, "service_name": "broken"}).status_code == 409

    replaced = client.put("/v1/services/broken", json={**WEB, "service_name": "broken"})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["image"], replaced.json()["status"]["health"]) == ("nginx:alpine", "unhealthy")
    deleted = client.delete("/v1/services/shaped")
    assert deleted.status_code == 202 and deleted.json()["deleting"] is True
    assert client.get("/v1/services/shaped").status_code == 404
    assert event_types(client)[-2:] == ["service_updated", "service_deleted"]


def test_a_fault_shows_only_on_the_record_it_was_found_in(client: TestClient, store: Store) -> None:
    create(client)
    body = store._client.hget(store._keys.services, "web")
    fault = ServiceFault(reason="cannot be scheduled: OverflowError: too large", since=1.0, record=record_digest(body))
    store.write_faults({"web": fault}, [])
    status = client.get("/v1/services").json()[0]["status"]
    assert (status["health"], status["reason"]) == ("failed", fault.reason)
    fixed = client.put("/v1/services/web", json={**WEB, "image": "nginx:1.27"}).json()["status"]
    assert (fixed["health"], fixed["reason"]) == ("unhealthy", None)  # a new record, not yet judged


def test_apply_is_all_or_nothing_when_a_service_is_being_deleted(client: TestClient) -> None:
    create(client, service_name="a")
    create(client, service_name="b")
    client.delete("/v1/services/b")
    config = {"services": [{**WEB, "service_name": "a", "replicas": 5}, {**WEB, "service_name": "b"},
                           {**WEB, "service_name": "c"}]}
    response = client.post("/v1/apply", json=config)
    assert response.status_code == 409 and "'b' is being deleted" in response.json()["message"]
    assert client.get("/v1/services/a").json()["replicas"] == 2
    assert client.get("/v1/services/c").status_code == 404


def test_apply_replaces_and_prunes_records_that_cannot_be_read(
    client: TestClient, store: Store, redis_server: Any
) -> None:
    raw(redis_server).hset(store._keys.services, mapping={"a": b"{}", "z": b"nope"})
    outcome = client.post("/v1/apply?prune=true", json={"services": [{**WEB, "service_name": "a"}]}).json()
    assert outcome == {"created": [], "updated": ["a"], "unchanged": [], "deleted": ["z"], "versions": {"a": 1}}
    assert [service["service_name"] for service in client.get("/v1/services").json()] == ["a"]


def test_task_node_and_event_records_that_cannot_be_read(client: TestClient, store: Store) -> None:
    seed_node(store, "n1", time.time())
    seed_tasks(store)
    store._client.hset(store._keys.assignments, "web.9", "not json")
    store._client.sadd(store._keys.nodes, "n9")
    store._client.hset(store._keys.node("n9"), mapping={"id": '"n9"', "address": '"x"', "cpu_millicores": "oops"})
    store._client.xadd(store._keys.events, {"event": "not json"})
    store._client.xadd(store._keys.events, {"something": "else"})

    assert [task["id"] for task in client.get("/v1/tasks").json()] == ["db.1", "web.1", "web.2", "web.3"]
    assert [node["id"] for node in client.get("/v1/nodes").json()] == ["n1"]
    assert client.get("/v1/events").status_code == 200
    for response in (
        client.get("/v1/tasks/web.9"), client.post("/v1/tasks/web.9/stop"), client.get("/v1/tasks/web.9/placement"),
        client.get("/v1/nodes/n9"), client.post("/v1/nodes/n9/drain"),
    ):
        assert response.status_code == 409 and "cannot be read" in response.json()["message"]
    assert store._client.hget(store._keys.node("n9"), "availability") is None  # the drain wrote nothing
