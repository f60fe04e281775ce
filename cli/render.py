"""Turning the API's JSON into output: rich tables for people, the JSON itself for scripts.

Tables are built from plain rows (lists of strings) by the per-resource functions here, so every
command that shows services, nodes, tasks or events shows them the same way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

WIDE = 200  # columns when not on a terminal, so piped tables are never wrapped at 80


def console() -> Console:
    """stdout, unwrapped when piped (rich would otherwise fold long IDs and reasons at 80 columns)."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, soft_wrap=False, width=WIDE)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> Table:
    grid = Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, title=title, title_justify="left", pad_edge=False)
    for row in rows:
        grid.add_row(*row)
    return grid


def emit(data: Any, output: str, as_table: Callable[[Any], RenderableType]) -> None:
    """Print `data` as JSON (the API's own shape) or as the table `as_table` builds from it."""
    if output == "json":
        print_json(data)
    else:
        console().print(as_table(data))


def print_json(data: Any, *, compact: bool = False) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2))
    sys.stdout.write("\n")
    sys.stdout.flush()


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def moment(stamp: str | None) -> str:
    """An API time (ISO 8601 UTC) to the second, readable: `2024-05-01 12:00:03`."""
    if not stamp:
        return "-"
    return parse_time(stamp).strftime("%Y-%m-%d %H:%M:%S")


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """How long ago an API time was; heartbeats are read for freshness, not for the wall clock."""
    if not stamp:
        return "never"
    seconds = ((now or datetime.now(UTC)) - parse_time(stamp)).total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def parse_time(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def size(count: int) -> str:
    """Bytes in the largest binary unit that keeps it readable: 512Mi, 1.5Gi, 800Ki, 12B."""
    for unit, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= factor:
            return f"{count / factor:.4g}{unit}"
    return f"{count}B"


def ports(entries: list[dict[str, Any]]) -> str:
    """Published ports as `host->container/proto`; a spec's 0 host port shows as `any`."""
    return ", ".join(
        f"{entry.get('host_port') or 'any'}->{entry['container_port']}/{entry.get('protocol', 'tcp')}"
        for entry in entries
    ) or "-"


def services_table(services: list[dict[str, Any]]) -> Table:
    rows = [
        [
            service["service_name"],
            service["image"],
            str(service["status"]["desired_replicas"]),
            str(service["status"]["running_replicas"]),
            "deleting" if service.get("deleting") else service["status"]["health"],
        ]
        for service in services
    ]
    return table(["NAME", "IMAGE", "DESIRED", "RUNNING", "HEALTH"], rows)


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    now = datetime.now(UTC)
    rows = [
        [
            node["id"],
            node["address"],
            node["status"],
            f"{node['allocated']['cpu_millicores']}m/{node['capacity']['cpu_millicores']}m",
            f"{size(node['allocated']['memory_bytes'])}/{size(node['capacity']['memory_bytes'])}",
            str(node["tasks"]),
            ago(node.get("last_heartbeat"), now),
        ]
        for node in nodes
    ]
    headers = ["ID", "ADDRESS", "STATUS", "CPU ALLOC/CAP", "MEMORY ALLOC/CAP", "TASKS", "LAST-HEARTBEAT"]
    return table(headers, rows)


def tasks_table(tasks: list[dict[str, Any]], title: str | None = None) -> Table:
    rows = [
        [
            task["id"],
            task["service"],
            text(task.get("node")),
            task["state"],
            ports(task.get("ports") or []),
            str(task.get("restarts", 0)),
            text(task.get("reason")),
        ]
        for task in tasks
    ]
    return table(["ID", "SERVICE", "NODE", "STATE", "PORTS", "RESTARTS", "REASON"], rows, title)


def placement_table(placement: dict[str, Any]) -> RenderableType:
    """A pending task's placement: each listed node's verdict, under how many of all take it now."""
    total, listed = placement["nodes_total"], placement["nodes"]
    if not listed:
        return "Nodes: none judged (no node registered, or its service is gone)"
    rows = [[entry["node"], "yes" if entry["fits"] else "no", text(entry["reason"])] for entry in listed]
    title = f"Nodes: {placement['nodes_fitting']} of {total} take it now"
    grid = table(["NODE", "FITS", "REASON"], rows, title)
    if placement["truncated"]:
        grid.caption = f"{len(listed)} of {total} nodes listed, those that take it first"
        grid.caption_justify = "left"
    return grid


def events_table(events: list[dict[str, Any]]) -> Table:
    return table(["TIME", "TYPE", "MESSAGE"], [event_row(event) for event in events])


def event_row(event: dict[str, Any]) -> list[str]:
    return [moment(event.get("time")), event["type"], event["message"]]
