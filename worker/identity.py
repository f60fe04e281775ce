"""Who this node is: its id, address, capacity and labels, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.records import NodeRecord
from shared.settings import Settings

DEFAULT_ADDRESS = "127.0.0.1"


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k=v` as given in GORCHESTER_NODE_LABELS; an entry without `=` is an operator's typo."""
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"GORCHESTER_NODE_LABELS: {item!r} must be KEY=VALUE")
        result[key.strip()] = value.strip()
    return result


def total_memory(meminfo: str = "/proc/meminfo") -> int:
    with open(meminfo) as lines:
        for line in lines:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"{meminfo}: no MemTotal line; set GORCHESTER_NODE_MEMORY")


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}: must be an integer, got {raw!r}") from None


def node_record(node_id: str, settings: Settings, env: Mapping[str, str], now: float) -> NodeRecord:
    cpu = _int(env, "GORCHESTER_NODE_CPU")
    memory = _int(env, "GORCHESTER_NODE_MEMORY")
    return NodeRecord(
        id=node_id,
        address=env.get("GORCHESTER_NODE_ADDRESS") or DEFAULT_ADDRESS,
        cpu_millicores=cpu if cpu is not None else (os.cpu_count() or 1) * 1000,
        memory_bytes=memory if memory is not None else total_memory(),
        labels=parse_labels(env.get("GORCHESTER_NODE_LABELS", "")),
        heartbeat_interval=settings.heartbeat_interval,
        last_heartbeat=now,
        registered_at=now,
    )
