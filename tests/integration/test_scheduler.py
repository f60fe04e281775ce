"""The scheduler against a real redis-server: reacting to changes, idempotent jobs, leader failover."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from scheduler.backoff import Backoff
from scheduler.loop import Scheduler
from shared.config import validate_service
from shared.dispatch import queue as node_queue
from shared.event_kinds import EventKind
from shared.records import Availability, NodeRecord, TaskRecord, TaskState, incarnation_at
from shared.settings import Settings
from shared.storage import Store
from shared.storage import plans as store_module
from shared.storage.connection import NotLeader, connect
from shared.task_parts import status_of
from tests.support.procs import Processes, wait_for
from tests.support.tasks import seed

GIB = 1024**3


def register(store: Store, node_id: str, cpu: int = 2000) -> None:
    store.register_node(
        NodeRecord(id=node_id, address="127.0.0.2", cpu_millicores=cpu, memory_bytes=GIB, last_heartbeat=time.time())
    )


def test_reconcile_enqueues_each_decision_once(store: Store, redis_server, cluster: str):
    settings = Settings(redis_url=redis_server.url, cluster=cluster)
    scheduler = Scheduler(settings, store)
    assert scheduler.lead()
    register(store, "n1")
    store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 2}), time.time())
    scheduler.reconcile_once()
    scheduler.reconcile_once()
    scheduler.reconcile_once()
    queue = node_queue(connect(redis_server.url, decode=False), store._keys.queue("n1"))
    # The node's two decisions travel as one batch job (shared/dispatch.py), enqueued once.
    assert len(queue.job_ids) == 1
    job = queue.jobs[0]
    assert job.func_name == "worker.jobs.run_batch"
    incarnations = {task.id: task.incarnation for task in store.tasks()}
    assert sorted(map(tuple, job.args[0])) == [
        ("start", "web.1", 1, incarnations["web.1"]), ("start", "web.2", 1, incarnations["web.2"])
    ]
    assert {t.state for t in store.tasks()} == {TaskState.ASSIGNED}


def test_a_deposed_leader_writes_nothing(store: Store, redis_server, cluster: str):
    settings = Settings(redis_url=redis_server.url, cluster=cluster)
    old, new = Scheduler(settings, store), Scheduler(settings, store)
    assert old.lead()
    store._client.delete(store._keys.leader)  # the lease expired while the old leader was paused
    assert new.lead()
    task = TaskRecord(id="web.1", service="web", slot=1)
    try:
        store.write_assignments([("web.1", task, None)], leader_token=old.lease.token)
        raise AssertionError("a deposed leader wrote a task")
    except NotLeader:
        pass
    assert store.tasks() == []


def test_backoff_settings_reach_the_policy(redis_server, cluster: str):
    settings = Settings(redis_url=redis_server.url, cluster=cluster, restart_backoff_base=0.5, restart_backoff_max=4)
    assert Scheduler(settings).policy.backoff == Backoff(0.5, 4, settings.restart_reset_after)


def test_scheduler_reacts_to_a_change_notification(procs: Processes, store: Store):
    procs.scheduler()
    register(store, "n1")
    store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 1}), time.time())
    wait_for(lambda: [t for t in store.tasks() if t.state is TaskState.ASSIGNED], timeout=10, what="a placement")


def test_standby_scheduler_takes_over_when_the_leader_is_killed(procs: Processes, store: Store):
    procs.scheduler("s1")
    procs.scheduler("s2")
    token = wait_for(lambda: store._client.get(store._keys.leader), what="a leader")

    def holder_of(value: str) -> str | None:
        """The scheduler that logged taking the lease `value` (it logs just after it took it)."""
        return next((name for name in ("s1", "s2") if re.search(f"became leader \\({value}\\)", procs.log(name))), None)

    leader = wait_for(lambda: holder_of(token), what="the leader's log line")
    standby = "s2" if leader == "s1" else "s1"
    procs.kill(leader)
    killed_at = time.monotonic()
    new_token = wait_for(
        lambda: (value := store._client.get(store._keys.leader)) and value != token and value,
        timeout=5,
        interval=0.05,
        what="the standby to take over within 5 s",
    )
    assert time.monotonic() - killed_at < 5
    assert wait_for(lambda: holder_of(new_token), what="the new leader's log line") == standby
    # The new leader writes its `leader_changed` event just after it takes the lease: wait for it.
    wait_for(
        lambda: [e["data"]["leader"] for e in store.events() if e["type"] == "leader_changed"] == [token, new_token],
        what="one leader_changed event per leader",
    )


def test_a_service_that_cannot_be_scheduled_is_failed_once_and_recovers_when_replaced(
    store: Store, redis_server, cluster: str
):
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    register(store, "n1")
    now = time.time()
    good = validate_service({"service_name": "good", "image": "img", "replicas": 2})
    store.create_service(good, now)
    # As an older version (or a hand) stored it: memory no float can hold; placement raised OverflowError.
    huge = {"service_name": "huge", "image": "img", "replicas": 1,
            "resources": {"cpu_millicores": 100, "memory_bytes": 10**400}}
    store._client.hset(store._keys.services, "huge", json.dumps({"spec": huge, "created_at": now, "updated_at": now}))
    for _ in range(3):
        scheduler.reconcile_once()
    assert sorted(task.id for task in store.tasks()) == ["good.1", "good.2"]
    fault = store.faults()["huge"]
    assert fault.reason.startswith(("cannot be scheduled: OverflowError", "record cannot be read: spec.resources"))
    assert [e["data"]["service"] for e in store.events() if e["type"] == "service_failed"] == ["huge"]

    store.update_service(validate_service({**huge, "resources": {"cpu_millicores": 100, "memory_bytes": 2**24}}),
                         time.time())
    scheduler.reconcile_once()
    assert store.faults() == {} and "huge.1" in {task.id for task in store.tasks()}
    assert [e["data"]["service"] for e in store.events() if e["type"] == "service_recovered"] == ["huge"]


def test_an_unreadable_task_record_is_replaced_in_one_pass_not_retried_forever(
    store: Store, redis_server, cluster: str
):
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    register(store, "n1")
    store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 1}), time.time())
    store._client.hset(store._keys.assignments, mapping={"web.1": '{"id":"web.1","rev":7, not json', "junk": "[]"})
    pubsub = store._client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store._keys.changes)
    try:
        wait_for(lambda: pubsub.get_message(timeout=0.1) is None and pubsub.subscribed, what="the subscription")
        now = time.time()
        first = scheduler.reconcile_once(now)
        assert len(first.writes) == 2
    finally:
        pubsub.close()
    replaced = store.task("web.1")
    assert (replaced.state, replaced.incarnation) == (TaskState.FAILED, incarnation_at(now))
    assert replaced.reason is not None and replaced.reason.startswith("unreadable record replaced: invalid JSON")
    assert "junk" not in store._client.hkeys(store._keys.assignments)
    scheduler.reconcile_once()
    assert store.task("web.1").state is TaskState.ASSIGNED
    assert [e["data"]["task"] for e in store.events() if e["type"] == "task_unreadable"] == ["web.1", "junk"]


def leading_on_two_nodes(store: Store, redis_server, cluster: str) -> Scheduler:
    """A leading scheduler that has placed web's 2 replicas on nodes n1 and n2."""
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    register(store, "n1")
    register(store, "n2")
    store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 2}), time.time())
    scheduler.reconcile_once()
    return scheduler


def test_a_node_whose_record_cannot_be_read_is_down_and_its_replicas_move(store: Store, redis_server, cluster: str):
    scheduler = leading_on_two_nodes(store, redis_server, cluster)
    assert sorted(task.node for task in store.tasks()) == ["n1", "n2"]
    store._client.hset(store._keys.node("n2"), "cpu_millicores", "{not json")
    scheduler.reconcile_once()
    scheduler.reconcile_once()
    assert [task.node for task in store.tasks()] == ["n1", "n1"]
    assert [e["data"]["node"] for e in store.events() if e["type"] == "node_unreadable"] == ["n2"]  # once


def test_a_new_leader_stores_heard_since_and_gives_a_silent_node_the_window_from_then(
    store: Store, redis_server, cluster: str
):
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    store.register_node(NodeRecord(id="n1", address="127.0.0.2", cpu_millicores=2000, memory_bytes=GIB,
                                   heartbeat_interval=2.0, last_heartbeat=time.time() - 100))
    store.register_node(NodeRecord(id="n2", address="127.0.0.3", cpu_millicores=2000, memory_bytes=GIB,
                                   heartbeat_interval=10.0, last_heartbeat=time.time()))  # beating, 30 s window
    store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 2}), time.time())
    took_over = time.time()
    scheduler.reconcile_once(took_over)
    assert store.heard_since() == took_over  # what the API judges nodes by, too
    assert sorted(task.node for task in store.tasks()) == ["n1", "n2"]  # n1 counts as heard since the takeover
    assert not [e for e in store.events() if e["type"] == "node_down"]
    scheduler.reconcile_once(took_over + 6.1)
    assert [e["data"]["node"] for e in store.events() if e["type"] == "node_down"] == ["n1"]
    assert [task.node for task in store.tasks()] == ["n2", "n2"]


def test_heard_since_is_written_by_the_leader_only_and_junk_counts_as_none(store: Store, redis_server, cluster: str):
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    try:
        store.write_heard_since(time.time(), leader_token="not-the-leader")
        raise AssertionError("a scheduler without the lease wrote heard_since")
    except NotLeader:
        pass
    assert not store._client.exists(store._keys.heard_since)
    assert store.heard_since() == 0.0
    for junk in ("not a time", "nan", "-1", "1e999"):
        store._client.set(store._keys.heard_since, junk)
        assert store.heard_since() == 0.0  # nodes judged by their heartbeats alone


def test_a_users_stop_request_is_folded_into_the_assignment_as_the_halt_is_sent(
    store: Store, redis_server, cluster: str
):
    """The API writes a stop request (never the task); the scheduler sends the halt and folds the request
    into its assignment in one write, so the request is gone and the task still reads stop_requested."""
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    register(store, "n1")
    record = store.create_service(validate_service({"service_name": "web", "image": "img", "replicas": 1}),
                                  time.time())
    seed(store, [TaskRecord(id="web.1", service="web", slot=1, gen=1, node="n1", state=TaskState.RUNNING,
                            template=record.template_hash(), container_id="c1", updated_at=time.time())])
    asked = store.request_stop("web.1", time.time())
    assert asked.stop_requested and store.task("web.1").stop_requested
    assert store._client.hkeys(store._keys.stops) == ["web.1"]
    plan = scheduler.reconcile_once()
    assert [(job.action, job.task, job.gen) for write in plan.writes for job in write.jobs] == [("halt", "web.1", 1)]
    assert store._client.hkeys(store._keys.stops) == []
    assert store.task("web.1").stop_requested and store.task("web.1").halt_sent_at is not None
    assert scheduler.reconcile_once().writes == []  # sent once


def test_each_nodes_index_names_the_tasks_its_agent_reads(store: Store, redis_server, cluster: str):
    """An agent reads only the tasks whose assignment names its node (store.node_tasks): the scheduler keeps
    each node's index with its writes, a start-first move on both nodes until the old container goes."""
    scheduler = leading_on_two_nodes(store, redis_server, cluster)
    on = {task.node: task.id for task in store.tasks()}
    assert {node: set(store.node_tasks(node).good) for node in on} == {node: {task} for node, task in on.items()}
    seed(store, [task.model_copy(update={"state": TaskState.RUNNING, "container_id": f"c-{task.id}"})
                 for task in store.tasks()])
    store.set_availability("n1", Availability.DRAIN, time.time())
    scheduler.reconcile_once()
    moved = store.task(on["n1"])
    assert (moved.node, moved.previous and moved.previous.node) == ("n2", "n1")  # start-first
    assert set(store.node_tasks("n1").good) == {moved.id}
    assert set(store.node_tasks("n2").good) == {on["n1"], on["n2"]}
    seed(store, [moved.model_copy(update={"state": TaskState.RUNNING, "container_id": "c-new"})])
    scheduler.reconcile_once()  # ready: the previous container is released
    assert set(store.node_tasks("n1").good) == set() and store.task(moved.id).previous is None
    store.delete_service("web", time.time())
    scheduler.reconcile_once()
    for task in store.tasks():  # as each agent reports once its stop job removed the containers
        assert task.node is not None and task.state is TaskState.SHUTDOWN
        gone = status_of(task.model_copy(update={"state": TaskState.STOPPED}), removed=True)
        store._client.hset(store._keys.statuses, task.id, gone.model_dump_json())
    scheduler.reconcile_once()
    assert store.tasks() == [] and set(store.node_tasks("n2").good) == set()
    assert not store._client.exists(store._keys.node_tasks("n1"), store._keys.node_tasks("n2"))


def test_a_services_tasks_are_read_without_the_others(store: Store):
    seed(store, [TaskRecord(id=f"{name}.{slot}", service=name, slot=slot)
                 for name in ("web", "web2", "w") for slot in (1, 2)])
    assert sorted(task.id for task in store.service_tasks(["web"])) == ["web.1", "web.2"]
    assert sorted(task.id for task in store.service_tasks(["w", "web2"])) == ["w.1", "w.2", "web2.1", "web2.2"]
    assert store.service_tasks([]) == [] and store.service_tasks(["gone"]) == []


def test_a_leader_deposed_between_chunks_keeps_what_it_wrote_and_writes_no_more(
    store: Store, redis_server, cluster: str, monkeypatch: pytest.MonkeyPatch
):
    """Each chunk of a large plan is fenced on its own: the chunks written before the lease moved on stand
    (the loop sends their jobs and events), the rest is not written."""
    scheduler = Scheduler(Settings(redis_url=redis_server.url, cluster=cluster), store)
    assert scheduler.lead()
    monkeypatch.setattr(store_module, "WRITE_CHUNK", 1)
    script = store._write_assignments

    def then_deposed(**kwargs: Any) -> Any:
        written = script(**kwargs)
        store._client.delete(store._keys.leader)  # the lease lapses right after the first chunk
        return written

    monkeypatch.setattr(store, "_write_assignments", then_deposed)
    tasks = [TaskRecord(id=f"web.{slot}", service="web", slot=slot) for slot in (1, 2, 3)]
    events = [[(EventKind.TASK_PENDING, f"{task.id} pending", {"task": task.id})] for task in tasks]
    assert store.write_assignments([(task.id, task, None) for task in tasks], leader_token=scheduler.lease.token,
                                   events=events) == 1
    assert [task.id for task in store.tasks()] == ["web.1"]
    assert [event["message"] for event in store.events()][-1:] == ["web.1 pending"]  # each with its write
    assert not [event for event in store.events() if event["message"] in ("web.2 pending", "web.3 pending")]
