"""Turning the API's JSON into output: tables for people, the JSON (or YAML) itself for scripts.

Tables are built from plain rows (lists of strings) by the per-resource functions here, so every
command that shows services, nodes, tasks or events shows them the same way. A table piped to another
program is plain text (columns two spaces apart, no rules, no trailing spaces: awk-friendly) and
never imports rich; on a terminal rich draws it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

WIDE = 200  # columns when not on a terminal, so piped tables are never wrapped at 80


@dataclass
class Grid:
    """A table as plain data: drawn by rich on a terminal (`__rich__`), as plain columns when piped."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    caption: str | None = None
    show_header: bool = field(default=True)

    def __rich__(self) -> Table:
        from rich import box
        from rich.table import Table

        grid = Table(*self.headers, box=box.SIMPLE_HEAD, show_edge=False, title=self.title, title_justify="left",
                     pad_edge=False, show_header=self.show_header, caption=self.caption, caption_justify="left")
        for row in self.rows:
            grid.add_row(*row)
        return grid

    def lines(self) -> list[str]:
        """The table as text: columns two spaces apart, no rules, no trailing spaces."""
        shown = [list(self.headers), *self.rows] if self.show_header else [list(row) for row in self.rows]
        widths = [max((len(row[column]) for row in shown), default=0) for column in range(len(self.headers))]
        body = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
                for row in shown]
        return [*([self.title] if self.title else []), *body, *([self.caption] if self.caption else [])]


def console() -> Console:
    """stdout, unwrapped when piped (rich would otherwise fold long IDs and reasons at 80 columns)."""
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, soft_wrap=False, width=WIDE)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> Grid:
    return Grid(headers, rows, title)


def emit(
    data: Any, output: str, as_table: Callable[[Any], RenderableType | Grid], *, no_headers: bool = False,
    wide: Callable[[Any], Grid] | None = None, names: Callable[[Any], list[str]] | None = None,
) -> None:
    """Print `data` as JSON or YAML (the API's own shape), as `kind/name` lines (`names`), or as the table
    `as_table` builds from it (`wide`'s, with more columns, for `-o wide`)."""
    if output == "json":
        print_json(data)
    elif output == "yaml":
        print_yaml(data)
    elif output == "name" and names is not None:
        for name in names(data):
            print(name)
    else:
        shown = wide(data) if output == "wide" and wide is not None else as_table(data)
        if isinstance(shown, Grid):
            shown.show_header = not no_headers
        show(shown)


def show(shown: RenderableType | Grid) -> None:
    """A table or rich renderable on stdout: rich on a terminal; piped, plain lines without trailing spaces."""
    if isinstance(shown, Grid) and not sys.stdout.isatty():
        lines = shown.lines()
    else:
        out = console()
        if out.is_terminal:
            out.print(shown)
            return
        with out.capture() as captured:
            out.print(shown)
        lines = [line.rstrip() for line in captured.get().splitlines()]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


STRUCTURED = ("json", "yaml")  # the outputs that are the API's answer itself, for scripts


def print_data(data: Any, output: str) -> None:
    """The API's answer as JSON or YAML (`output` one of STRUCTURED)."""
    print_yaml(data) if output == "yaml" else print_json(data)


def print_yaml(data: Any) -> None:
    import yaml

    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    sys.stdout.flush()


def print_json(data: Any, *, compact: bool = False) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2))
    sys.stdout.write("\n")
    sys.stdout.flush()


def text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def moment(stamp: str | float | None) -> str:
    """An API time (ISO 8601 UTC, or an epoch number as in a node's usage) to the second: `2024-05-01T12:00:03Z`."""
    if stamp is None or stamp == "":
        return "-"
    try:
        when = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) else parse_time(stamp)
    except (ValueError, OverflowError, OSError):
        return str(stamp)  # not a time after all: shown as the API gave it
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def services_table(services: list[dict[str, Any]], wide: bool = False) -> Grid:
    headers = ["NAME", "IMAGE", "DESIRED", "RUNNING", "HEALTH"]
    rows = [
        [
            service["service_name"],
            service["image"],
            str(service["status"]["desired_replicas"]),
            str(service["status"]["running_replicas"]),
            "deleting" if service.get("deleting") else service["status"]["health"],
            *([str(service.get("version", "-")), (service.get("update") or {}).get("state") or "-",
               moment(service["status"].get("last_updated")), text(service["status"].get("reason"))] if wide else []),
        ]
        for service in services
    ]
    return table([*headers, *(["VERSION", "UPDATE", "LAST-UPDATED", "REASON"] if wide else [])], rows)


def nodes_table(nodes: list[dict[str, Any]], wide: bool = False) -> Grid:
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
            *([text(node.get("availability")), moment(node.get("last_heartbeat")),
               ",".join(f"{key}={value}" for key, value in sorted((node.get("labels") or {}).items())) or "-",
               text(node.get("reason"))] if wide else []),
        ]
        for node in nodes
    ]
    headers = ["ID", "ADDRESS", "STATUS", "CPU ALLOC/CAP", "MEMORY ALLOC/CAP", "TASKS", "LAST-HEARTBEAT"]
    return table([*headers, *(["AVAILABILITY", "HEARTBEAT-AT", "LABELS", "REASON"] if wide else [])], rows)


def tasks_table(tasks: list[dict[str, Any]], title: str | None = None, wide: bool = False) -> Grid:
    rows = [
        [
            task["id"],
            task["service"],
            text(task.get("node")),
            task["state"],
            ports(task.get("ports") or []),
            str(task.get("restarts", 0)),
            text(task.get("reason")),
            *([(task.get("container_id") or "-")[:12], moment(task.get("started_at")), text(task.get("exit_code")),
               text(task.get("health")), text(task.get("address"))] if wide else []),
        ]
        for task in tasks
    ]
    headers = ["ID", "SERVICE", "NODE", "STATE", "PORTS", "RESTARTS", "REASON"]
    return table([*headers, *(["CONTAINER", "STARTED", "EXIT", "HEALTH", "ADDRESS"] if wide else [])], rows, title)


def placement_table(placement: dict[str, Any]) -> Grid | str:
    """A pending task's placement: each listed node's verdict, under how many of all take it now."""
    total, listed = placement["nodes_total"], placement["nodes"]
    if not listed:
        return "Nodes: none judged (no node registered, or its service is gone)"
    rows = [[entry["node"], "yes" if entry["fits"] else "no", text(entry["reason"])] for entry in listed]
    title = f"Nodes: {placement['nodes_fitting']} of {total} take it now"
    caption = f"{len(listed)} of {total} nodes listed, those that take it first" if placement["truncated"] else None
    return Grid(["NODE", "FITS", "REASON"], rows, title, caption)


def events_table(events: list[dict[str, Any]], wide: bool = False) -> Grid:
    if not wide:
        return table(["TIME", "TYPE", "MESSAGE"], [event_row(event) for event in events])
    rows = [[*event_row(event), text((event.get("data") or {}).get("service")),
             text((event.get("data") or {}).get("node")), str(event.get("id", "-"))] for event in events]
    return table(["TIME", "TYPE", "MESSAGE", "SERVICE", "NODE", "ID"], rows)


def event_row(event: dict[str, Any]) -> list[str]:
    return [moment(event.get("time")), event["type"], event["message"]]
