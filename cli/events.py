"""`gorchester events [--follow]`: the cluster's event log, once or as it grows, until Ctrl-C.

Following polls /v1/events?since=<newest seen> once a second. `since` is inclusive and to the
millisecond, so each poll may repeat the newest events; they are dropped by comparing event ids
(Redis stream ids, ordered `ms-seq`), which never skips one written in the same millisecond.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from typing import Any

from cli import render
from cli.arguments import positive
from cli.client import ApiClient, connection_options, run_client
from shared.event_kinds import EventKind

POLL_INTERVAL = 1.0
POLL_LIMIT = "10000"  # the API's maximum: a busy second must not lose events between polls
# The type column of a followed line: as wide as the longest kind, so every message starts in one column.
KIND_WIDTH = max(len(kind) for kind in EventKind)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "events", parents=[connection_options()], help="show the event log, or follow it with --follow",
        description="Print recent events; with --follow keep printing new ones until Ctrl-C.",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing events as they come")
    parser.add_argument("--service", metavar="NAME", help="only events about this service")
    parser.add_argument("--since", metavar="TIME", help="events from TIME on (unix seconds or ISO 8601)")
    parser.add_argument(
        "--limit", type=positive, default=50, metavar="N", help="recent events shown first (default 50)"
    )
    parser.set_defaults(run=run_client(events_command))


def events_command(client: ApiClient, args: argparse.Namespace) -> int:
    events = client.get("/v1/events", since=args.since, service=args.service, limit=str(args.limit))
    if not args.follow:
        render.emit(events, args.output, render.events_table, no_headers=args.no_headers,
                    wide=functools.partial(render.events_table, wide=True))
        return 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how following is meant to end
        follow(client, args, events)
    return 0


def follow(client: ApiClient, args: argparse.Namespace, events: list[dict[str, Any]]) -> None:
    """Print `events`, then every newer one as it appears; returns only by an exception."""
    newest: tuple[int, int] = (0, 0)
    while True:
        for event in events:
            if stream_id(event["id"]) > newest:
                show(event, args.output)
                newest = stream_id(event["id"])
        time.sleep(POLL_INTERVAL)
        since = f"{newest[0] / 1000:.3f}" if newest != (0, 0) else args.since
        events = client.get("/v1/events", since=since, service=args.service, limit=POLL_LIMIT)


def stream_id(text: str) -> tuple[int, int]:
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def show(event: dict[str, Any], output: str) -> None:
    if output == "json":
        render.print_json(event, compact=True)  # one JSON object per line, for `| jq` pipelines
    else:
        print(line(event), flush=True)


def line(event: dict[str, Any]) -> str:
    """One event as one line, for following: the table's columns, aligned. Two spaces always follow the
    type, so a kind this client does not know yet (a newer API's, longer) still never runs into the message."""
    when, kind, message = render.event_row(event)
    return f"{when}  {kind:<{KIND_WIDTH}}  {message}"
