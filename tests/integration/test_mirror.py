"""The API's copy of services, faults and tasks (api/mirror.py) against a real redis-server: after every
kind of write, by every writer, its views equal those of a copy read afresh; it re-reads only what
the change log names; and it falls back to reading everything when the log cannot say."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api.mirror import Mirror
from shared.config import validate_config, validate_service
from shared.errors import Conflict, NotFound
from shared.records import ServiceFault, TaskRecord, TaskState, record_digest
from shared.storage import Store
from shared.task_parts import status_of
from tests.support.tasks import seed

VIEWS: list[tuple[Any, Any]] = [
    (("tasks", None, None), lambda mirror: mirror.tasks_json(None, None)),
    (("tasks", "web", None), lambda mirror: mirror.tasks_json("web", None)),
    (("tasks", None, "n1"), lambda mirror: mirror.tasks_json(None, "n1")),
    (("tasks", "db", "n2"), lambda mirror: mirror.tasks_json("db", "n2")),
    (("services", False), lambda mirror: mirror.services_json(False)),
    (("services", True), lambda mirror: mirror.services_json(True)),
]


def views(mirror: Mirror, store: Store) -> list[bytes]:
    return [mirror.view(store, key, view) for key, view in VIEWS]


def spec(name: str, replicas: int = 2, **more: Any) -> Any:
    return validate_service({"service_name": name, "image": "nginx:alpine", "replicas": replicas, **more})


def task(service: str, slot: int, **fields: Any) -> TaskRecord:
    return TaskRecord(id=f"{service}.{slot}", service=service, slot=slot, **fields)


def commands(store: Store) -> dict[str, int]:
    stats = store._client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


class Writes:
    """Each kind of write the cluster's processes make, on random services and tasks."""

    def __init__(self, store: Store, rng: random.Random) -> None:
        self.store, self.rng = store, rng

    def any(self) -> str:
        kind = self.rng.choice([name for name in dir(self) if name.startswith("w_")])
        try:
            getattr(self, kind)()
        except (Conflict, NotFound):  # refused (a service being deleted, say): nothing written
            return f"{kind} (refused)"
        return kind

    def _service(self) -> str:
        return self.rng.choice(["web", "db", "cache"])

    def _task(self) -> TaskRecord | None:
        tasks = self.store.tasks()
        return self.rng.choice(tasks) if tasks else None

    def w_create(self) -> None:
        name = f"s{self.rng.randrange(1000)}"
        if name not in self.store.read_services().bodies:
            self.store.create_service(spec(name), time.time())

    def w_update(self) -> None:
        env = [f"K={self.rng.randrange(100)}"]
        self.store.update_service(spec(self._service(), self.rng.randint(0, 4), env=env), time.time(), create=True)

    def w_apply(self) -> None:
        config = validate_config({"services": [{"service_name": "web", "image": "nginx:alpine", "replicas": 3}]})
        self.store.apply(config, time.time(), prune=self.rng.random() < 0.2)

    def w_delete(self) -> None:
        names = list(self.store.read_services().bodies)
        if names:
            self.store.delete_service(self.rng.choice(names), time.time())

    def w_forget(self) -> None:
        records = list(self.store.services().values())
        if records:
            self.store.forget_service(self.rng.choice(records))

    def w_scheduler_changes_a_service(self) -> None:
        records = list(self.store.services().values())
        if records:
            record = self.rng.choice(records)
            self.store.write_service(record, record.model_copy(update={"updated_at": time.time()}))

    def w_fault(self) -> None:
        services = self.store.read_services()
        name = self._service()
        if name in services.bodies and self.rng.random() < 0.6:
            fault = ServiceFault(reason=f"cannot be scheduled {self.rng.random()}", since=1.0,
                                 record=record_digest(services.bodies[name]))
            self.store.write_faults({name: fault}, [])
        else:
            self.store.write_faults({}, [name])

    def w_assign(self) -> None:
        service, slot = self._service(), self.rng.randint(1, 4)
        node = self.rng.choice(["n1", "n2"])
        state = self.rng.choice([TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING])
        seed(self.store, [task(service, slot, node=None if state is TaskState.PENDING else node, state=state,
                               gen=self.rng.randint(1, 3), container_id="c" if state is TaskState.RUNNING else None)])

    def w_drop(self) -> None:
        chosen = self._task()
        if chosen is not None:
            self.store.write_assignments([(chosen.id, None, chosen)])

    def w_status(self) -> None:
        chosen = self._task()
        if chosen is not None and chosen.node is not None:
            reported = chosen.model_copy(update={"state": TaskState.RUNNING, "container_id": f"c{self.rng.random()}"})
            assert self.store.write_statuses(chosen.node, [status_of(reported)]) == [True]

    def w_stop(self) -> None:
        running = [t for t in self.store.tasks() if t.state is TaskState.RUNNING and t.node is not None]
        if running:
            self.store.request_stop(self.rng.choice(running).id, time.time())


@pytest.mark.parametrize("run", range(3))
def test_after_every_kind_of_write_the_copy_shows_what_a_fresh_read_shows(store: Store, run: int) -> None:
    rng = random.Random(run)
    mirror = Mirror()
    writes = Writes(store, rng)
    for _ in range(4):
        writes.w_assign()
    views(mirror, store)
    done = []
    for step in range(80):
        done.append(writes.any())
        assert views(mirror, store) == views(Mirror(), store), f"after {done}"
        if step % 10 == 0:
            views(mirror, store)  # served again, unchanged
    assert set(done) >= {name for name in dir(Writes) if name.startswith("w_")}, "a kind of write was not tried"


def test_a_copy_rereads_only_what_the_log_names(store: Store) -> None:
    store.create_service(spec("web"), time.time())
    seed(store, [task("web", slot, node="n1", state=TaskState.RUNNING, container_id=f"c{slot}") for slot in (1, 2)])
    mirror = Mirror()
    views(mirror, store)
    before = commands(store)
    views(mirror, store)  # nothing written: served again after one read of the log
    after = commands(store)
    assert after.get("hgetall") == before.get("hgetall") and after.get("hmget") == before.get("hmget")
    assert after["xrange"] - before["xrange"] == len(VIEWS)

    chosen = store.task("web.1")
    assert store.write_statuses("n1", [status_of(chosen.model_copy(update={"container_id": "c5"}))]) == [True]
    before = commands(store)
    shown = views(mirror, store)
    after = commands(store)
    assert after.get("hgetall") == before.get("hgetall"), "a write of one task made the copy read everything"
    assert after["hmget"] > before.get("hmget", 0)
    assert b'"container_id":"c5"' in shown[0] and shown == views(Mirror(), store)


@pytest.mark.parametrize("lost", ["trimmed", "all", "flushed"])
def test_a_copy_reads_everything_when_the_log_cannot_say_what_changed(store: Store, lost: str) -> None:
    store.create_service(spec("web"), time.time())
    seed(store, [task("web", 1, node="n1", state=TaskState.RUNNING, container_id="c1")])
    mirror = Mirror()
    views(mirror, store)
    # Written past the log, as a process of another kind or a person with redis-cli would.
    store._client.hset(store._keys.services, "broken", "{not a record")
    store._client.hset(store._keys.statuses, "web.1", status_of(store.task("web.1").model_copy(
        update={"container_id": "c7"})).model_dump_json())
    if lost == "trimmed":
        store._client.xtrim(store._keys.changelog, maxlen=0)
        store.create_service(spec("db"), time.time())  # the copy's revision is no longer in the log
    elif lost == "all":
        store.touch()
    else:
        store._client.delete(store._keys.changelog)
    before = commands(store)
    shown = views(mirror, store)
    assert commands(store)["hgetall"] > before.get("hgetall", 0)
    assert b'"container_id":"c7"' in shown[0] and b'"service_name":"broken"' in shown[4]
    assert shown == views(Mirror(), store)
    if lost == "flushed":  # no log: nothing is kept, so a write past it still shows
        store._client.hset(store._keys.services, "late", "[1]")
        assert b'"service_name":"late"' in views(mirror, store)[4]


@pytest.fixture
def writer(store: Store) -> Iterator[tuple[threading.Event, list[int]]]:
    """A thread that creates services s0, s1, ... one after another; `acknowledged[0]` counts those written."""
    stop, acknowledged = threading.Event(), [0]

    def run() -> None:
        try:
            while not stop.is_set() and acknowledged[0] < 300:
                store.create_service(spec(f"s{acknowledged[0]}", 1), time.time())
                acknowledged[0] += 1
        finally:
            stop.set()  # the readers stop with it

    thread = threading.Thread(target=run)
    thread.start()
    yield stop, acknowledged
    stop.set()
    thread.join()


def test_a_response_shows_every_write_acknowledged_before_the_request(
    store: Store, writer: tuple[threading.Event, list[int]]
) -> None:
    stop, acknowledged = writer
    mirror = Mirror()
    failures: list[str] = []

    def read() -> None:
        while not stop.is_set():
            known = acknowledged[0]
            body = mirror.view(store, ("services", False), lambda copy: copy.services_json(False))
            missing = [n for n in range(known) if f'"service_name":"s{n}"'.encode() not in body]
            if missing:
                failures.append(f"{len(missing)} acknowledged services missing, first s{missing[0]}")
                stop.set()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    assert not failures, failures[0]
    assert acknowledged[0] == 300



def test_the_revision_is_the_last_entrys_id_and_none_without_a_log(store: Store) -> None:
    assert store.revision() is None
    store.create_service(spec("web"), time.time())
    [(first, _)] = store._client.xrange(store._keys.changelog)
    assert store.revision() == first
    seed(store, [task("web", 1, node="n1", state=TaskState.RUNNING, container_id="c1")])
    assert store.revision() == store._client.xrevrange(store._keys.changelog, count=1)[0][0] != first
