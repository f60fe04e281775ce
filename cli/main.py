"""The `gorchester` command: one subcommand per module, each with `add_parser` (or `add_parsers`) and `run`.

Start-up time is the point of this module's shape: a command's module (and what it imports: redis, pydantic,
docker) is imported only when that command runs, so `gorchester get services` pays for the REST client alone.
A command is registered by one line in COMMANDS, its name and the module whose add_parser(s) builds it.

The client alone installs without the server's packages (pyproject.toml's `server` extra); a command that
needs them (`up`, `agent`) then says so in one line instead of a traceback.
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
    "stop": "cli.actions",
    "drain": "cli.actions",
    "activate": "cli.actions",
    "node": "cli.actions",
    "events": "cli.events",
    "endpoints": "cli.endpoints",
    "top": "cli.top",
    "logs": "cli.logs",
    "exec": "cli.execute",
    "agent": "cli.agent",
    "version": "cli.version",
    "context": "cli.contexts",
    "completion": "cli.completion",
    "__complete": "cli.completion",
}
# The import names of the `server` extra's packages (pyproject.toml; tests/unit/test_cli_core.py checks the two agree).
SERVER_PACKAGES = frozenset({"redis", "hiredis", "rq", "docker", "starlette", "uvicorn", "prometheus_client", "dns"})
SERVER_EXTRA = "needs the server extra: pip install 'gorchester[server]'"


class ServerExtraMissing(Exception):
    """A command's module, or what it runs, imports a package of the server extra, which is not installed."""


def server_package_missing(exc: ModuleNotFoundError) -> bool:
    return (exc.name or "").split(".")[0] in SERVER_PACKAGES


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` alone (cheap), or for every command when it is None or unknown (for --help)."""
    description = "A container orchestrator on Docker and Redis."
    parser = argparse.ArgumentParser(prog="gorchester", description=description, parents=[global_options()])
    parser.add_argument("--version", action="store_true", help="print the client's and the server's versions")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    alone = COMMANDS.get(command or "")
    for name in [alone] if alone else list(dict.fromkeys(COMMANDS.values())):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not server_package_missing(exc):
                raise
            if alone:
                raise ServerExtraMissing(exc.name) from None
            continue  # the full listing (--help) shows what this install can run
        add = getattr(module, "add_parsers", None) or module.add_parser
        add(subparsers)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv: the first word that is not a global option or its value; None for
    `gorchester --help ...` (the help lists every command)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None
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
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error("a COMMAND is required")
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except ServerExtraMissing as exc:
        print(f"error: gorchester {command} {SERVER_EXTRA} ({exc} is not installed)", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if not server_package_missing(exc):
            raise
        print(f"error: gorchester {command} {SERVER_EXTRA} ({exc.name} is not installed)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
