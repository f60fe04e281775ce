"""The store's parsed-record cache: a whole-hash read parses only the records whose JSON changed."""

from __future__ import annotations

from typing import Any

from shared.config import ServiceSpec
from shared.records import ServiceRecord, TaskRecord
from shared.store import ParsedRecords, Store


class FakeRedis:
    """Only what `Store.services` and `Store.tasks` read."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def register_script(self, script: str) -> Any:
        return None

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    def hvals(self, key: str) -> list[str]:
        return list(self.hashes.get(key, {}).values())


def service(name: str, replicas: int = 1) -> str:
    spec = ServiceSpec.model_validate({"service_name": name, "image": "img", "replicas": replicas})
    return ServiceRecord(spec=spec, created_at=0.0, updated_at=0.0).model_dump_json()


def test_services_are_parsed_once_per_stored_json():
    client = FakeRedis()
    store = Store(client, "c")  # type: ignore[arg-type]
    stored = client.hashes[store.keys.services] = {"web": service("web"), "api": service("api")}
    first = store.services()
    stored["web"] = service("web", replicas=3)
    second = store.services()
    assert second["api"] is first["api"]  # unchanged: not parsed again
    assert second["web"] is not first["web"] and second["web"].spec.replicas == 3
    del stored["api"]
    assert list(store.services()) == ["web"]


def test_tasks_are_parsed_once_per_stored_json():
    client = FakeRedis()
    store = Store(client, "c")  # type: ignore[arg-type]
    body = TaskRecord(id="web.1", service="web", slot=1).model_dump_json()
    client.hashes[store.keys.tasks] = {"web.1": body}
    (entry,) = store.task_entries()
    assert entry[0] == body
    assert store.tasks()[0] is entry[1]


def test_the_cache_keeps_only_the_last_read():
    cache = ParsedRecords(TaskRecord)
    a, b = (TaskRecord(id=f"web.{slot}", service="web", slot=slot).model_dump_json() for slot in (1, 2))
    first_a, first_b = cache.parse([a, b])
    assert cache.parse([b])[0] is first_b
    again = cache.parse([a])[0]
    assert again == first_a and again is not first_a  # forgotten when it was not stored
