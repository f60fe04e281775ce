"""Engine work that mostly waits (graceful stops: up to 10 s each for a PID 1 that ignores SIGTERM),
done several at once, as the kubelet stops a node's pods in parallel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")

STOP_PARALLELISM = 8  # graceful stops at once per agent


def each(work: Callable[[Item], object], items: Sequence[Item], limit: int = STOP_PARALLELISM) -> None:
    """`work(item)` for every item, up to `limit` at once; every item is tried, then the first
    failure (in item order) is raised."""
    if len(items) <= 1 or limit <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="fanout") as pool:
        futures = [pool.submit(work, item) for item in items]
    for future in futures:
        future.result()
