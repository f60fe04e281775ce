"""One-shot changes: `scale`, `rm`, `stop`, `drain`, `activate`, `node rm`. Each is one API call and a
one-line answer; `drain` then waits until the node is empty (cli/draining.py) unless --no-wait.

The API returns the changed object; with `-o json` that is printed as is, so scripts see its state.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli import draining, render
from cli.arguments import seconds, whole_number
from cli.client import ApiClient, connection_options, path, run_client


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    common = connection_options()
    scale = subparsers.add_parser(
        "scale", parents=[common], help="set a service's replica count",
        description="Set the desired replicas of NAME to N (scale_policy bounds are checked by the API).",
    )
    scale.add_argument("name", metavar="NAME", help="the service")
    scale.add_argument("replicas", type=whole_number, metavar="N", help="the desired number of replicas")
    scale.set_defaults(run=run_client(scale_command))

    remove = subparsers.add_parser(
        "rm", parents=[common], help="delete a service",
        description="Mark NAME for deletion; its tasks are stopped and the service goes once they are gone.",
    )
    remove.add_argument("name", metavar="NAME", help="the service")
    remove.set_defaults(run=run_client(remove_command))

    stop = subparsers.add_parser(
        "stop", parents=[common], help="stop a running task",
        description="Stop task TASK (e.g. web.2): its container stops but stays; under restart_policy "
        "unless-stopped it stays stopped, under always it is started again.",
    )
    stop.add_argument("task", metavar="TASK", help="the task id (service.slot)")
    stop.set_defaults(run=run_client(stop_command))

    drain = subparsers.add_parser(
        "drain", parents=[common], help="node: move its tasks elsewhere and take no new ones",
        description="Make node NODE move its tasks elsewhere and take no new ones, then wait until none of its "
        "tasks is left there (progress on stderr; exit 1 naming them after --timeout).",
    )
    drain.add_argument("node", metavar="NODE", help="the node id")
    drain.add_argument("--no-wait", action="store_true", help="return once the drain is accepted")
    drain.add_argument(
        "--timeout", type=seconds, default=draining.DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"how long to wait for the node to empty (default {draining.DEFAULT_TIMEOUT:g})",
    )
    drain.set_defaults(run=run_client(availability_command), verb="drain")

    activate = subparsers.add_parser(
        "activate", parents=[common], help="node: take new tasks again",
        description="Make node NODE take new tasks again.",
    )
    activate.add_argument("node", metavar="NODE", help="the node id")
    activate.set_defaults(run=run_client(availability_command), verb="activate", no_wait=True)

    nodes = subparsers.add_parser("node", help="node: remove one", description="Change the cluster's nodes.")
    node_commands = nodes.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    forget = node_commands.add_parser(
        "rm", parents=[common], help="forget a node that is down",
        description="Forget node NODE, as `docker node rm`: refused unless it is down (its agent stopped and "
        "its beats missed); its replicas are placed elsewhere.",
    )
    forget.add_argument("node", metavar="NODE", help="the node id")
    forget.add_argument("--force", action="store_true",
                        help="remove it even when it is not down (its agent, if still running, joins again)")
    forget.set_defaults(run=run_client(node_remove_command))


def scale_command(client: ApiClient, args: argparse.Namespace) -> int:
    service = client.post(path("services", args.name, "scale"), {"replicas": args.replicas})
    report(service, args.output, f"service {args.name} scaled to {service['replicas']} replicas")
    return 0


def remove_command(client: ApiClient, args: argparse.Namespace) -> int:
    service = client.request("DELETE", path("services", args.name))
    report(service, args.output, f"service {args.name} marked for deletion")
    return 0


def stop_command(client: ApiClient, args: argparse.Namespace) -> int:
    task = client.post(path("tasks", args.task, "stop"))
    report(task, args.output, f"task {args.task}: stop requested on {task['node']}")
    return 0


def availability_command(client: ApiClient, args: argparse.Namespace) -> int:
    node = client.post(path("nodes", args.node, args.verb))
    report(node, args.output, f"node {args.node}: availability {node['availability']}, status {node['status']}")
    if not args.no_wait:
        draining.wait_empty(client, args.node, args.timeout)
    return 0


def node_remove_command(client: ApiClient, args: argparse.Namespace) -> int:
    params = {"force": "true"} if args.force else None
    removed = client.request("DELETE", path("nodes", args.node), params=params)
    report(removed, args.output, f"node {args.node} removed")
    return 0


def report(data: Any, output: str, sentence: str) -> None:
    if output in render.STRUCTURED:
        render.print_data(data, output)
    else:
        print(sentence)
