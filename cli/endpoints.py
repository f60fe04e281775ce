"""`gorchester endpoints SERVICE`: where a service's ready replicas answer, as `kubectl get endpoints`.

The API lists the replicas the cluster DNS answers with (shared/discovery.py): each with its node's
address and published ports, and the container's address on the service network.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli import render
from cli.client import ApiClient, connection_options, path, run_client


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "endpoints", parents=[connection_options()], help="show where a service's ready replicas answer",
        description="List the ready replicas of SERVICE (those its DNS name answers with): the node's address "
        "with the published ports, and the container's address on the service network.",
    )
    parser.add_argument("service", metavar="SERVICE", help="the service name")
    parser.set_defaults(run=run_client(endpoints_command))


def endpoints_command(client: ApiClient, args: argparse.Namespace) -> int:
    endpoints = client.get(path("services", args.service, "endpoints"))
    if not endpoints and args.output in ("table", "wide"):
        print(f"no endpoints: service {args.service} has no ready replica")
        return 0
    render.emit(endpoints, args.output, endpoints_table)
    return 0


def endpoints_table(endpoints: list[dict[str, Any]]) -> render.Grid:
    rows = [
        [
            endpoint["task"],
            render.text(endpoint.get("node")),
            render.text(endpoint.get("node_address")),
            render.ports(endpoint.get("ports") or []),
            render.text(endpoint.get("address")),
            endpoint["health"],
        ]
        for endpoint in endpoints
    ]
    return render.table(["TASK", "NODE", "NODE ADDRESS", "PORTS", "ADDRESS", "HEALTH"], rows)
