"""`gorchester version` (and `--version`): this client's version and, when it answers, the API server's."""

from __future__ import annotations

import argparse
import sys

from cli import render
from cli.client import CliError, client_from, connection_options, report
from shared.version import build_version


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "version", parents=[connection_options()], help="print the client's and the server's versions",
        description="The client's version, and the API server's (GET /v1/version); an unreachable server "
        "is reported, the client's version still printed.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return report(lambda: version_command(args))


def version_command(args: argparse.Namespace) -> int:
    versions: dict[str, str | None] = {"client": build_version(), "server": None}
    try:
        versions["server"] = str(client_from(args).get("/v1/version")["version"])
        problem = None
    except (CliError, KeyError, TypeError) as exc:
        problem = exc.message if isinstance(exc, CliError) else "the API's answer to /v1/version has no version"
    if args.output in render.STRUCTURED:
        render.print_data(versions, args.output)
    else:
        print(f"Client: {versions['client']}")
        print(f"Server: {versions['server'] or 'unreachable'}")
    if problem:
        print(f"error: the server's version could not be read: {problem}", file=sys.stderr)
        return 1
    return 0
