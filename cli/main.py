"""The `gorchester` command: one subcommand per module, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import sys

from cli import (
    actions,
    agent,
    apply,
    down,
    endpoints,
    events,
    execute,
    logs,
    plan,
    rebalance,
    resources,
    rollouts,
    top,
    up,
    validate,
)


def build_parser() -> argparse.ArgumentParser:
    description = "A container orchestrator on Docker and Redis."
    parser = argparse.ArgumentParser(prog="gorchester", description=description)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.add_parser(subparsers)
    up.add_parser(subparsers)
    down.add_parser(subparsers)
    apply.add_parser(subparsers)
    plan.add_parser(subparsers)
    rebalance.add_parser(subparsers)
    rollouts.add_parser(subparsers)
    resources.add_parsers(subparsers)
    actions.add_parsers(subparsers)
    events.add_parser(subparsers)
    endpoints.add_parser(subparsers)
    top.add_parser(subparsers)
    logs.add_parser(subparsers)
    execute.add_parser(subparsers)
    agent.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
