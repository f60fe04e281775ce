"""What changed between two specs, field by field: a rollout's history says which fields a version
changed, and a plan shows each change with both values. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.config import ServiceSpec


@dataclass(frozen=True)
class Change:
    path: str  # `image`, `resources.cpu_millicores`, `env` (a list changes as a whole)
    before: Any  # None: the field was absent (or null)
    after: Any


def diff(before: ServiceSpec | None, after: ServiceSpec) -> list[Change]:
    """The fields `after` sets differently from `before` (every field `after` sets, when there is
    none), in the order of the spec's fields."""
    old = before.model_dump(mode="json") if before is not None else {}
    return _diff(old, after.model_dump(mode="json"), "")


def paths(changes: list[Change]) -> list[str]:
    return [change.path for change in changes]


def _diff(before: dict[str, Any], after: dict[str, Any], prefix: str) -> list[Change]:
    changes = []
    for key in [*after, *(key for key in before if key not in after)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _diff(old, new, f"{prefix}{key}.")
        else:
            changes.append(Change(f"{prefix}{key}", old, new))
    return changes
