"""The cluster DNS's answers and the endpoints they share with the API (shared/discovery.py, pure)."""

from __future__ import annotations

import random
from typing import Any

from api.views import endpoints_view
from shared.config import ServiceSpec
from shared.discovery import Directory, service_endpoints
from shared.records import Health, PreviousContainer, ServiceRecord, TaskRecord, TaskState

CHECK = {"http_path": "/health", "port": 80, "interval": 1}
HOST = "10.99.0.1"  # an address no replica has: the host, or a container outside the cluster's networks


def service(name: str, network: str | None = "backend", **fields: Any) -> ServiceRecord:
    spec = ServiceSpec.model_validate(
        {"service_name": name, "image": "img", "replicas": 3, **({"network": network} if network else {}), **fields}
    )
    return ServiceRecord(spec=spec, created_at=1.0, updated_at=1.0)


def task(record: ServiceRecord, slot: int, address: str | None, state: TaskState = TaskState.RUNNING,
         health: Health = Health.NONE, **fields: Any) -> TaskRecord:
    return TaskRecord(
        id=f"{record.name}.{slot}", service=record.name, slot=slot, state=state, health=health, node="n1",
        template=fields.pop("template", record.template_hash()), address=address, **fields,
    )


def answer(directory: Directory, name: str, asker: str | None = HOST, seed: int = 0) -> list[str] | None:
    return directory.answer(name, asker, random.Random(seed))


def as_set(addresses: list[str] | None) -> set[str] | None:
    return None if addresses is None else set(addresses)


WEB = service("web")
CLIENT = service("client")
OTHER = service("other", network="frontend")
TASKS = [
    task(WEB, 1, "10.1.0.2"),
    task(WEB, 2, "10.1.1.2"),
    task(CLIENT, 1, "10.1.0.3"),
    task(OTHER, 1, "10.1.0.4"),
]
DIRECTORY = Directory([WEB, CLIENT, OTHER], TASKS)


def test_a_replica_gets_its_networks_services_by_short_and_qualified_name():
    for name in ("web", "web.backend", "WEB.Backend.", "web."):
        assert as_set(answer(DIRECTORY, name, "10.1.0.3")) == {"10.1.0.2", "10.1.1.2"}, name


def test_a_replica_gets_nothing_of_another_networks_services():
    assert answer(DIRECTORY, "other", "10.1.0.3") is None
    assert answer(DIRECTORY, "other.frontend", "10.1.0.3") is None
    assert answer(DIRECTORY, "web", "10.1.0.4") is None
    assert answer(DIRECTORY, "web.backend", "10.1.0.4") is None
    assert answer(DIRECTORY, "other", "10.1.0.4") == ["10.1.0.4"]


def test_an_unknown_asker_gets_only_qualified_names():
    for asker in (HOST, None):
        assert answer(DIRECTORY, "web", asker) is None
        assert as_set(answer(DIRECTORY, "web.backend", asker)) == {"10.1.0.2", "10.1.1.2"}
        assert answer(DIRECTORY, "other.frontend", asker) == ["10.1.0.4"]


def test_names_that_are_not_a_service_on_its_network_are_not_ours():
    for name in ("nope", "nope.backend", "web.frontend", "web.backend.example.com", "backend", "", ".",
                 "web.backend" + "x" * 300, "wéb.backend", "web\\.backend"):
        assert answer(DIRECTORY, name) is None, name
        assert answer(DIRECTORY, name, "10.1.0.3") is None, name


def test_only_ready_replicas_with_an_address_are_answered():
    checked = service("api", health_check=CHECK)
    tasks = [
        task(checked, 1, "10.1.0.5", health=Health.HEALTHY),
        task(checked, 2, "10.1.0.6", health=Health.STARTING),
        task(checked, 3, "10.1.0.7", health=Health.UNHEALTHY),
        task(checked, 4, "10.1.0.8", state=TaskState.STOPPED, health=Health.HEALTHY),
        task(checked, 5, None, health=Health.HEALTHY),
    ]
    assert answer(Directory([checked], tasks), "api.backend") == ["10.1.0.5"]


def test_a_service_with_no_ready_replica_is_answered_with_no_address():
    idle = service("idle")
    directory = Directory([idle], [task(idle, 1, "10.1.0.9", state=TaskState.STARTING)])
    assert answer(directory, "idle.backend") == []
    assert answer(directory, "idle", "10.1.0.9") == []  # a starting replica knows its own network already


def test_services_without_a_network_are_not_discoverable():
    plain = service("plain", network=None)
    directory = Directory([plain, WEB], [task(plain, 1, "172.17.0.2"), *TASKS])
    assert answer(directory, "plain") is None and answer(directory, "plain.bridge") is None
    # Its replicas are no askers of a network: they get only qualified names, as the host does.
    assert answer(directory, "web", "172.17.0.2") is None
    assert answer(directory, "web.backend", "172.17.0.2") is not None


def test_the_order_varies_from_query_to_query():
    many = service("many")
    addresses = [f"10.1.2.{i}" for i in range(1, 11)]
    directory = Directory([many], [task(many, i, address) for i, address in enumerate(addresses, 1)])
    orders = {tuple(answer(directory, "many.backend", seed=seed) or []) for seed in range(20)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(addresses) for order in orders)


def test_stopped_replicas_are_no_askers_and_previous_containers_are():
    web = service("web")
    old = service("old", network="legacy")
    tasks = [
        task(web, 1, "10.1.0.2"),
        # A failed replica of `old` kept an address that a container of another network may have now.
        task(old, 1, "10.1.0.20", state=TaskState.FAILED),
        # A slot replaced start-first: the previous container still runs and asks.
        task(old, 2, None, state=TaskState.ASSIGNED, previous=PreviousContainer(node="n2", gen=1, address="10.1.0.21")),
    ]
    directory = Directory([web, old], tasks)
    assert answer(directory, "web", "10.1.0.20") is None
    assert answer(directory, "web.backend", "10.1.0.20") == ["10.1.0.2"]
    assert answer(directory, "old", "10.1.0.21") == []
    assert answer(directory, "web.backend", "10.1.0.21") is None


def test_mid_update_replicas_are_answered_on_the_network_of_the_spec_they_run():
    before = service("web", network="blue")
    after = before.with_spec(before.spec.model_copy(update={"network": "green"}), 2.0)
    tasks = [task(before, 1, "10.1.0.2"), task(after, 2, "10.1.0.3", template=after.template_hash())]
    directory = Directory([after], tasks)
    assert answer(directory, "web.blue") == ["10.1.0.2"]
    assert answer(directory, "web.green") == ["10.1.0.3"]
    assert answer(directory, "web", "10.1.0.2") == ["10.1.0.2"]


def test_endpoints_and_answers_are_the_same_replicas():
    checked = service("api", health_check=CHECK)
    tasks = [
        task(checked, 1, "10.1.0.5", health=Health.HEALTHY),
        task(checked, 2, "10.1.0.6", health=Health.STARTING),
        task(checked, 3, "10.1.0.7", health=Health.HEALTHY),
        *TASKS,
    ]
    endpoints = endpoints_view(checked, tasks, [])
    assert [endpoint["task"] for endpoint in endpoints] == ["api.1", "api.3"]
    assert [endpoint.task.id for endpoint in service_endpoints(checked, tasks)] == ["api.1", "api.3"]
    served = as_set(answer(Directory([checked, WEB, CLIENT, OTHER], tasks), "api.backend"))
    assert served == {endpoint["address"] for endpoint in endpoints if endpoint["network"] == "backend"}


def test_network_names_with_dots_and_capitals_are_matched_as_dns_does():
    dotted = service("db", network="Team.Store_1")
    directory = Directory([dotted], [task(dotted, 1, "10.1.3.2")])
    assert answer(directory, "db.team.store_1") == ["10.1.3.2"]
    assert answer(directory, "DB.TEAM.STORE_1.") == ["10.1.3.2"]
    assert answer(directory, "db.team") is None and answer(directory, "db.store_1") is None
    assert answer(directory, "db", "10.1.3.2") == ["10.1.3.2"]


def test_an_address_that_is_not_ipv4_is_not_answered():
    odd = service("odd")
    tasks = [task(odd, 1, "10.1.4.2"), task(odd, 2, "fd00::2"), task(odd, 3, "not an address")]
    assert answer(Directory([odd], tasks), "odd.backend") == ["10.1.4.2"]
