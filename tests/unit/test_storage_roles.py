"""The storage package's boundary: each process holds only its role's class, and nothing outside the
package reaches for the Redis client or the keys of the cluster's data."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.storage import AgentStore, ApiStore, SchedulerStore, Store
from shared.storage.plans import PlanWrites
from shared.storage.requests import UserWrites
from shared.storage.statuses import StatusWrites

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = {"_client", "_redis", "_keys"}


def test_each_role_has_only_its_own_writes() -> None:
    assert not issubclass(AgentStore, PlanWrites) and not issubclass(AgentStore, UserWrites)
    assert not issubclass(ApiStore, PlanWrites) and not issubclass(ApiStore, StatusWrites)
    assert not issubclass(SchedulerStore, StatusWrites)
    assert all(issubclass(Store, role) for role in (AgentStore, ApiStore, SchedulerStore))
    assert not hasattr(AgentStore, "write_assignments") and not hasattr(ApiStore, "write_statuses")


def test_no_process_reaches_into_the_store() -> None:
    """No product module outside shared/storage reads a store's client or keys (`store.redis`,
    `store.keys` and their private names)."""
    reaching = []
    for package in ("api", "scheduler", "worker", "cli", "shared"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "shared" / "storage"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Attribute):
                    continue
                owner = node.value
                owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                private = node.attr in PRIVATE and owner_name != "self"  # an object's own, not a store's
                if private or (owner_name == "store" and node.attr in {"redis", "keys"}):
                    reaching.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert reaching == []
