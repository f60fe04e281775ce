"""The API's copy of the cluster's services, faults and tasks, kept current through the change log
(shared/storage/changelog.py), and the list views rendered from it.

A list request reads the log from the copy's revision on: one round trip. When nothing was written
since, the view rendered at that revision is served again, byte for byte. When something was, the
copy re-reads only the services and tasks the log names (one transaction), drops only their rendered
parts (a task's view; a service's, when the service, its fault or one of its tasks changed), and the
view is joined again from its parts. When the log cannot say what changed (the copy is too far
behind, the log was trimmed, lost in a failover or flushed, or a write said `all`), the copy re-reads
everything, as at its first request; parts of records that did not change are kept.

The log is read after the request arrived, so a response shows every write acknowledged before it,
never older, and nothing is kept by time. One request at a time brings the copy up to date: a burst
of requests after a write waits for one update instead of each making its own.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from starlette.responses import Response

from api.views import listed_service_view, task_view, without_env_values
from shared.parsed import Records
from shared.records import ServiceFault, ServiceRecord, TaskRecord
from shared.storage import ApiStore
from shared.storage.changelog import Changes
from shared.storage.reads import Snapshot

MAX_VIEWS = 64  # distinct (endpoint, query) views kept, all of the copy's revision


class Mirror:
    """One store's copy, and the list views rendered from it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revision: str | None = None  # None: not read yet, or no log to follow (never cached)
        self._services: Records[ServiceRecord] = Records({}, {}, {})
        self._faults: dict[str, ServiceFault] = {}
        self._tasks: dict[str, TaskRecord] = {}
        self._by_service: dict[str, dict[str, TaskRecord]] = {}
        self._task_parts: dict[str, bytes] = {}  # a task's rendered view, by id
        self._service_parts: dict[tuple[str, bool], bytes] = {}  # a service's, by name and redaction
        # Every task by (service, slot), with its rendered view at the same index; None: sort again.
        self._order: list[TaskRecord] | None = None
        self._ordered_parts: list[bytes] = []
        self._index: dict[str, int] = {}  # task id -> its index in the order
        self._stale: set[int] = set()  # indexes whose part is to render again
        self._views: OrderedDict[Hashable, bytes] = OrderedDict()  # rendered at `revision`

    def view(self, store: ApiStore, key: Hashable, render: Callable[[Mirror], bytes]) -> bytes:
        """The JSON of `render(self)` for `key`, with the copy up to date with every acknowledged write."""
        seen = self.revision
        if seen is not None:
            changes = store.changes_since(seen)  # outside the lock: what most requests need
            if changes is not None and changes.none:
                with self.lock:
                    body = self._views.get(key) if self.revision == seen else None
                if body is not None:
                    return body
        with self.lock:
            self._update(store)
            body = self._views.get(key)
            if body is None:
                body = render(self)
                if self.revision is not None:
                    self._views[key] = body
                    while len(self._views) > MAX_VIEWS:
                        self._views.popitem(last=False)
            return body

    # -- the list views: call from `render` ----------------------------------------------------

    def tasks_json(self, service: str | None, node: str | None) -> bytes:
        """`GET /v1/tasks`: every task by service and slot, or those of a service and/or on a node."""
        order, parts = self._ordered()
        if service is None and node is None:
            return joined(parts)
        return joined(
            part for task, part in zip(order, parts, strict=True)
            if (service is None or task.service == service) and (node is None or task.node == node)
        )

    def services_json(self, redacted: bool) -> bytes:
        """`GET /v1/services`: every service by name; `redacted`, env values hidden (the read token's)."""
        return joined(self._service_part(name, redacted) for name in sorted(self._services.bodies))

    def _ordered(self) -> tuple[list[TaskRecord], list[bytes]]:
        if self._order is None:
            self._order = sorted(self._tasks.values(), key=lambda task: (task.service, task.slot))
            self._ordered_parts = [self._task_part(task) for task in self._order]
            self._index = {task.id: at for at, task in enumerate(self._order)}
        else:
            for at in self._stale:
                self._ordered_parts[at] = self._task_part(self._order[at])
        self._stale.clear()
        return self._order, self._ordered_parts

    def _task_part(self, task: TaskRecord) -> bytes:
        part = self._task_parts.get(task.id)
        if part is None:
            part = self._task_parts[task.id] = render(task_view(task))
        return part

    def _service_part(self, name: str, redacted: bool) -> bytes:
        part = self._service_parts.get((name, redacted))
        if part is None:
            tasks = list(self._by_service.get(name, {}).values())
            view = listed_service_view(name, self._services, tasks, self._faults.get(name))
            part = self._service_parts[(name, redacted)] = render(without_env_values(view) if redacted else view)
        return part

    # -- bringing the copy up to date --------------------------------------------------------------

    def _update(self, store: ApiStore) -> None:
        changes = store.changes_since(self.revision) if self.revision is not None else None
        if changes is None or not changes.complete:
            self._load(store.snapshot())
        elif not changes.none:
            self._patch(changes, store.snapshot(tasks=changes.tasks, services=changes.services))

    def _load(self, snapshot: Snapshot) -> None:
        """Everything read afresh; the parts of records read as the same objects are kept (shared/parsed.py
        parses an unchanged record to the object it gave before)."""
        tasks, held = snapshot.tasks.good, self._tasks
        self._task_parts = {
            task_id: part for task_id, part in self._task_parts.items()
            if task_id in tasks and held.get(task_id) is tasks[task_id]
        }
        self._tasks = dict(tasks)
        self._by_service = {}
        for task in tasks.values():
            self._by_service.setdefault(task.service, {})[task.id] = task
        self._order = None
        self._services = snapshot.services
        self._faults = snapshot.faults
        self._service_parts = {}
        self._views.clear()
        self.revision = snapshot.revision

    def _patch(self, changes: Changes, snapshot: Snapshot) -> None:
        """The named tasks and services as read again (absent: gone); their parts dropped."""
        dirty = set(changes.services)
        for task_id in changes.tasks:
            old, new = self._tasks.pop(task_id, None), snapshot.tasks.good.get(task_id)
            self._task_parts.pop(task_id, None)
            if old is not None:
                dirty.add(old.service)
                self._by_service.get(old.service, {}).pop(task_id, None)
            if new is not None:
                dirty.add(new.service)
                self._tasks[task_id] = new
                self._by_service.setdefault(new.service, {})[task_id] = new
            if old is None or new is None or (old.service, old.slot) != (new.service, new.slot):
                self._order = None
            elif self._order is not None:  # in the same place: only its part changes
                at = self._index[task_id]
                self._order[at] = new
                self._stale.add(at)
        if self._order is None:
            self._stale.clear()
        self._replace_services(changes.services, snapshot)
        self._service_parts = {key: part for key, part in self._service_parts.items() if key[0] not in dirty}
        self._views.clear()
        self.revision = changes.revision

    def _replace_services(self, names: Iterable[str], snapshot: Snapshot) -> None:
        held = Records(dict(self._services.good), dict(self._services.unreadable), dict(self._services.bodies))
        read = snapshot.services
        for name in names:
            _replace(held.good, read.good, name)
            _replace(held.unreadable, read.unreadable, name)
            _replace(held.bodies, read.bodies, name)
            _replace(self._faults, snapshot.faults, name)
        self._services = held


def _replace(held: dict[str, Any], read: dict[str, Any], key: str) -> None:
    if key in read:
        held[key] = read[key]
    else:
        held.pop(key, None)


def render(content: Any) -> bytes:
    """As Starlette's JSONResponse renders."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def joined(parts: Iterable[bytes]) -> bytes:
    """A JSON array of rendered parts."""
    return b"[" + b",".join(parts) + b"]"


_mirrors: weakref.WeakKeyDictionary[ApiStore, Mirror] = weakref.WeakKeyDictionary()
_mirrors_lock = threading.Lock()


def mirror_of(store: ApiStore) -> Mirror:
    with _mirrors_lock:
        mirror = _mirrors.get(store)
        if mirror is None:
            mirror = _mirrors[store] = Mirror()
        return mirror


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")
