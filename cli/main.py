"""The `gorchester` command: one subcommand per module, each with `add_parser` (or `add_parsers`) and `run`.

Start-up time is the point of this module's shape: a command's module (and what it imports: redis, pydantic,
docker) is imported only when that command runs, so `gorchester get services` pays for the REST client alone.
A command is registered by one line in COMMANDS, its name and the module whose add_parser(s) builds it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cli.client import GLOBAL_VALUE_OPTIONS, global_options

# Command name -> the module that builds its sub-parser, in the order `gorchester --help` lists them.
COMMANDS: dict[str, str] = {
    "validate": "cli.validate",
    "up": "cli.up",
    "down": "cli.down",
    "apply": "cli.apply",
    "plan": "cli.plan",
    "rebalance": "cli.rebalance",
    "rollout": "cli.rollouts",
    "get": "cli.resources",
    "describe": "cli.resources",
    "scale": "cli.actions",
    "rm": "cli.actions",
    "drain": "cli.actions",
    "activate": "cli.actions",
    "node": "cli.actions",
    "events": "cli.events",
    "logs": "cli.logs",
    "exec": "cli.execute",
    "agent": "cli.agent",
    "version": "cli.version",
    "context": "cli.contexts",
    "completion": "cli.completion",
    "__complete": "cli.completion",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` alone (cheap), or for every command when it is None or unknown (for --help)."""
    description = "A container orchestrator on Docker and Redis."
    parser = argparse.ArgumentParser(prog="gorchester", description=description, parents=[global_options()])
    parser.add_argument("--version", action="store_true", help="print the client's and the server's versions")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        module = importlib.import_module(name)
        add = getattr(module, "add_parsers", None) or module.add_parser
        add(subparsers)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv: the first word that is not a global option or its value."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word in GLOBAL_VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = command_of(argv)
    if command is None and "--version" in argv:
        argv, command = [*argv, "version"], "version"  # `gorchester --version` is `gorchester version`
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a COMMAND is required")
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
