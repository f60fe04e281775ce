"""Serialized views of the list endpoints, cached while nothing they show has changed.

Every write of services or tasks replaces the store's revision token (shared/storage: in the same
Lua call or transaction as the write). A list endpoint reads the token first, then the records; its
JSON is kept under that token and served again, byte for byte, for as long as the token stands. A
write meanwhile only makes the next request rebuild, so a response is never older than the writes
that came before it: no time-based staleness. At 10,000 tasks a build takes tens of milliseconds
(read, parse, view, serialize); a hit costs one GET of the token. Builds of one view run one at a
time, so a burst of requests after a change waits for one build instead of making one each.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from typing import Any

from starlette.responses import Response

from shared.storage import ApiStore

MAX_VIEWS = 64  # distinct (endpoint, query) views kept per store


class ViewCache:
    def __init__(self) -> None:
        self.views: OrderedDict[Hashable, tuple[str, bytes]] = OrderedDict()
        self.lock = threading.Lock()
        self.building: dict[Hashable, threading.Lock] = {}
        # A task's rendered view keyed by its stored JSON: a rebuild after one write renders one task.
        self.fragments: dict[str, bytes] = {}

    def fragment(self, body: str, view: Callable[[], Any]) -> bytes:
        """The rendered `view()` of the record stored as `body` (rendered once per body)."""
        rendered = self.fragments.get(body)
        if rendered is None:
            rendered = self.fragments[body] = render(view())
        return rendered

    def prune(self, bodies: Collection[str]) -> None:
        """Forget the fragments of records no longer stored (call with every stored body)."""
        if len(self.fragments) > len(bodies):
            with self.lock:
                self.fragments = {body: self.fragments[body] for body in bodies if body in self.fragments}

    def get_raw(self, store: ApiStore, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """As `get`, for a build that renders its JSON itself."""
        return self._get(store, key, build)

    def get(self, store: ApiStore, key: Hashable, build: Callable[[], Any]) -> bytes:
        """The JSON of `build()` for `key`, rebuilt only when the store's revision moved on."""
        return self._get(store, key, lambda: render(build()))

    def _get(self, store: ApiStore, key: Hashable, build: Callable[[], bytes]) -> bytes:
        revision = store.revision()  # before the records `build` reads: a later write forces a rebuild
        if revision is None:
            return build()  # no token (a fresh or flushed Redis): nothing to key a cache on
        hit = self._lookup(key, revision)
        if hit is not None:
            return hit
        with self.lock:
            gate = self.building.setdefault(key, threading.Lock())
        with gate:
            hit = self._lookup(key, revision)  # built meanwhile by the request this one waited for
            if hit is not None:
                return hit
            body = build()
            with self.lock:
                self.views[key] = (revision, body)
                self.views.move_to_end(key)
                while len(self.views) > MAX_VIEWS:
                    self.views.popitem(last=False)
            return body

    def _lookup(self, key: Hashable, revision: str) -> bytes | None:
        with self.lock:
            cached = self.views.get(key)
        return cached[1] if cached is not None and cached[0] == revision else None


def render(content: Any) -> bytes:
    """As Starlette's JSONResponse renders."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


_caches: weakref.WeakKeyDictionary[ApiStore, ViewCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def views_of(store: ApiStore) -> ViewCache:
    with _caches_lock:
        cache = _caches.get(store)
        if cache is None:
            cache = _caches[store] = ViewCache()
        return cache


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")
