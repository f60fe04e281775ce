"""`gorchester top services|nodes`: CPU and memory used, as `kubectl top pods|nodes` (one reading).

Services: each replica's last sample (`GET /v1/services/NAME/metrics`), then the service's average
over its fresh samples. A replica without a fresh sample of its current container (not running, or
its agent has not measured it yet) shows `-`. Nodes: what each node's agent measured last (the
`usage` of `GET /v1/nodes`), against what the node offers. With `-o json` the API's objects are
printed as they are: the services' usage objects, or the nodes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli import render
from cli.client import ApiClient, CliError, connection_options, path, run_client


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top", parents=[connection_options()], help="show CPU and memory used by replicas or nodes",
        description="Show what the replicas of each service (or of NAME) use, or what each node (or node NAME) "
        "uses of what it offers, from the agents' last samples.",
    )
    parser.add_argument("kind", choices=["services", "nodes"], help="what to measure")
    parser.add_argument("name", nargs="?", metavar="NAME", help="only this service or node")
    parser.set_defaults(run=run_client(top_command))


def top_command(client: ApiClient, args: argparse.Namespace) -> int:
    if args.kind == "nodes":
        nodes = [node for node in client.get("/v1/nodes") if args.name in (None, node["id"])]
        if args.name and not nodes:
            raise CliError(f"node {args.name!r} not found")
        render.emit(nodes, args.output, nodes_table)
        return 0
    if args.name:
        usages = [client.get(path("services", args.name, "metrics"))]
    else:
        usages = [usage for name in service_names(client) if (usage := service_usage(client, name))]
    render.emit(usages, args.output, services_table)
    return 0


def service_names(client: ApiClient) -> list[str]:
    return sorted(service["service_name"] for service in client.get("/v1/services"))


def service_usage(client: ApiClient, name: str) -> dict[str, Any] | None:
    """One service's usage; a service gone (or unreadable) since the listing is named on stderr and left out."""
    try:
        usage: dict[str, Any] = client.get(path("services", name, "metrics"))
    except CliError as exc:
        print(f"warning: {name}: {exc.message}", file=sys.stderr)
        return None
    return usage


def services_table(usages: list[dict[str, Any]]) -> render.Grid:
    """A row per replica, then its service's average over the fresh samples."""
    rows: list[list[str]] = []
    for usage in usages:
        for replica in usage["replicas"]:
            rows.append([usage["service"], replica["task"], render.text(replica.get("node")), *reading(replica)])
        average = usage["average"]
        label = f"average of {average['replicas_sampled']}"
        rows.append([usage["service"], label, "", *reading(average)])
    return render.table(["SERVICE", "TASK", "NODE", "CPU", "CPU%", "MEMORY", "MEMORY%"], rows)


def nodes_table(nodes: list[dict[str, Any]]) -> render.Grid:
    """Each node's measured use against its capacity; `-` before its agent's first sample."""
    rows = []
    for node in nodes:
        usage = node.get("usage") or {}
        used = usage.get("used") or {}
        capacity = node["capacity"]
        rows.append([
            node["id"],
            f"{millicores(used.get('cpu_millicores'))}/{capacity['cpu_millicores']}m",
            percent(usage.get("cpu_percent")),
            f"{memory(used.get('memory_bytes'))}/{render.size(capacity['memory_bytes'])}",
            percent(usage.get("memory_percent")),
            render.text(usage.get("containers")),
        ])
    return render.table(["NODE", "CPU USED/CAP", "CPU%", "MEMORY USED/CAP", "MEMORY%", "CONTAINERS"], rows)


def reading(sample: dict[str, Any]) -> list[str]:
    """CPU, CPU% (of what the replica reserves), memory and memory% of one sample or average."""
    return [
        millicores(sample.get("cpu_millicores")),
        percent(sample.get("cpu_percent")),
        memory(sample.get("memory_bytes")),
        percent(sample.get("memory_percent")),
    ]


def millicores(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}m"


def memory(value: int | None) -> str:
    return "-" if value is None else render.size(int(value))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"
