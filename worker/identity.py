"""Who this node is: its id, address, capacity and labels, read from the environment once at start-up."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping

from shared.records import NodeRecord
from shared.redis_url import hosts as redis_url_hosts
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


def on_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine's loopback; a name that does not resolve is not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(str(entry[4][0]).partition("%")[0]).is_loopback for entry in found)


def node_address(env: Mapping[str, str], redis_url: str) -> str:
    """GORCHESTER_NODE_ADDRESS, else 127.0.0.1, which serves only a cluster on one machine: with Redis on
    another machine the node is one of several hosts, and a loopback address there would publish its
    ports where no other host (and no client) can reach them."""
    address = env.get("GORCHESTER_NODE_ADDRESS") or DEFAULT_ADDRESS
    remote = [host for host in redis_url_hosts(redis_url) if not on_loopback(host)]
    if on_loopback(address) and remote:
        redis_host = remote[0]
        given = "is" if env.get("GORCHESTER_NODE_ADDRESS") else "is unset, so it defaults to"
        raise SystemExit(
            f"GORCHESTER_NODE_ADDRESS {given} {address}, a loopback address, but Redis is at {redis_host}, on "
            "another machine: set it to this host's own address, where other hosts reach its published ports"
        )
    return address


def node_record(node_id: str, settings: Settings, env: Mapping[str, str], now: float) -> NodeRecord:
    cpu = _int(env, "GORCHESTER_NODE_CPU")
    memory = _int(env, "GORCHESTER_NODE_MEMORY")
    return NodeRecord(
        id=node_id,
        address=node_address(env, settings.redis_url),
        cpu_millicores=cpu if cpu is not None else (os.cpu_count() or 1) * 1000,
        memory_bytes=memory if memory is not None else total_memory(),
        labels=parse_labels(env.get("GORCHESTER_NODE_LABELS", "")),
        heartbeat_interval=settings.heartbeat_interval,
        last_heartbeat=now,
        registered_at=now,
    )
