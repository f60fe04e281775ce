"""No lost updates, no half-applied configs: concurrent writes against a real API process (uvicorn),
each round started together on a barrier. Every service write decides on what it read inside its
transaction, so each lands whole, one after the other."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.storage import Store
from tests.support.procs import TEST_IMAGE, Processes, free_port


@pytest.fixture
def http(procs: Processes) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=procs.api(free_port()), timeout=10) as client:
        yield client


def together(*requests: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the requests at the same moment (each on its own thread) and return their responses."""
    barrier = threading.Barrier(len(requests))

    def send(request: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def spec(name: str, command: list[str], replicas: int = 1) -> dict[str, Any]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": replicas, "command": command}


def test_a_put_and_a_scale_at_once_both_land(http: httpx.Client, store: Store):
    """Scale used to rebuild the spec from a read taken outside its compare-and-set: the stored spec
    kept the old command in 24 of 30 rounds. Now both writes land, one after the other: the PUT's
    command always stays, and the replica count is that of whichever wrote last (the PUT is a
    full replacement, so when it lands second its own count stands)."""
    assert http.post("/v1/services", json=spec("web", ["sleep", "0"])).status_code == 201
    for round_ in range(30):
        before = store.service("web")
        command = ["sleep", str(round_ + 1)]
        scale_to = before.spec.replicas % 4 + 1  # never the count the PUT keeps
        put, scale = together(
            lambda: http.put("/v1/services/web", json=spec("web", command, before.spec.replicas)),  # noqa: B023
            lambda: http.post("/v1/services/web/scale", json={"replicas": scale_to}),  # noqa: B023
        )
        assert (put.status_code, scale.status_code) == (200, 200), (put.text, scale.text)
        stored = store.service("web")
        assert stored.spec.command == command
        versions = {put.json()["version"]: "put", scale.json()["version"]: "scale"}
        assert sorted(versions) == [before.version + 1, before.version + 2] == [stored.version - 1, stored.version]
        last = versions[stored.version]
        assert stored.spec.replicas == (scale_to if last == "scale" else before.spec.replicas)
        assert scale.json()["command"] == (command if last == "scale" else before.spec.command)
    assert store.service("web").version == 1 + 2 * 30


def test_two_applies_at_once_take_effect_whole(http: httpx.Client, store: Store):
    """Two concurrent applies over 8 services left a mix of both in 14 of 20 rounds."""
    names = [f"s{index}" for index in range(8)]
    for round_ in range(20):
        configs = {
            side: {"services": [spec(name, ["sleep", f"{round_}{side}"], replicas) for name in order]}
            for side, order, replicas in (("a", names, 1), ("b", names[::-1], 2))
        }
        responses = together(*(lambda c=config: http.post("/v1/apply", json=c) for config in configs.values()))
        assert [response.status_code for response in responses] == [200, 200], [r.text for r in responses]
        stored = store.services()
        assert sorted(stored) == names
        states = {(record.spec.command[1], record.spec.replicas) for record in stored.values()}
        assert states in ({(f"{round_}a", 1)}, {(f"{round_}b", 2)}), states
