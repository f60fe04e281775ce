"""`gorchester rollout status|history|undo|pause|resume SERVICE`, and following rollouts (`wait`, which
`apply --wait` uses too).

Whether a change to a service has rolled out is judged from its view (`GET /v1/services`), as
`kubectl rollout status` judges a Deployment (`verdict`, pure: the views in, a verdict out). A
service a change created, or changed without a new template (its replicas), is rolled out when it
runs its desired replicas, all healthy. One whose template changed rolls out that version in a
rolling update (the view's `update`): not before the update completes, and never when it is rolled
back or paused. A service the change deleted is rolled out once it is gone.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from cli import render
from cli.actions import report
from cli.arguments import seconds, whole_number
from cli.client import ApiClient, CliError, connection_options, path, run_client

POLL_INTERVAL = 1.0  # seconds between looks at /v1/services while waiting
DEFAULT_TIMEOUT = 120.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    common = connection_options()
    rollout = subparsers.add_parser(
        "rollout", help="follow, list, pause, resume or undo a service's rolling updates",
        description="A service's rolling updates, as `kubectl rollout` and `docker service rollback`.",
    )
    commands = rollout.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    status = commands.add_parser(
        "status", parents=[common], help="wait until the service's rollout completes",
        description="Wait until NAME runs its current version: its rolling update completed, its replicas "
        "running and healthy. Exit 1, saying why, when the update is rolled back or paused, the service "
        "fails, or the timeout passes.",
    )
    status.add_argument("name", metavar="NAME", help="the service")
    status.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"how long to wait (default {DEFAULT_TIMEOUT:g})")
    status.set_defaults(run=run_client(status_command))
    history = commands.add_parser(
        "history", parents=[common], help="the versions of the service's template kept",
        description="Each version of NAME's template kept (the last 10): when, why, the fields it changed "
        "and how its rolling update ended.",
    )
    history.add_argument("name", metavar="NAME", help="the service")
    history.set_defaults(run=run_client(history_command))
    undo = commands.add_parser(
        "undo", parents=[common], help="roll an earlier version's template out again",
        description="A rolling update of NAME back to the template of version N (default: the one before "
        "the current), as a new version; replicas, autoscaling and rollout controls stay as they are.",
    )
    undo.add_argument("name", metavar="NAME", help="the service")
    undo.add_argument("--to-version", type=whole_number, metavar="N", help="the version (see rollout history)")
    undo.set_defaults(run=run_client(undo_command))
    for verb, meaning in (("pause", "stop replacing replicas in the rolling update under way"),
                          ("resume", "go on with a paused rolling update (a failed replica is replaced again)")):
        command = commands.add_parser(verb, parents=[common], help=meaning, description=f"{meaning[0].upper()}"
                                      f"{meaning[1:]}: service NAME.")
        command.add_argument("name", metavar="NAME", help="the service")
        command.set_defaults(run=run_client(pause_command), verb=verb)


def status_command(client: ApiClient, args: argparse.Namespace) -> int:
    view = client.get(path("services", args.name))
    update = view.get("update")
    rolling = update is not None and update["state"] in ("updating", "paused")
    wait(client, {args.name: update["version"] if rolling else view["version"]}, args.timeout,
         quiet=args.output in render.STRUCTURED)
    if args.output in render.STRUCTURED:
        render.print_data(client.get(path("services", args.name)), args.output)
    return 0


def history_command(client: ApiClient, args: argparse.Namespace) -> int:
    render.emit(client.get(path("services", args.name, "history")), args.output, history_table)
    return 0


def history_table(history: dict[str, Any]) -> Any:
    rows = [
        [str(entry["version"]), render.moment(entry["at"]), entry["cause"] + (f" ({entry['reason']})"
         if entry["reason"] else ""), ", ".join(entry["changed"]) or "-",
         entry["outcome"] + (f": {entry['outcome_reason']}" if entry["outcome_reason"] else "")]
        for entry in history["versions"]
    ]
    title = f"{history['service']}: the last {history['kept']} versions of its template are kept"
    return render.table(["VERSION", "WHEN", "CAUSE", "CHANGED", "OUTCOME"], rows, title=title)


def undo_command(client: ApiClient, args: argparse.Namespace) -> int:
    params = {"to_version": str(args.to_version)} if args.to_version is not None else None
    service = client.request("POST", path("services", args.name, "undo"), params=params)
    report(service, args.output, f"service {args.name}: rolling update to version {service['version']} started "
           f"(follow it with `gorchester rollout status {args.name}`)")
    return 0


def pause_command(client: ApiClient, args: argparse.Namespace) -> int:
    service = client.post(path("services", args.name, args.verb))
    update = service["update"]
    sentence = f"service {args.name}: rolling update to version {update['version']} {update['state']}"
    report(service, args.output, sentence)
    return 0


@dataclass(frozen=True)
class Verdict:
    name: str
    done: bool
    progress: str  # `web updating 1/3`, `web 2/3 running, 1 healthy`
    failure: str | None = None  # why it will not roll out without another change

    @property
    def line(self) -> str:
        return f"{self.name}: {self.failure}" if self.failure else self.progress


def verdict(name: str, view: dict[str, Any] | None, version: int | None) -> Verdict:
    """The rollout of `version` of service `name` (None: the change deleted it), from its view (None:
    no such service)."""
    if version is None:
        return Verdict(name, view is None, f"{name} deleted" if view is None else f"{name} deleting")
    if view is None:
        return Verdict(name, False, f"{name} gone", "deleted while rolling out")
    status = view["status"]
    if status["health"] == "failed":
        return Verdict(name, False, f"{name} failed", f"failed: {status['reason']}")
    update = view.get("update")
    if update is not None and update["version"] >= version:
        if update["state"] == "rolled_back":
            return Verdict(name, False, f"{name} rolled back", f"rolled back: {update['reason']}")
        if update["state"] == "paused":
            return Verdict(name, False, f"{name} paused", f"paused: {update['reason']} "
                           f"(go on with `gorchester rollout resume {name}`)")
        if update["state"] == "updating":
            return Verdict(name, False, f"{name} updating {update['updated_replicas']}/{update['total']}")
    desired, running, healthy = status["desired_replicas"], status["running_replicas"], status["healthy_replicas"]
    done = running == desired and healthy == desired
    return Verdict(name, done, f"{name} {running}/{desired} running" + ("" if healthy == running else
                                                                          f", {healthy} healthy"))


def wait(client: ApiClient, wanted: dict[str, int | None], timeout: float, *, quiet: bool = False) -> None:
    """Poll until each service rolled out the version given (None: until it is gone); print progress
    to stderr when it changes; CliError when one will not roll out, or on timeout."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        views = {view["service_name"]: view for view in client.get("/v1/services")}
        verdicts = [verdict(name, views.get(name), version) for name, version in sorted(wanted.items())]
        short = [v for v in verdicts if not v.done]
        line = ", ".join(v.progress for v in verdicts)
        if line != shown and not quiet:
            print(f"waiting: {line}" if short else f"ready: {line or 'nothing changed'}", file=sys.stderr, flush=True)
            shown = line
        failed = [v for v in verdicts if v.failure]
        if failed:
            raise CliError(f"{len(failed)} service(s) will not roll out", [v.line for v in failed])
        if not short:
            return
        if time.monotonic() >= deadline:
            raise CliError(f"timed out after {timeout:g}s: {len(short)} service(s) not rolled out",
                           [why_short(client, views[v.name]) if v.name in views else v.line for v in short])
        time.sleep(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0)))


def why_short(client: ApiClient, service: dict[str, Any]) -> str:
    """One line per short service, with the reasons its pending or failed tasks give."""
    name = service["service_name"]
    if service["deleting"]:
        return f"{name}: still being deleted"
    status = service["status"]
    head = f"{name}: {status['running_replicas']}/{status['desired_replicas']} running"
    tasks = client.get("/v1/tasks", service=name)
    reasons = sorted({
        f"{task['id']} {task['state']}: {task.get('reason') or 'no reason given'}"
        for task in tasks if task["state"] in ("pending", "failed")
    })
    if reasons:
        return f"{head} ({'; '.join(reasons)})"
    if not tasks:
        return f"{head} (no tasks yet: is the scheduler running?)"
    states = ", ".join(sorted({task["state"] for task in tasks}))
    return f"{head} (tasks {states})"
