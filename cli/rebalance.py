"""`gorchester rebalance NAME`: spread a service's replicas evenly over the nodes that may run them
(after nodes came back or joined, nothing moves replicas on its own), one start-first move at a time,
as `POST /v1/services/{name}/rebalance` does; `--dry-run` shows every move it would make first."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cli import plan, render
from cli.actions import report
from cli.arguments import seconds
from cli.client import ApiClient, CliError, connection_options, path, run_client
from cli.rollouts import DEFAULT_TIMEOUT, POLL_INTERVAL


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rebalance", parents=[connection_options()], help="spread a service's replicas evenly over its nodes",
        description="Move replicas of NAME, one at a time and start-first (the old container serves until the "
        "new one is ready), from the nodes holding most of them to those holding fewest, until no move makes "
        "the spread more even.",
    )
    parser.add_argument("name", metavar="NAME", help="the service")
    parser.add_argument("--dry-run", action="store_true", help="write nothing: show every move it would make")
    parser.add_argument("--wait", action="store_true", help="wait until the rebalance has ended")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"how long --wait waits (default {DEFAULT_TIMEOUT:g})")
    parser.set_defaults(run=run_client(rebalance_command))


def rebalance_command(client: ApiClient, args: argparse.Namespace) -> int:
    where = path("services", args.name, "rebalance")
    if args.dry_run:
        result = client.request("POST", where, params={"dry_run": "true"})
        if args.output in render.STRUCTURED:
            render.print_data(result, args.output)
        elif not result["services"][0]["moves"]:
            print(f"service {args.name}: its replicas are spread evenly already; nothing would move")
        else:
            print(plan.block(result["services"][0]))
        return 0
    service = client.post(where)
    if not args.wait:
        report(service, args.output, f"service {args.name}: rebalance asked for "
               f"(follow it with `gorchester describe service {args.name}`)")
        return 0
    done = wait(client, args.name, args.timeout)
    reason = done["rebalance"]["reason"]
    short = f", short of an even spread: {reason}" if reason else ""
    report(done, args.output, f"service {args.name} rebalanced{short}")
    return 0


def wait(client: ApiClient, name: str, timeout: float) -> Any:
    """The service once its rebalance has ended; CliError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        service = client.get(path("services", name))
        rebalance = service.get("rebalance")
        if rebalance is None or rebalance["finished_at"] is not None:
            return service
        if time.monotonic() >= deadline:
            raise CliError(f"timed out after {timeout:g}s: service {name} is still being rebalanced")
        print(f"rebalancing {name}: {service['status']['running_replicas']} running", file=sys.stderr, flush=True)
        time.sleep(POLL_INTERVAL)
