"""Waiting for a drained node to empty (`gorchester drain`, unless --no-wait), as `kubectl drain` waits
for its pods to be evicted.

A node is empty once no container of a task is left on it: no task placed there is assigned,
starting, running, or shut down but not yet removed (a global service's replica retired by the
drain is that), and no task moved start-first still has its previous container there (it serves
until the new one, on another node, is ready). Stopped and failed tasks keep no running container
and do not count. The decision is pure (`left_on`, `progress`); `wait_empty` only polls.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from cli.client import ApiClient, CliError

POLL_INTERVAL = 1.0  # seconds between looks at /v1/tasks while waiting
DEFAULT_TIMEOUT = 300.0
# The task states that hold a container on their node: shared/records.py ACTIVE_STATES and SHUTDOWN
# (TaskRecord.holds_node), spelled out so the command line loads no pydantic; a unit test keeps them equal.
HOLDING_STATES = frozenset({"assigned", "starting", "running", "shutdown"})


def left_on(node: str, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks (as `GET /v1/tasks` shows them) that still have a container on `node`."""
    return [
        task for task in tasks
        if (task.get("node") == node and task["state"] in HOLDING_STATES)
        or (task.get("previous") or {}).get("node") == node
    ]


def describe_left(node: str, task: dict[str, Any]) -> str:
    """`web.1 running`, or `web.2 moving to node-2` when only its previous container is still there."""
    if task.get("node") == node:
        reason = f" ({task['reason']})" if task.get("reason") else ""
        return f"{task['id']} {task['state']}{reason}"
    return f"{task['id']} moving to {task.get('node') or 'another node'}"


def progress(node: str, left: list[dict[str, Any]]) -> str:
    """One progress line: `node-1: 3 tasks left (web.1, web.2, db.1)`, or `node-1: empty`."""
    if not left:
        return f"{node}: empty"
    plural = "s" if len(left) != 1 else ""
    return f"{node}: {len(left)} task{plural} left ({', '.join(task['id'] for task in left)})"


def wait_empty(client: ApiClient, node: str, timeout: float) -> None:
    """Poll until `node` is empty, printing progress to stderr when it changes; CliError on timeout,
    naming each task still there."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        left = left_on(node, client.get("/v1/tasks"))  # every task: a moved one's previous is on another's record
        line = progress(node, left)
        if line != shown:
            print(line, file=sys.stderr, flush=True)
            shown = line
        if not left:
            return
        if time.monotonic() >= deadline:
            raise CliError(
                f"timed out after {timeout:g}s: node {node} still holds {len(left)} task(s)",
                [describe_left(node, task) for task in left],
            )
        time.sleep(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0)))
