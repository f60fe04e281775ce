"""Reading stored records: each is parsed on its own (one that cannot be read is reported, never
raised), and a whole-hash read parses only the records whose JSON changed."""

from __future__ import annotations

import json
from typing import Any

from shared.config import ServiceSpec
from shared.parsed import ParsedRecords
from shared.records import ERROR_LIMIT, ServiceRecord, TaskRecord, describe
from shared.storage import Store


class FakeRedis:
    """Only what `Store.services` reads."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def register_script(self, script: str) -> Any:
        return None

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))


def service(name: str, replicas: int = 1) -> str:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "img", "replicas": replicas})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0).model_dump_json()


def task(task_id: str = "web.1", **fields: Any) -> str:
    service_name, _, slot = task_id.rpartition(".")
    return TaskRecord(id=task_id, service=service_name, slot=int(slot), **fields).model_dump_json()


def tasks_parsed() -> ParsedRecords[TaskRecord]:
    return ParsedRecords(TaskRecord, lambda record: record.id)


def test_services_are_parsed_once_per_stored_json():
    client = FakeRedis()
    store = Store(client, "c")  # type: ignore[arg-type]
    stored = client.hashes[store._keys.services] = {"web": service("web"), "api": service("api")}
    first = store.services()
    stored["web"] = service("web", replicas=3)
    second = store.services()
    assert second["api"] is first["api"]  # unchanged: not parsed again
    assert second["web"] is not first["web"] and second["web"].spec.replicas == 3
    del stored["api"]
    assert list(store.services()) == ["web"]


def test_the_cache_keeps_only_the_last_read():
    cache = tasks_parsed()
    a, b = task("web.1"), task("web.2")
    first = cache.parse({"web.1": a, "web.2": b}).good
    assert cache.parse({"web.2": b}).good["web.2"] is first["web.2"]
    again = cache.parse({"web.1": a}).good["web.1"]
    assert again == first["web.1"] and again is not first["web.1"]  # forgotten when it was not stored


def test_records_that_cannot_be_read_are_reported_one_by_one_beside_the_good_ones():
    shaped = json.loads(task("web.3"))
    shaped["memory_bytes"] = 10**400
    entries = [
        ("web.1", task("web.1")),
        ("web.2", "\ufffd\x00 not json"),
        ("web.3", json.dumps(shaped)),  # a value out of bounds
        ("web.4", "[1, 2]"),  # JSON of the wrong shape
        ("web.5", task("web.6")),  # stored under a key that is not its own
        ("web.7", json.dumps({**json.loads(task("web.7")), "slot": 8})),  # an id that is not its slot
        ("web.9", task("web.9")),
    ]
    read = tasks_parsed().parse(dict(entries))
    assert list(read.good) == ["web.1", "web.9"]
    assert sorted(read.unreadable) == ["web.2", "web.3", "web.4", "web.5", "web.7"]
    assert read.unreadable["web.2"].error.startswith("invalid JSON")
    assert read.unreadable["web.3"].error == f"memory_bytes: must be at most {2**60}"
    assert read.unreadable["web.4"].error == "must be a mapping"
    assert read.unreadable["web.5"].error == "stored under 'web.5' but is that of 'web.6'"
    assert "is not slot 8" in read.unreadable["web.7"].error
    assert read.unreadable["web.2"].reason == f"record cannot be read: {read.unreadable['web.2'].error}"
    assert read.bodies == dict(entries)
    assert read.entry("web.1") is read.good["web.1"] and read.entry("web.2") is read.unreadable["web.2"]
    assert read.entry("web.8") is None


def test_infinities_and_nan_are_refused():
    for value in ("NaN", "Infinity", "-Infinity"):
        body = task("web.1")[:-1] + f',"updated_at":{value}}}'
        assert list(tasks_parsed().parse({"web.1": body}).unreadable) == ["web.1"]


def test_a_reason_is_one_bounded_line():
    text = describe(ValueError("line one\nline two " + "x" * 2000))
    assert "\n" not in text and len(text) == ERROR_LIMIT and text.startswith("ValueError: line one line two")
