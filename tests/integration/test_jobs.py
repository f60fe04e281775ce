"""The agent's job code (worker/jobs.py) against the in-memory engine (worker/hollow.py's FakeEngine,
a worker/container_engine.py ContainerEngine) and a real redis-server: what each job makes of the
engine and reports, in milliseconds and without Docker."""

from __future__ import annotations

import time

import pytest

from shared import labels
from shared.config import validate_service
from shared.records import TaskRecord, TaskState, template_hash
from shared.storage import Store
from tests.support.tasks import seed
from worker import jobs
from worker.hollow import FakeEngine
from worker.node import Node, serving

NODE = "mem-1"


@pytest.fixture
def node(store: Store) -> Node:
    return Node(id=NODE, address="127.0.0.1", store=store, engine=FakeEngine(store._keys.cluster, NODE))


def assign(store: Store, *slots: int, gen: int = 1, service: str = "web") -> list[TaskRecord]:
    spec = validate_service({"service_name": service, "image": "img", "replicas": len(slots)})
    if service not in store.services():
        store.create_service(spec, time.time())
    tasks = [
        TaskRecord(id=f"{service}.{slot}", service=service, slot=slot, gen=gen, node=NODE, state=TaskState.ASSIGNED,
                   template=template_hash(spec), incarnation="i1", assigned_at=time.time())
        for slot in slots
    ]
    seed(store, tasks)
    return tasks


def test_a_batch_of_starts_makes_each_container_once_and_reports_it_running(store: Store, node: Node):
    assign(store, 1, 2, 3)
    with serving(node):
        jobs.run_batch([("start", f"web.{slot}", 1, "i1") for slot in (1, 2, 3)])
        jobs.start_task("web.1", 1, "i1")  # the same decision again (a job re-sent): adopted, not made again
    running = {task.id: task for task in store.tasks()}
    assert {task.state for task in running.values()} == {TaskState.RUNNING}
    containers = node.engine.containers()
    assert sorted(c.labels[labels.TASK] for c in containers) == ["web.1", "web.2", "web.3"]
    assert {c.id for c in containers} == {task.container_id for task in running.values()}


def test_a_start_for_a_decision_that_moved_on_does_nothing(store: Store, node: Node):
    assign(store, 1, gen=2)
    with serving(node):
        jobs.start_task("web.1", 1, "i1")  # gen 1: stale
        jobs.start_task("web.1", 2, "other")  # another record of the slot
    assert store.task("web.1").state is TaskState.ASSIGNED and node.engine.containers() == []


def test_a_start_whose_service_is_gone_fails_with_the_reason(store: Store, node: Node):
    assign(store, 1)
    store.delete_service("web", time.time())
    store._client.hdel(store._keys.services, "web")
    with serving(node):
        jobs.start_task("web.1", 1, "i1")
    failed = store.task("web.1")
    assert failed.state is TaskState.FAILED and "not found" in (failed.reason or "")


def test_a_users_halt_stops_the_container_and_keeps_it(store: Store, node: Node):
    assign(store, 1)
    with serving(node):
        jobs.start_task("web.1", 1, "i1")
        jobs.halt_task("web.1", 1, "i1")
    halted = store.task("web.1")
    assert (halted.state, halted.reason) == (TaskState.STOPPED, jobs.STOPPED_ON_REQUEST)
    assert [c.status for c in node.engine.containers()] == ["exited"]


def test_a_stop_of_a_shut_down_task_removes_its_containers_and_reports_them_gone(store: Store, node: Node):
    [task] = assign(store, 1)
    with serving(node):
        jobs.start_task("web.1", 1, "i1")
        seed(store, [store.task("web.1").model_copy(update={"gen": 2, "state": TaskState.SHUTDOWN})])
        jobs.stop_task("web.1", 2, "i1")
    assert node.engine.containers() == [] and store.task(task.id).removed
