"""The list views' cache: the same bytes as a JSONResponse, rebuilt exactly when the revision moves."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from api.snapshot import ViewCache, render


class FakeStore:
    def __init__(self) -> None:
        self.token: str | None = "r1"

    def revision(self) -> str | None:
        return self.token


def test_renders_as_json_response():
    content = [{"id": "web.1", "name": "café", "ports": [], "n": None}]
    assert render(content) == JSONResponse(content).body


def test_cached_until_the_revision_changes_and_never_without_one():
    store: Any = FakeStore()
    cache = ViewCache()
    builds: list[int] = []

    def build() -> list[int]:
        builds.append(1)
        return [len(builds)]

    assert cache.get(store, "k", build) == b"[1]"
    assert cache.get(store, "k", build) == b"[1]"  # same revision: served again
    assert cache.get(store, "other", build) == b"[2]"  # another view builds its own
    store.token = "r2"
    assert cache.get(store, "k", build) == b"[3]"  # a write anywhere: rebuilt
    store.token = None
    assert cache.get(store, "k", build) == b"[4]"
    assert cache.get(store, "k", build) == b"[5]"  # no token: never cached


def test_fragments_are_rendered_once_per_stored_body_and_pruned():
    cache = ViewCache()
    calls: list[str] = []

    def view(name: str) -> dict[str, str]:
        calls.append(name)
        return {"id": name}

    assert cache.fragment('{"a"}', lambda: view("a")) == b'{"id":"a"}'
    assert cache.fragment('{"a"}', lambda: view("a")) == b'{"id":"a"}'
    cache.fragment('{"b"}', lambda: view("b"))
    assert calls == ["a", "b"]
    cache.prune(['{"b"}'])
    assert list(cache.fragments) == ['{"b"}']
