"""Reading stored records one by one: a hash of records parses into those that can be read and,
for the others, the key and why. Whatever a stored record holds is only that record's problem."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from shared.records import Unreadable, describe

Record = TypeVar("Record", bound=BaseModel)


@dataclass
class Records(Generic[Record]):
    """A hash of records as read: those that parse (by key), those that do not, and every key's JSON."""

    good: dict[str, Record]
    unreadable: dict[str, Unreadable]
    bodies: dict[str, str]

    def entry(self, key: str) -> Record | Unreadable | None:
        """The record stored under `key`, what could not be read of it, or None when absent."""
        record = self.good.get(key)
        return record if record is not None else self.unreadable.get(key)


class ParsedRecords(Generic[Record]):
    """Parses stored records one by one: one that cannot be read is reported with why, never raised.

    Results are cached by stored JSON, so a read of a whole hash re-parses only what changed since
    the last one. Records are shared between reads: callers must never mutate one.
    """

    def __init__(self, model: type[Record], key_of: Callable[[Record], str]) -> None:
        self.model = model
        self.key_of = key_of  # the key a record must be stored under
        # Stored JSON -> (the key it was read under, its record or why it cannot be read).
        self._known: dict[str, tuple[str, Record | Unreadable]] = {}
        self._lock = threading.Lock()

    def parse(self, entries: dict[str, str], *, whole: bool = True) -> Records[Record]:
        """The entries (key -> stored JSON) parsed; `whole`: they are the whole hash, and the cache
        keeps only them (it never outgrows the hash)."""
        known = self._known
        fresh: dict[str, tuple[str, Record | Unreadable]] = {}
        good: dict[str, Record] = {}
        unreadable: dict[str, Unreadable] = {}
        for key, body in entries.items():
            hit = known.get(body)
            if hit is None or hit[0] != key:
                hit = (key, self._verdict(key, body))
            fresh[body] = hit
            verdict = hit[1]
            if isinstance(verdict, Unreadable):
                unreadable[key] = verdict
            else:
                good[key] = verdict
        if whole:
            with self._lock:
                self._known = fresh
        return Records(good, unreadable, entries)

    def _verdict(self, key: str, body: str) -> Record | Unreadable:
        try:
            record = self.model.model_validate_json(body)
        except Exception as exc:  # noqa: BLE001 - whatever a stored record holds, it is only that record's problem
            return Unreadable(key, describe(exc), body)
        own = self.key_of(record)
        return record if own == key else Unreadable(key, f"stored under {key!r} but is that of {own!r}", body)
