"""A service's rollout history: one entry per version that changed its template (the spec it rolled
out, when, why, which fields changed, and how the update before it ended), newest first, the last
KEPT kept. `gorchester rollout history` shows it; `rollout undo` rolls an entry's spec out again.

Each entry is written once, by whoever made its version, in the transaction that writes the service:
the API for a user's change (created, updated, undo), the scheduler for a rollback. An entry's
outcome is read off later ones (`ended`) and the service's own update (api/views.py).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from pydantic import Field, ValidationError

from shared.config import ServiceSpec
from shared.errors import Conflict, NotFound
from shared.records import Count, ServiceRecord, Stored, UpdateState, template_hash
from shared.spec_diff import diff, paths

log = logging.getLogger("gorchester.storage")

KEPT = 10  # versions kept per service, as Kubernetes' revisionHistoryLimit
MAX_CHANGED = 100  # field paths named per entry


class Cause(StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # a user's change of the template
    ROLLED_BACK = "rolled_back"  # the scheduler's rollback of a failed update
    UNDO = "undo"  # `gorchester rollout undo`


class Ended(Stored):
    """How the update before an entry's version ended when that version was made (`updating` or
    `paused`: superseded while under way)."""

    version: Count
    state: UpdateState
    reason: str | None = None


class Revision(Stored):
    version: Count
    at: float
    cause: Cause
    reason: str | None = None  # why it was rolled back; which version an undo went back to
    changed: list[str] = Field(default_factory=list, max_length=MAX_CHANGED)
    spec: ServiceSpec
    ended: Ended | None = None


def revision(
    before: ServiceRecord | None, after: ServiceRecord, now: float, cause: Cause, reason: str | None = None
) -> Revision | None:
    """The entry a write of `after` over `before` adds: one for a new service or a new template, none
    for anything else (a scale, a pause)."""
    if before is None:
        return Revision(version=after.version, at=now, cause=Cause.CREATED, spec=after.spec)
    if after.version == before.version or after.template_hash() == before.template_hash():
        return None
    update = after.update if cause is Cause.ROLLED_BACK else before.update
    ended = Ended(version=update.version, state=update.state, reason=update.reason) if update else None
    changed = paths(diff(before.spec, after.spec))[:MAX_CHANGED]
    return Revision(
        version=after.version, at=now, cause=cause, reason=reason, changed=changed, spec=after.spec, ended=ended
    )


def push(pipe: Any, key: str, entry: Revision) -> None:
    """Add an entry (in the caller's transaction) and drop those beyond KEPT."""
    pipe.lpush(key, entry.model_dump_json())
    pipe.ltrim(key, 0, KEPT - 1)


def parse(key: str, bodies: list[str]) -> list[Revision]:
    """The entries that can be read, newest first; one that cannot is logged and left out."""
    entries = []
    for body in bodies:
        try:
            entries.append(Revision.model_validate_json(body))
        except ValidationError as exc:
            log.warning("%s: an entry cannot be read, left out: %s", key, exc.errors()[0]["msg"])
    return entries


def undo_target(entries: list[Revision], current: ServiceRecord, to_version: int | None) -> Revision:
    """The version `rollout undo` rolls out again: `to_version`, or the newest kept whose template
    differs from the current one. NotFound when that version is not kept; Conflict when the service
    runs its template already, or no earlier template is kept."""
    template = current.template_hash()
    if to_version is None:
        for entry in entries:
            if template_hash(entry.spec) != template:
                return entry
        raise Conflict(f"service {current.name!r} has no earlier template in its history")
    for entry in entries:
        if entry.version == to_version:
            if template_hash(entry.spec) == template:
                raise Conflict(f"service {current.name!r} runs the template of version {to_version} already")
            return entry
    kept = ", ".join(str(entry.version) for entry in entries) or "none"
    raise NotFound(f"version {to_version} of service {current.name!r} is not in its history (kept: {kept})")
