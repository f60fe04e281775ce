"""`gorchester plan -f config.yaml` (and `apply --dry-run`): what an apply would do, written nowhere,
as `nomad job plan` shows it. The API computes it with the scheduler's own code on the cluster as it
stands (POST /v1/apply?dry_run=true); this prints it per service: the fields that change, how the
replicas are replaced, where new ones go node by node, and why the rest would wait, node by node.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from cli import render
from cli.client import ApiClient, connection_options, run_client
from cli.configfile import read_text

EXIT_CHANGES = 2  # --detailed-exitcode: the plan changes something (0: nothing, 1: an error)
SIGNS = {"created": "+", "updated": "~", "unchanged": "=", "deleted": "-"}
VALUE_WIDTH = 60  # characters of a changed value shown
CONTEXT = 16  # characters shown before where two texts first differ


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", parents=[connection_options()], help="show what applying a config file would do",
        description="Show what `gorchester apply -f FILE` would do now, writing nothing: per service the "
        "fields that change, how its replicas are replaced, where new ones would be placed and why the "
        "rest would wait, node by node. Apply it with --check-index to refuse it if a service changed since.",
    )
    parser.add_argument("-f", "--config", required=True, metavar="FILE", help="the config.yaml (or one service)")
    parser.add_argument("--prune", action="store_true", help="also show the services FILE does not declare deleted")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help=f"exit {EXIT_CHANGES} when the plan changes something, 0 when not (1 on errors)")
    parser.set_defaults(run=run_client(plan_command))


def plan_command(client: ApiClient, args: argparse.Namespace) -> int:
    changes = show(client, args.config, prune=args.prune, output=args.output)
    return EXIT_CHANGES if args.detailed_exitcode and changes else 0


def show(client: ApiClient, path: str, *, prune: bool, output: str) -> bool:
    """Print the plan of applying the file at `path`; returns whether it changes anything."""
    result = fetch(client, path, prune=prune)
    if output in render.STRUCTURED:
        render.print_data(result, output)
    else:
        print(describe(result, path, prune=prune))
    return any(service["outcome"] != "unchanged" for service in result["services"])


def fetch(client: ApiClient, path: str, *, prune: bool) -> dict[str, Any]:
    params = {"dry_run": "true", **({"prune": "true"} if prune else {})}
    answer: dict[str, Any] = client.request(
        "POST", "/v1/apply", params=params, content=read_text(path), content_type="application/yaml"
    )
    return answer


def describe(result: dict[str, Any], path: str, *, prune: bool = False) -> str:
    """The plan for people: one block per service, then how to apply it."""
    blocks = [block(service) for service in result["services"]] or ["no services"]
    index = result["check_index"]
    command = f"gorchester apply -f {path}{' --prune' if prune else ''} --check-index {index}"
    blocks.append(f"check index: {index}\napply exactly this with: {command} (refused if a service changed since)")
    return "\n\n".join(blocks)


def block(plan: dict[str, Any]) -> str:
    """One service's plan, as lines for people."""
    name, outcome = plan["service"], plan["outcome"]
    versions = f"version {plan['version']}" if plan["version_before"] in (None, plan["version"]) \
        else f"version {plan['version_before']} -> {plan['version']}"
    lines = [f"{SIGNS[outcome]} {name}: {outcome}" + ("" if outcome == "deleted" else f" ({versions})")]
    if outcome == "updated":
        lines += [f"    {change['field']}: {_change(change['before'], change['after'])}" for change in plan["changes"]]
    how = _how(plan)
    if how:
        lines.append(f"    {how}")
    if plan["moves"]:
        lines.append(f"    rebalance: moves {', '.join(plan['moves'])}, one at a time, start-first; the first:")
    for placed in plan["placements"]:
        beside = ", beside the old one until it is ready" if placed["start_first"] else ""
        source = placed["from_node"]
        where = f"from {source} to {placed['node']}" if source not in (None, placed["node"]) else f"on {placed['node']}"
        lines.append(f"    {placed['task']} {placed['why']} {where}{beside}")
    lines += [f"    {task} stopped" for task in plan["stops"]]
    for waiting in plan["pending"]:
        lines.append(f"    {waiting['task']} would wait: {waiting['nodes_fitting']} of {waiting['nodes_total']} nodes "
                     "would take it after this plan's placements")
        lines += [f"        {node['node']}: {'takes it' if node['fits'] else node['reason']}"
                  for node in waiting["nodes"]]
        if len(waiting["nodes"]) < waiting["nodes_total"]:
            lines.append(f"        ({waiting['nodes_total'] - len(waiting['nodes'])} more nodes not listed)")
    return "\n".join(lines)


def _how(plan: dict[str, Any]) -> str:
    rollout = plan["rollout"]
    if plan["update"] == "rolling" and rollout is not None:
        batch = "all at once" if rollout["parallelism"] == 0 else f"{rollout['parallelism']} at a time"
        delay = f", {rollout['delay']}s apart" if rollout["delay"] else ""
        first = "; its first batch:" if plan["placements"] else ""
        return (f"rolling update of {len(rollout['replaced'])} replica(s), {batch}{delay}, {rollout['order']}, "
                f"{rollout['failure_action']} on failure{first}")
    if plan["update"] == "in_place":
        return "in place: no replica is replaced"
    return ""


def _change(before: Any, after: Any) -> str:
    """A field's change: a list's items removed and added, a text from where it first differs."""
    if isinstance(before, list) and isinstance(after, list):
        removed = [item for item in before if item not in after]
        added = [item for item in after if item not in before]
        if not removed and not added:
            return "reordered"
        if all(isinstance(item, str) for item in [*removed, *added]) and len(removed) == len(added) == 1:
            return _change(removed[0], added[0])
        return " ".join([*(f"-{_value(item)}" for item in removed), *(f"+{_value(item)}" for item in added)])
    if isinstance(before, str) and isinstance(after, str):
        same = len(os.path.commonprefix([before, after]))
        if same > CONTEXT:
            before, after = "..." + before[same - CONTEXT:], "..." + after[same - CONTEXT:]
    return f"{_value(before)} => {_value(after)}"


def _value(value: Any) -> str:
    text = "(absent)" if value is None else json.dumps(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."
