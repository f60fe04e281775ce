"""The autoscaler's adapter on a real redis-server (no Docker): samples written as an agent would."""

from __future__ import annotations

from scheduler.autoscaler import Autoscaler
from shared import telemetry
from shared.config import ServiceSpec
from shared.records import TaskRecord, TaskState
from shared.storage import Store
from shared.storage import telemetry as stored_telemetry
from tests.support import tasks as stored_tasks

NOW = 1_000_000.0


def seed(store: Store, replicas: int, cpu_percent: float, now: float) -> None:
    spec = ServiceSpec.model_validate({
        "service_name": "web", "image": "busybox", "replicas": replicas,
        "resources": {"cpu_millicores": 100, "memory_bytes": 32 << 20},
        "scale_policy": {"min_replicas": 1, "max_replicas": 6, "target_cpu": 50.0, "cooldown_seconds": 30},
    })
    store.update_service(spec, now, create=True)
    write_samples(store, replicas, cpu_percent, now)


def write_samples(store: Store, replicas: int, cpu_percent: float, now: float) -> None:
    tasks = []
    for slot in range(1, replicas + 1):
        tasks.append(TaskRecord(
            id=f"web.{slot}", service="web", slot=slot, gen=1, node="node-1", state=TaskState.RUNNING,
            container_id=f"c{slot}", cpu_millicores=100, memory_bytes=32 << 20,
        ))
    stored_tasks.seed(store, [t for t in tasks if t.id not in {x.id for x in store.tasks()}])
    samples = [
        telemetry.TaskSample(
            task=t.id, service="web", node="node-1", gen=1, container_id=t.container_id or "", sampled_at=now,
            cpu_millicores=cpu_percent, cpu_percent=cpu_percent, memory_bytes=1, memory_percent=0.0,
        )
        for t in tasks
    ]
    with store._client.pipeline() as pipe:
        stored_telemetry.write_samples(pipe, store._keys, samples, 1.0)
        pipe.execute()


def test_a_new_leader_keeps_the_cooldown_and_a_users_change_is_never_overwritten(store: Store):
    seed(store, 2, 100.0, NOW)
    first = Autoscaler(store, 1.0)
    decision = first.run_once(NOW)["web"]
    assert decision.act and decision.desired == 4
    record = store.service("web")
    assert record.spec.replicas == 4 and record.version == 2
    [event] = [e for e in store.events(service="web") if e["type"] == "service_autoscaled"]
    assert event["data"]["current"] == 2 and event["data"]["desired"] == 4
    assert event["data"]["metrics"]["cpu"]["utilisation"] == 100

    # The leader dies; a new one (a new Autoscaler, the same Redis) still honours the cooldown.
    write_samples(store, 4, 100.0, NOW + 10)
    successor = Autoscaler(store, 1.0)
    decision = successor.run_once(NOW + 10)["web"]
    assert decision.desired == 6 and not decision.act and "cooldown" in decision.reason
    assert store.service("web").spec.replicas == 4

    # A user's change made between the read and the write wins: compare-and-set on the version.
    record = store.service("web")
    store.update_service(record.spec.model_copy(update={"replicas": 5}), NOW + 40)
    state_before = store._client.hget(store._keys.autoscale, "web")
    successor._apply(record, decision, store.autoscale_states()["web"], NOW + 40)
    assert store.service("web").spec.replicas == 5
    assert store._client.hget(store._keys.autoscale, "web") == state_before

    # A service that loses its policy loses its state.
    spec = store.service("web").spec.model_copy(update={"scale_policy": None})
    store.update_service(spec, NOW + 50)
    assert successor.run_once(NOW + 50) == {}
    assert store._client.hget(store._keys.autoscale, "web") is None
