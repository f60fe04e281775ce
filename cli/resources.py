"""`gorchester get` and `gorchester describe`: read what the cluster holds, as tables or JSON."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from cli import render
from cli.client import ApiClient, connection_options, path, run_client

# What `get` lists: the API path and the table for it. Plural is canonical; singular is accepted.
LISTINGS: dict[str, tuple[str, Callable[[Any], Table]]] = {
    "services": ("/v1/services", render.services_table),
    "nodes": ("/v1/nodes", render.nodes_table),
    "tasks": ("/v1/tasks", render.tasks_table),
    "events": ("/v1/events", render.events_table),
}
SINGULAR = {name[:-1]: name for name in LISTINGS}
DESCRIBED_EVENTS = 20  # the newest events `describe` ends with


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    common = connection_options()
    get = subparsers.add_parser(
        "get", parents=[common], help="list services, nodes, tasks or events",
        description="List one kind of object; --service and --node narrow the list.",
    )
    get.add_argument("kind", type=kind, metavar="{services,nodes,tasks,events}", help="what to list")
    get.add_argument("--service", metavar="NAME", help="only this service (or its tasks and events)")
    get.add_argument("--node", metavar="ID", help="only this node (or its tasks and events)")
    get.set_defaults(run=run_client(get_command))

    describe = subparsers.add_parser(
        "describe", parents=[common], help="show one service, node or task in full",
        description="Show the spec and status of a service (or a node's capacity and use), plus its tasks and "
        "newest events; or a task, and when it is pending each node's reason for not taking it.",
    )
    describe.add_argument("kind", choices=["service", "node", "task"], help="what to describe")
    describe.add_argument("name", metavar="NAME", help="the service name, node id or task id (web.1)")
    describe.set_defaults(run=run_client(describe_command))


def kind(text: str) -> str:
    name = SINGULAR.get(text, text)
    if name not in LISTINGS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LISTINGS)}")
    return name


def get_command(client: ApiClient, args: argparse.Namespace) -> int:
    listing, as_table = LISTINGS[args.kind]
    items = client.get(listing, **filters(args))
    items = narrow(items, args)
    if not items and args.output == "table":
        print(f"no {args.kind}")  # a header with nothing under it reads like a rendering fault
        return 0
    render.emit(items, args.output, as_table)
    return 0


def filters(args: argparse.Namespace) -> dict[str, str | None]:
    """The query parameters the API itself filters on, for the kind being listed."""
    if args.kind == "tasks":
        return {"service": args.service, "node": args.node}
    if args.kind == "events":
        return {"service": args.service}
    return {}


def narrow(items: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The filters the API has no parameter for, applied here so every kind honours both options."""
    if args.kind == "services" and args.service:
        items = [item for item in items if item["service_name"] == args.service]
    if args.kind == "nodes" and args.node:
        items = [item for item in items if item["id"] == args.node]
    if args.kind == "events" and args.node:
        items = [item for item in items if item.get("data", {}).get("node") == args.node]
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
    if args.output == "json":
        render.print_json(described)  # the API's objects as they are; its events are `get events`'
        return 0
    render.console().print(describe_table({**described, "events": recent_events(client, args.kind, args.name)}))
    return 0


def recent_events(client: ApiClient, kind: str, name: str) -> list[dict[str, Any]]:
    """The newest DESCRIBED_EVENTS events about a service or a node, oldest first."""
    return list(client.get("/v1/events", **{kind: name}, limit=str(DESCRIBED_EVENTS)))


def describe_table(data: dict[str, Any]) -> Group:
    """The subject's fields, then its tasks, and where to read why one is pending, then its recent
    events (as `kubectl describe` ends)."""
    subject = data.get("service") or data.get("node") or {}
    tasks = render.tasks_table(data["tasks"], title="Tasks") if data["tasks"] else "Tasks: none"
    parts: list[RenderableType] = [fields_table(subject), "", tasks]
    pending = [task["id"] for task in data["tasks"] if task["state"] == "pending"]
    if pending:
        parts.append(f"why {pending[0]} is pending, node by node: gorchester describe task {pending[0]}")
    parts += ["", events_part(data["events"])]
    return Group(*parts)


def events_part(events: list[dict[str, Any]]) -> RenderableType:
    if not events:
        return "Events: <none>"
    grid = render.events_table(events)
    grid.title, grid.title_justify = "Events", "left"
    return grid


def task_description(data: dict[str, Any]) -> Group:
    """The task's fields, then, while it is pending, each node's verdict on it."""
    placement = data["placement"]
    if placement["state"] != "pending":
        return Group(fields_table(data["task"]))
    return Group(fields_table(data["task"]), "", render.placement_table(placement))


def fields_table(subject: dict[str, Any]) -> Table:
    """Field/value pairs (unset ones left out), nested mappings as `status.health`."""
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
        else:
            rows.append((label, show(value)))
    return rows


def show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(show(item) for item in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{key}={show(item)}" for key, item in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return render.text(value)
