"""`gorchester apply`: send a config to the API, and optionally wait until the cluster matches it.

The file's text is sent as is (not re-serialised), so the API validates exactly what the user wrote
and its 422 field paths point into their file. `--wait` follows what the apply changed, as
`kubectl rollout status` does (cli/rollouts.py `wait`): each created or updated service until it rolls out
the version the apply wrote (a rolling update completed, its replicas running and healthy), each
deleted one until it is gone; it fails at once, naming the service and why, when a rollout is rolled
back or the service fails, and when the timeout passes.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli import plan, render
from cli.arguments import seconds
from cli.client import ApiClient, connection_options, run_client
from cli.configfile import read_text
from cli.rollouts import DEFAULT_TIMEOUT, wait
from shared.records import ServiceOutcome


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply", parents=[connection_options()], help="make the cluster's services match a config file",
        description="Send FILE to the API; print what was created, updated, left unchanged or deleted.",
    )
    parser.add_argument("-f", "--config", required=True, metavar="FILE", help="the config.yaml (or one service)")
    parser.add_argument("--prune", action="store_true", help="delete services that FILE does not declare")
    parser.add_argument(
        "--wait", action="store_true",
        help="wait until every changed service has rolled out (exit 1 when one is rolled back, fails or times out)"
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing: show the plan (as `gorchester plan`)")
    parser.add_argument(
        "--check-index", metavar="INDEX",
        help="apply only if no service changed since the plan that printed INDEX (`gorchester plan`)",
    )
    parser.add_argument(
        "--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"how long --wait waits (default {DEFAULT_TIMEOUT:g})",
    )
    parser.set_defaults(run=run_client(apply_command))


def apply_command(client: ApiClient, args: argparse.Namespace) -> int:
    if args.dry_run:
        plan.show(client, args.config, prune=args.prune, output=args.output)
        return 0
    text = read_text(args.config)
    params = {"prune": "true"} if args.prune else {}
    if args.check_index is not None:
        params["check_index"] = args.check_index
    outcome = client.request("POST", "/v1/apply", params=params or None, content=text, content_type="application/yaml")
    if args.output in render.STRUCTURED:
        render.print_data(outcome, args.output)
    else:
        print(summary(outcome))
    if args.wait:
        wait(client, targets(outcome), args.timeout, quiet=args.output in render.STRUCTURED)
    return 0


def summary(outcome: dict[str, list[str]]) -> str:
    """`created: web, api` per outcome that has names; `nothing to do` when all are empty."""
    lines = [f"{what}: {', '.join(outcome[what])}" for what in ServiceOutcome if outcome.get(what)]
    return "\n".join(lines) or "nothing to do: no services"


def targets(outcome: dict[str, Any]) -> dict[str, int | None]:
    """What the apply changed: each created or updated service's version, None for each deleted one."""
    versions = outcome.get("versions", {})
    changed: dict[str, int | None] = {name: versions.get(name, 1) for name in outcome["created"] + outcome["updated"]}
    return changed | {name: None for name in outcome["deleted"]}
