"""Every answer the API renders from real records holds to the OpenAPI document, strictly: a property
the document does not name, or one it requires that is missing, fails here in milliseconds (the
schemathesis run in test_openapi.py checks the same against a live cluster, in minutes).

The records are written as the processes that own them write them: the Store for services, tasks and
nodes, the node agent's usage totals (worker/usage_sampler.py), the autoscaler's decision and action
(scheduler/replica_calculator.py), a task's usage sample (shared/telemetry.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import jsonschema_rs
import pytest
from starlette.testclient import TestClient

from api.app import ROUTES, create_app
from api.openapi import v1_routes
from scheduler.replica_calculator import Readiness, Replica, applied, decide
from shared import telemetry
from shared.records import (
    AutoscaleState,
    Health,
    NodeRecord,
    PreviousContainer,
    PublishedPort,
    TaskRecord,
    TaskState,
)
from shared.settings import Settings
from shared.storage import Store
from shared.storage import telemetry as stored_telemetry
from tests.support.tasks import seed
from worker.usage_sampler import Sampler

WEB = {
    "service_name": "web", "image": "nginx:alpine", "replicas": 2, "ports": [{"container_port": 80}],
    "env": ["MODE=test"], "network": "webnet",
    "scale_policy": {"min_replicas": 1, "max_replicas": 4, "target_cpu": 50.0},
    "resources": {"cpu_millicores": 100, "memory_bytes": 64 << 20},
}
# Operations this test does not call: they need a node agent (test_logs.py, test_exec.py).
ELSEWHERE = {("/v1/tasks/{task}/logs", "get"), ("/v1/tasks/{task}/exec", "post")}


@pytest.fixture
def client(redis_server: Any, cluster: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_server.url, cluster=cluster))) as client:
        yield client


def populate(client: TestClient, store: Store) -> None:
    """A service mid-update with a running replica (health, address, a previous container) and a
    pending one, a node with measured usage, the autoscaler's last decision and action, a replica's
    usage sample, and a service whose stored record cannot be read."""
    now = time.time()
    assert client.post("/v1/services", json=WEB).status_code == 201
    assert client.put("/v1/services/web", json={**WEB, "image": "nginx:1.27"}).status_code == 200
    record = store.service("web")
    port = PublishedPort(host_ip="127.0.0.2", host_port=30080, container_port=80)
    running = TaskRecord(
        id="web.1", service="web", slot=1, gen=2, node="n1", state=TaskState.RUNNING, template=record.template_hash(),
        container_id="c" * 64, ports=[port], started_at=now, updated_at=now, health=Health.HEALTHY,
        health_output="ok", address="10.244.0.5", cpu_millicores=100, memory_bytes=64 << 20,
        previous=PreviousContainer(node="n1", gen=1, container_id="b" * 64, address="10.244.0.4", ports=[port]),
    )
    pending = TaskRecord(id="web.2", service="web", slot=2, state=TaskState.PENDING, reason="no node fits")
    seed(store, [running, pending])
    node = NodeRecord(id="n1", address="127.0.0.2", cpu_millicores=2000, memory_bytes=1 << 30, last_heartbeat=now,
                      labels={"zone": "a"})
    store.register_node(node)
    sample = telemetry.TaskSample(
        task="web.1", service="web", node="n1", gen=2, container_id=running.container_id or "", sampled_at=now,
        cpu_millicores=80.0, cpu_percent=80.0, memory_bytes=32 << 20, memory_percent=50.0, source="cgroup",
    )
    sampler = SimpleNamespace(node=SimpleNamespace(id="n1"), record=node)  # what Sampler.usage reads of itself
    store.heartbeat("n1", now, usage=Sampler.usage(sampler, [sample], [running]))
    with store._client.pipeline() as pipe:
        stored_telemetry.write_samples(pipe, store._keys, [sample], 5.0)
        pipe.execute()
    replicas = [Replica("web.1", Readiness.MEASURED, cpu_percent=95.0)]
    decision, state = decide(record.spec, record.version, replicas, AutoscaleState(), now)
    state = applied(state, decision, record.version, now)
    assert state.last_decision and state.last_action
    store._client.hset(store._keys.autoscale, "web", state.model_dump_json())
    store._client.hset(store._keys.services, "broken", "{not a record")


def schema_for(doc: dict[str, Any], path: str, method: str, status: int) -> jsonschema_rs.Validator:
    answer = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**answer, "components": doc["components"]})


def test_every_answer_holds_to_the_document(client: TestClient, store: Store) -> None:
    populate(client, store)
    store.register_node(NodeRecord(id="gone", address="127.0.0.9", cpu_millicores=1000, memory_bytes=1 << 30,
                                   last_heartbeat=time.time() - 3600))
    doc = client.get("/v1/openapi.json").json()
    calls: list[tuple[str, str, str, int, dict[str, Any] | None]] = [
        # (path as documented, method, URL, status, JSON body)
        ("/v1/health", "get", "/v1/health", 200, None),
        ("/v1/openapi.json", "get", "/v1/openapi.json", 200, None),
        ("/v1/version", "get", "/v1/version", 200, None),
        ("/v1/services", "get", "/v1/services", 200, None),
        ("/v1/services/{name}", "get", "/v1/services/web", 200, None),
        ("/v1/services/{name}", "get", "/v1/services/broken", 200, None),
        ("/v1/services/{name}/metrics", "get", "/v1/services/web/metrics", 200, None),
        ("/v1/services/{name}/endpoints", "get", "/v1/services/web/endpoints", 200, None),
        ("/v1/nodes", "get", "/v1/nodes", 200, None),
        ("/v1/nodes/{node}", "get", "/v1/nodes/n1", 200, None),
        ("/v1/nodes/{node}/drain", "post", "/v1/nodes/n1/drain", 200, None),
        ("/v1/nodes/{node}/activate", "post", "/v1/nodes/n1/activate", 200, None),
        ("/v1/tasks", "get", "/v1/tasks", 200, None),
        ("/v1/tasks/{task}", "get", "/v1/tasks/web.1", 200, None),
        ("/v1/tasks/{task}/placement", "get", "/v1/tasks/web.2/placement", 200, None),
        ("/v1/tasks/{task}/placement", "get", "/v1/tasks/web.1/placement?limit=1", 200, None),
        ("/v1/events", "get", "/v1/events", 200, None),
        ("/v1/services/{name}/scale", "post", "/v1/services/web/scale", 200, {"replicas": 3}),
        ("/v1/services/{name}", "put", "/v1/services/web", 200, {**WEB, "replicas": 3}),
        ("/v1/apply", "post", "/v1/apply", 200, {"services": [{**WEB, "replicas": 3}, {**WEB, "service_name": "db"}]}),
        ("/v1/services", "post", "/v1/services", 201, {**WEB, "service_name": "cache", "scale_policy": None}),
        ("/v1/services", "post", "/v1/services", 201, {"service_name": "agent", "image": "img", "mode": "global"}),
        ("/v1/apply", "post", "/v1/apply?dry_run=true", 200, {"services": [{**WEB, "image": "nginx:2"}]}),
        ("/v1/services/{name}/history", "get", "/v1/services/web/history", 200, None),
        ("/v1/services/{name}/pause", "post", "/v1/services/web/pause", 200, None),
        ("/v1/services/{name}/resume", "post", "/v1/services/web/resume", 200, None),
        ("/v1/services/{name}/undo", "post", "/v1/services/web/undo", 200, None),
        ("/v1/services/{name}/rebalance", "post", "/v1/services/db/rebalance?dry_run=true", 200, None),
        ("/v1/services/{name}/rebalance", "post", "/v1/services/db/rebalance", 200, None),
        ("/v1/tasks/{task}/stop", "post", "/v1/tasks/web.1/stop", 202, None),
        ("/v1/services/{name}", "delete", "/v1/services/broken", 202, None),
        ("/v1/services/{name}", "delete", "/v1/services/web", 202, None),
        ("/v1/nodes/{node}", "delete", "/v1/nodes/gone", 200, None),
        # Errors: every one is a Problem.
        ("/v1/services/{name}", "get", "/v1/services/nope", 404, None),
        ("/v1/services", "post", "/v1/services", 422, {**WEB, "replicas": -1}),
        ("/v1/services", "post", "/v1/services", 409, {**WEB, "service_name": "cache"}),
        ("/v1/events", "get", "/v1/events?limit=0", 400, None),
        ("/v1/tasks/{task}/placement", "get", "/v1/tasks/web.2/placement?limit=1001", 400, None),
        ("/v1/services", "post", "/v1/services", 415, None),
        ("/v1/nodes/{node}", "delete", "/v1/nodes/gone", 404, None),
        ("/v1/nodes/{node}", "delete", "/v1/nodes/n1", 409, None),
        ("/v1/services/{name}/pause", "post", "/v1/services/db/pause", 409, None),
        ("/v1/services/{name}/undo", "post", "/v1/services/db/undo?to_version=9", 404, None),
        ("/v1/services/{name}/rebalance", "post", "/v1/services/agent/rebalance", 409, None),
    ]
    called = set()
    for path, method, url, status, body in calls:
        response = client.request(method.upper(), url, json=body)
        assert response.status_code == status, (method, url, response.text)
        errors = [f"{error.instance_path}: {error.message}"
                  for error in schema_for(doc, path, method, status).iter_errors(response.json())]
        assert not errors, (method, url, status, errors[:5])
        called.add((path, method))
    assert set(v1_routes(ROUTES)) - ELSEWHERE <= called
    # What the views showed: every block of the records above, so none was validated away as empty.
    task = client.get("/v1/tasks/web.1").json()
    assert task["previous"]["ports"] and task["health"] == "healthy" and task["address"] == "10.244.0.5"
    assert client.get("/v1/nodes/n1").json()["usage"]["containers"] == 1
    assert client.get("/v1/tasks/web.2/placement").json()["nodes"] == [{"node": "n1", "fits": True, "reason": None}]
    metrics = client.get("/v1/services/cache/metrics").json()
    assert metrics["autoscale"] is None


def test_the_autoscaler_and_the_update_are_shown(client: TestClient, store: Store) -> None:
    populate(client, store)
    service = client.get("/v1/services/web").json()
    assert service["update"]["state"] == "updating"
    assert service["status"]["healthy_replicas"] == 1
    assert service["autoscale"]["last_decision"]["metrics"]["cpu"]["measured"] == 1
    assert service["autoscale"]["last_scaled"]["from"] == 2
    assert client.get("/v1/services/web/metrics").json()["replicas"][0]["fresh"] is True


def test_a_property_the_document_does_not_name_fails(client: TestClient, store: Store) -> None:
    populate(client, store)
    doc = client.get("/v1/openapi.json").json()
    task = client.get("/v1/tasks/web.1").json()
    validator = schema_for(doc, "/v1/tasks/{task}", "get", 200)
    assert validator.is_valid(task)
    assert not validator.is_valid({**task, "extra": 1})
    assert not validator.is_valid({**task, "previous": {**task["previous"], "extra": 1}})
    assert not validator.is_valid({key: value for key, value in task.items() if key != "health"})
    service = client.get("/v1/services/web").json()
    assert not schema_for(doc, "/v1/services/{name}", "get", 200).is_valid({**service, "extra": 1})
