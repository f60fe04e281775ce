"""`gorchester exec TASK [--timeout S] -- CMD [ARG...]`: run a command in a replica's container.

Prints the command's output (stdout and stderr interleaved, the last 1 MiB) as it is, and exits with
the command's exit code; a command still running at its timeout exits 124, as timeout(1) does.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from cli import render
from cli.arguments import positive
from cli.client import ApiClient, CliError, connection_options, path, run_client
from shared.node_requests import ANSWER_SECONDS, DEFAULT_EXEC_TIMEOUT, MAX_EXEC_TIMEOUT

EXIT_TIMED_OUT = 124
# Beyond the command's own timeout: the agent's first answer, and the API's and the network's share.
SLACK_SECONDS = ANSWER_SECONDS + 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exec", parents=[connection_options()], help="run a command in a replica's container",
        description="Run CMD with its ARGs (no shell added) in TASK's running container, e.g. "
        "`gorchester exec web.1 -- ls -l /`; print its output and exit with its exit code.",
    )
    parser.add_argument("task", metavar="TASK", help="a task id, e.g. web.1")
    parser.add_argument(
        "--timeout", type=positive, default=DEFAULT_EXEC_TIMEOUT, metavar="S",
        help=f"seconds the command may run, 1 to {MAX_EXEC_TIMEOUT} (default {DEFAULT_EXEC_TIMEOUT})",
    )
    parser.add_argument("command", nargs="+", metavar="CMD", help="the command and its arguments, after --")
    parser.set_defaults(run=run_client(exec_command))


def exec_command(client: ApiClient, args: argparse.Namespace) -> int:
    patient = dataclasses.replace(client, timeout=args.timeout + SLACK_SECONDS)
    result = patient.post(path("tasks", args.task, "exec"), {"command": args.command, "timeout": args.timeout})
    if args.output in render.STRUCTURED:
        render.print_data(result, args.output)
    else:
        sys.stdout.write(result["output"])
        sys.stdout.flush()
        if result.get("truncated"):
            print("(the output was longer: only its last 1 MiB is shown)", file=sys.stderr)
    if result.get("timed_out"):
        raise CliError(f"{args.task}: the command did not end within {args.timeout} s (it may still run)",
                       exit_code=EXIT_TIMED_OUT)
    return int(result["exit_code"])
