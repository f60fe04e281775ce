"""`gorchester logs SERVICE|TASK [--follow] [--tail N]`: container output through the API.

A task id (`web.2`) prints that replica's output as is. A service name prints every replica's
output, each line prefixed with its task id; with --follow the replicas are streamed side by side
(one thread each) until they stop or Ctrl-C. Replicas without a container (pending) are named on
stderr and skipped. Service names are DNS labels, so a name with a dot is always a task id.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import Any

import httpx

from cli.arguments import WHOLE_NUMBER, whole_number
from cli.client import ApiClient, CliError, api_error, connection_options, path, run_client

CONNECT_TIMEOUT = 10.0  # the stream itself has no read timeout: a quiet container is not an error


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs", parents=[connection_options()], help="print a service's or a task's container output",
        description="Print the container output of TASK (e.g. web.2), or of every replica of SERVICE "
        "with each line prefixed by its task id.",
    )
    parser.add_argument("target", metavar="SERVICE|TASK", help="a service name or a task id")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing output until it stops or Ctrl-C")
    parser.add_argument("--tail", type=whole_number, metavar="N", help="only the last N lines of each replica")
    parser.set_defaults(run=run_client(logs_command))


def is_task_id(target: str) -> bool:
    name, dot, slot = target.rpartition(".")
    return bool(dot and name and WHOLE_NUMBER.fullmatch(slot))


def logs_command(client: ApiClient, args: argparse.Namespace) -> int:
    if is_task_id(args.target):
        task = client.get(path("tasks", args.target))
        if not task.get("container_id"):
            raise CliError(f"task {args.target} has no container (it is {task.get('state')})")
        stream(client, task["id"], args, prefix=None)
        return 0
    client.get(path("services", args.target))  # an unknown service is a clear 404, not an empty list
    tasks = client.get("/v1/tasks", service=args.target)
    with_container = [task for task in tasks if task.get("container_id")]
    for task in tasks:
        if not task.get("container_id"):
            print(f"{task['id']}: no container ({task['state']}); skipped", file=sys.stderr, flush=True)
    if not with_container:
        raise CliError(f"service {args.target} has no replica with a container yet")
    width = max(len(task["id"]) for task in with_container)
    lock = threading.Lock()
    errors: list[CliError] = []

    def one(task: dict[str, Any]) -> None:
        try:
            stream(client, task["id"], args, prefix=task["id"].ljust(width), lock=lock)
        except CliError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(task,), daemon=True) for task in with_container]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join with a timeout, so Ctrl-C reaches the main thread at once
            thread.join(0.2)
    for exc in errors:
        print(f"error: {exc.message}", file=sys.stderr)
    return 1 if errors else 0


def stream(
    client: ApiClient, task_id: str, args: argparse.Namespace, prefix: str | None,
    lock: threading.Lock | None = None,
) -> None:
    params = {"follow": "true" if args.follow else "false"}
    if args.tail is not None:
        params["tail"] = str(args.tail)
    headers = {"Accept": "text/plain"}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    url = f"{client.base_url}{path('tasks', task_id, 'logs')}"
    timeout = httpx.Timeout(CONNECT_TIMEOUT, read=None)
    try:
        with httpx.stream(
            "GET", url, params=params, headers=headers, timeout=timeout, verify=client.verify
        ) as response:
            if not response.is_success:
                response.read()
                raise api_error(response)
            if prefix is None:
                for chunk in response.iter_bytes():
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
                return
            for line in response.iter_lines():
                with lock or contextlib.nullcontext():
                    print(f"{prefix} | {line}", flush=True)
    except httpx.ConnectError as exc:
        raise CliError(f"cannot reach the API at {client.base_url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise CliError(f"{task_id}: the log stream failed: {exc}") from None
