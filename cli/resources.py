"""`gorchester get` and `gorchester describe`: read what the cluster holds, as tables or JSON."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cli import render
from cli.client import ApiClient, connection_options, path, run_client

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

# What `get` lists: the API path, the table for it, and the field that names one. Plural is canonical;
# singular and kubectl-style short names are accepted.
LISTINGS: dict[str, tuple[str, Callable[..., render.Grid], str]] = {
    "services": ("/v1/services", render.services_table, "service_name"),
    "nodes": ("/v1/nodes", render.nodes_table, "id"),
    "tasks": ("/v1/tasks", render.tasks_table, "id"),
    "events": ("/v1/events", render.events_table, "id"),
}
ALIASES = {name[:-1]: name for name in LISTINGS} | {"svc": "services", "no": "nodes", "ts": "tasks", "ev": "events"}
WATCH_INTERVAL = 2.0  # seconds between polls of `get --watch`
TIME_FIELDS = ("time", "last_heartbeat", "last_updated")  # besides every `*_at`: shown ISO 8601 by describe
DESCRIBED_EVENTS = 20  # the newest events `describe` ends with


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    common = connection_options()
    get = subparsers.add_parser(
        "get", parents=[common], help="list services, nodes, tasks or events",
        description="List one kind of object; --service and --node narrow the list.",
    )
    get.add_argument("kind", type=kind, metavar="{services,nodes,tasks,events}",
                     help="what to list (also svc, no, ts, ev, or singular)")
    get.add_argument("--service", metavar="NAME", help="only this service (or its tasks and events)")
    get.add_argument("--node", metavar="ID", help="only this node (or its tasks and events)")
    get.add_argument("-w", "--watch", action="store_true", help="print the list again each time it changes (Ctrl-C)")
    get.set_defaults(run=run_client(get_command))

    describe = subparsers.add_parser(
        "describe", parents=[common], help="show one service, node or task in full",
        description="Show the spec and status of a service (or a node's capacity and use), plus its tasks and "
        "newest events; or a task, and when it is pending each node's reason for not taking it.",
    )
    describe.add_argument("kind", type=describable, metavar="{service,node,task}",
                          help="what to describe (also svc, no, ts, or plural)")
    describe.add_argument("name", metavar="NAME", help="the service name, node id or task id (web.1)")
    describe.set_defaults(run=run_client(describe_command))


def kind(text: str) -> str:
    name = ALIASES.get(text, text)
    if name not in LISTINGS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LISTINGS)}")
    return name


def describable(text: str) -> str:
    """`describe`'s kind, singular: service, node or task, from any of `get`'s names for them."""
    name = ALIASES.get(text, text)
    if name not in ("services", "nodes", "tasks"):
        raise argparse.ArgumentTypeError(f"{text!r} is not one of service, node, task")
    return name[:-1]


def get_command(client: ApiClient, args: argparse.Namespace) -> int:
    """The list once; with --watch, again whenever the API's answer changes, until Ctrl-C (exit 130)."""
    listing = LISTINGS[args.kind][0]
    shown: list[dict[str, Any]] | None = None
    while True:
        items = narrow(client.get(listing, **filters(args)), args)
        if items != shown:
            print_listing(items, args)
            shown = items
        if not args.watch:
            return 0
        time.sleep(WATCH_INTERVAL)


def print_listing(items: list[dict[str, Any]], args: argparse.Namespace) -> None:
    _, as_table, key = LISTINGS[args.kind]
    if not items and args.output in ("table", "wide"):
        print(f"no {args.kind}", flush=True)  # a header with nothing under it reads like a rendering fault
        return
    render.emit(items, args.output, as_table, no_headers=args.no_headers,
                wide=functools.partial(as_table, wide=True), names=lambda found: names(args.kind, found, key))


def names(kind: str, items: list[dict[str, Any]], key: str) -> list[str]:
    """`-o name`: `service/web`, `node/n1`, `task/web.1`, like kubectl's."""
    return [f"{kind[:-1]}/{item[key]}" for item in items]


def filters(args: argparse.Namespace) -> dict[str, str | None]:
    """The query parameters the API itself filters on, for the kind being listed."""
    if args.kind in ("tasks", "events"):
        return {"service": args.service, "node": args.node}
    return {}


def narrow(items: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The filters the API has no parameter for, applied here so every kind honours both options."""
    if args.kind == "services" and args.service:
        items = [item for item in items if item["service_name"] == args.service]
    if args.kind == "nodes" and args.node:
        items = [item for item in items if item["id"] == args.node]
    return items


def describe_command(client: ApiClient, args: argparse.Namespace) -> int:
    if args.kind == "task":
        task = client.get(path("tasks", args.name))
        placement = client.get(path("tasks", args.name, "placement"))
        render.emit({"task": task, "placement": placement}, args.output, task_description)
        return 0
    if args.kind == "service":
        subject = client.get(path("services", args.name))
        tasks = client.get("/v1/tasks", service=args.name)
    else:
        subject = client.get(path("nodes", args.name))
        tasks = client.get("/v1/tasks", node=args.name)
    described = {args.kind: subject, "tasks": tasks}
    if args.output in render.STRUCTURED:
        render.print_data(described, args.output)  # the API's objects as they are; its events are `get events`'
        return 0
    render.show(describe_table({**described, "events": recent_events(client, args.kind, args.name)}))
    return 0


def recent_events(client: ApiClient, kind: str, name: str) -> list[dict[str, Any]]:
    """The newest DESCRIBED_EVENTS events about a service or a node, oldest first."""
    return list(client.get("/v1/events", **{kind: name}, limit=str(DESCRIBED_EVENTS)))


def describe_table(data: dict[str, Any]) -> Group:
    """The subject's fields, then its tasks, and where to read why one is pending, then its recent
    events (as `kubectl describe` ends)."""
    from rich.console import Group, RenderableType

    subject = data.get("service") or data.get("node") or {}
    tasks = render.tasks_table(data["tasks"], title="Tasks") if data["tasks"] else "Tasks: none"
    parts: list[RenderableType] = [fields_table(subject), "", tasks]
    pending = [task["id"] for task in data["tasks"] if task["state"] == "pending"]
    if pending:
        parts.append(f"why {pending[0]} is pending, node by node: gorchester describe task {pending[0]}")
    parts += ["", events_part(data["events"])]
    return Group(*parts)


def events_part(events: list[dict[str, Any]]) -> render.Grid | str:
    if not events:
        return "Events: <none>"
    grid = render.events_table(events)
    grid.title = "Events"
    return grid


def task_description(data: dict[str, Any]) -> Group:
    """The task's fields, then, while it is pending, each node's verdict on it."""
    from rich.console import Group

    placement = data["placement"]
    if placement["state"] != "pending":
        return Group(fields_table(data["task"]))
    return Group(fields_table(data["task"]), "", render.placement_table(placement))


def fields_table(subject: dict[str, Any]) -> Table:
    """Field/value pairs (unset ones left out), nested mappings as `status.health`."""
    from rich.table import Table

    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    for key, value in flatten(subject):
        fields.add_row(key, value)
    return fields


def flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        if value is None or value == [] or value == {}:
            continue  # unset optional fields would bury the ones that say something
        label = f"{prefix}{key}"
        if key == "ports" and isinstance(value, list):
            rows.append((label, render.ports(value)))
        elif isinstance(value, dict) and value:
            rows += flatten(value, f"{label}.")
        elif is_time(key, value):
            rows.append((label, render.moment(value)))
        else:
            rows.append((label, show(value)))
    return rows


def is_time(key: str, value: Any) -> bool:
    """A field that holds a time (an ISO string or, as a node's usage.sampled_at, an epoch number)."""
    timed = key.endswith("_at") or key in TIME_FIELDS
    return timed and isinstance(value, str | int | float) and not isinstance(value, bool)


def show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(show(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={show(item)}" for key, item in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return render.text(value)
