"""Background loops of the agent that must outlive Redis or Docker outages: log, back off, retry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("rq.worker.gorchester")

MAX_BACKOFF = 5.0


def repeat(
    stop: threading.Event, interval: float, step: Callable[[], None], what: str, max_backoff: float = MAX_BACKOFF
) -> None:
    """Run `step` every `interval` until `stop`; after a failure wait longer each time, up to `max_backoff`."""
    delay = interval
    while not stop.is_set():
        try:
            step()
            delay = interval
        except Exception:  # noqa: BLE001 - a loop of the agent must never die of one failure
            log.warning("%s failed; retrying in %.1fs", what, delay, exc_info=True)
            stop.wait(delay)
            delay = min(max(delay, interval) * 2, max_backoff)
            continue
        stop.wait(interval)


def spawn(name: str, target: Callable[[], None]) -> threading.Thread:
    # Daemon: an agent stopping (or killed) must not wait on a blocked event stream.
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
