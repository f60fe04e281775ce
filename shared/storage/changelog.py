"""The change log: which services and tasks each write changed, so a reader that keeps a copy of them
(the API's views, api/mirror.py) re-reads only those, not the whole cluster.

`gorchester:<cluster>:changelog` is a stream. Every write of a service, a task's assignment, status or
stop request, or the scheduler's faults appends one entry, in the same transaction or Lua call as
the write: `tasks` and `services`, each the changed ids joined by newlines (ids never hold one), or
`all` when a write changed more than MAX_IDS things (the reader re-reads everything). The stream
keeps about CAP entries (a reader further behind re-reads everything anyway), so it holds a few
megabytes at most; the id of its last entry is the revision of the data.

A reader holding revision R reads the entries from R on. When R is not among them (trimmed away, or
the data was lost in a failover or flushed), or they name more than MAX_PATCH things, it re-reads
everything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

CAP = 1_000  # entries kept (about: trimmed a macro node at a time)
MAX_IDS = 1_000  # ids named in one entry; a larger write says `all`
MAX_FOLLOW = CAP  # entries a reader follows at once; further behind, it re-reads everything
MAX_PATCH = 5_000  # ids a reader re-reads one by one; more, and reading everything costs less

# For Lua: `log_change(key, tasks, services)` appends one entry for two tables of ids.
LUA = f"""
local function log_change(key, tasks, services)
  local fields = {{}}
  if #tasks + #services > {MAX_IDS} then
    fields = {{'all', '1'}}
  else
    if #tasks > 0 then fields = {{'tasks', table.concat(tasks, '\\n')}} end
    if #services > 0 then
      fields[#fields + 1] = 'services'
      fields[#fields + 1] = table.concat(services, '\\n')
    end
  end
  if #fields > 0 then redis.call('XADD', key, 'MAXLEN', '~', {CAP}, '*', unpack(fields)) end
end
"""


def entry(tasks: Collection[str] = (), services: Collection[str] = ()) -> dict[str, str]:
    """The fields of the entry for a write that changed these tasks and services (in a MULTI: pass to
    `append`)."""
    if len(tasks) + len(services) > MAX_IDS:
        return {"all": "1"}
    fields = {}
    if tasks:
        fields["tasks"] = "\n".join(tasks)
    if services:
        fields["services"] = "\n".join(services)
    return fields


def append(pipe: Any, key: str, *, tasks: Collection[str] = (), services: Collection[str] = (),
           everything: bool = False) -> None:
    """Queue the entry of a write on `pipe` (a transaction pipeline, so it lands with the write)."""
    fields = {"all": "1"} if everything else entry(tasks, services)
    if fields:
        pipe.xadd(key, fields, maxlen=CAP, approximate=True)


@dataclass(frozen=True)
class Changes:
    """What changed after a revision, up to `revision` (the last entry read). `complete` False: the
    reader cannot tell (too far behind, trimmed, lost) and must re-read everything."""

    revision: str
    tasks: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    complete: bool = True

    @property
    def none(self) -> bool:
        return self.complete and not self.tasks and not self.services


def since(revision: str, entries: list[tuple[str, dict[str, str]]]) -> Changes | None:
    """The changes after `revision` from the stream's entries read from it on (XRANGE revision +,
    at most MAX_FOLLOW + 1 of them). None: the stream is gone (nothing to key a copy on)."""
    if not entries:
        return None
    last = entries[-1][0]
    if entries[0][0] != revision or len(entries) > MAX_FOLLOW:
        return Changes(last, complete=False)
    tasks: set[str] = set()
    services: set[str] = set()
    for _, fields in entries[1:]:
        if "all" in fields:
            return Changes(last, complete=False)
        tasks.update(_ids(fields.get("tasks")))
        services.update(_ids(fields.get("services")))
        if len(tasks) + len(services) > MAX_PATCH:
            return Changes(last, complete=False)
    return Changes(last, frozenset(tasks), frozenset(services))


def _ids(joined: str | None) -> list[str]:
    return joined.split("\n") if joined else []
