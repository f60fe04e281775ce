"""The rules for query and path parameters: pure, so each is tested alone and the OpenAPI document is
built from the same table the API checks with.

A parameter is checked like a body field: a whole-string pattern (ASCII only: `'²'.isdigit()` is
true in Python, so no rule relies on str.isdigit), bounds, and a 400 that names the parameter and
the rule. Unknown and repeated query parameters are refused too, so a typo is never silently
ignored (`?limt=5`) and `?limit=1&limit=9999` cannot mean two things.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.defaults import MAX_REPLICAS


class InvalidParameters(Exception):
    """Parameters that break their rules; one `name: rule` line each (the API answers 400)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    """How one parameter is read: `parse` gives its value or raises ValueError with the rule broken."""

    parse: Callable[[str], Any]
    schema: dict[str, Any]  # the same rule in JSON Schema, for the OpenAPI document
    description: str
    default: Any = None


def _pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(f"must be {what}")
        return raw

    return parse


# -- the values ---------------------------------------------------------------------------------

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# Node ids are the agent's queue name (`rq worker ... node-1`): short names or host names.
NODE_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}"
# Task ids are `<service>.<slot>`, slots counting from 1 up to the most replicas a service may have.
assert MAX_REPLICAS == 10_000, "TASK_ID spells the largest slot out"
TASK_ID = DNS_LABEL + r"\.([1-9][0-9]{0,3}|10000)"

SERVICE_NAME_RULE = (
    "a service name: a DNS label of 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
)
NODE_ID_RULE = "a node id: 1-253 letters, digits, '.', '_' or '-', starting with a letter or digit"
TASK_ID_RULE = f"a task id: <service name>.<slot>, the slot from 1 to {MAX_REPLICAS}"

service_name = _pattern(DNS_LABEL, SERVICE_NAME_RULE)
node_id = _pattern(NODE_ID, NODE_ID_RULE)
task_id = _pattern(TASK_ID, TASK_ID_RULE)


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", raw) or not low <= int(raw) <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return int(raw)

    return parse


def flag(raw: str) -> bool:
    if raw not in ("true", "false"):
        raise ValueError("must be true or false")
    return raw == "true"


MAX_TAIL = 10_000
_tail_count = integer(0, MAX_TAIL)


def tail(raw: str) -> int | str:
    """`all`, or how many of the last lines."""
    if raw == "all":
        return raw
    try:
        return _tail_count(raw)
    except ValueError:
        raise ValueError(f"must be 'all' or an integer from 0 to {MAX_TAIL}") from None


# The last second of year 9999: past it no ISO 8601 time can be written, so no event is later.
MAX_UNIX_SECONDS = 253_402_300_799
UNIX_SECONDS = r"([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][-+]?[0-9]{1,3})?"  # as repr(float) writes them
# RFC 3339 as the document states it (from 1971 on, so that no zone offset puts it before 1970); the
# API reads any ISO 8601 that Python's fromisoformat reads, from 1970 to the end of 9999.
DATE_TIME = (
    r"(197[1-9]|19[89][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
SINCE_RULE = f"unix seconds (a decimal number from 0 to {MAX_UNIX_SECONDS}) or an ISO 8601 time"


def since(raw: str) -> float:
    """Unix seconds, or ISO 8601 (a time without a zone is taken as UTC); never before 1970 or past 9999."""
    if re.fullmatch(UNIX_SECONDS, raw):
        seconds = float(raw)
    elif raw.isascii() and 0 < len(raw) <= 40 and raw[:1].isdigit():
        try:
            moment = datetime.fromisoformat(raw)
            seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            raise ValueError(f"must be {SINCE_RULE}") from None
    else:
        raise ValueError(f"must be {SINCE_RULE}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_UNIX_SECONDS:
        raise ValueError(f"must be {SINCE_RULE}")
    return seconds


def _string(regex: str, max_length: int) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{regex}$", "minLength": 1, "maxLength": max_length}


BOOLEAN: dict[str, Any] = {"type": "boolean"}

# -- path parameters: one meaning per name, whichever path it is in ----------------------------

PATH: dict[str, Rule] = {
    "name": Rule(service_name, _string(DNS_LABEL, 63), "the service name"),
    "node": Rule(node_id, _string(NODE_ID, 253), "the node id"),
    "task": Rule(task_id, _string(TASK_ID, 69), "the task id: <service>.<slot>, e.g. web.1"),
}

# -- query parameters, per endpoint -------------------------------------------------------------

MAX_EVENTS = 10_000
DEFAULT_EVENTS = 500

SERVICE_FILTER = Rule(service_name, PATH["name"].schema, "only this service's")
EVENTS: dict[str, Rule] = {
    "since": Rule(
        since,
        {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_UNIX_SECONDS},
                   {"type": "string", "pattern": f"^{DATE_TIME}$"}]},
        "events at or after this time: unix seconds or ISO 8601 (RFC 3339 shown)",
    ),
    "limit": Rule(
        integer(1, MAX_EVENTS), {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS},
        f"at most this many, the newest (default {DEFAULT_EVENTS})", default=DEFAULT_EVENTS,
    ),
    "service": Rule(service_name, PATH["name"].schema, "only events about this service"),
    "node": Rule(node_id, PATH["node"].schema, "only events about this node (its own, and its tasks')"),
}
TASKS: dict[str, Rule] = {
    "service": SERVICE_FILTER,
    "node": Rule(node_id, PATH["node"].schema, "only those on this node"),
}
MAX_PLACEMENT_NODES = 1_000
DEFAULT_PLACEMENT_NODES = 100
PLACEMENT: dict[str, Rule] = {
    "limit": Rule(
        integer(1, MAX_PLACEMENT_NODES), {"type": "integer", "minimum": 1, "maximum": MAX_PLACEMENT_NODES},
        f"list at most this many nodes, those that take the task first (default {DEFAULT_PLACEMENT_NODES})",
        default=DEFAULT_PLACEMENT_NODES,
    ),
}
LOGS: dict[str, Rule] = {
    "tail": Rule(
        tail, {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_TAIL}, {"type": "string", "enum": ["all"]}]},
        "'all' (default) or only the last N lines", default="all",
    ),
    "follow": Rule(flag, BOOLEAN, "keep streaming until the container stops or the client leaves", default=False),
}
REMOVE_NODE: dict[str, Rule] = {
    "force": Rule(flag, BOOLEAN, "remove a node that is not down too (its agent, if it runs, joins again)",
                  default=False),
}
MAX_VERSION = 999_999_999
UNDO: dict[str, Rule] = {
    "to_version": Rule(integer(1, MAX_VERSION), {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                       "the version in the service's history to roll out again; absent: the one before the current"),
}
REBALANCE: dict[str, Rule] = {
    "dry_run": Rule(flag, BOOLEAN, "write nothing: answer the plan (every replica it would move, and the first move)",
                    default=False),
}
CHECK_INDEX = r"[0-9a-f]{16}"
APPLY: dict[str, Rule] = {
    "prune": Rule(flag, BOOLEAN, "also remove the services the config does not name", default=False),
    "dry_run": Rule(flag, BOOLEAN, "write nothing: answer the plan (what the apply would change, place and stop)",
                    default=False),
    "check_index": Rule(_pattern(CHECK_INDEX, "a plan's check_index: 16 hex digits (0-9, a-f)"),
                        _string(CHECK_INDEX, 16),
                        "apply only if the services are as the plan with this check_index saw them (409 otherwise)"),
}


# -- checking -----------------------------------------------------------------------------------


def check_path(params: Mapping[str, str]) -> None:
    """Path parameters that cannot be an id are 400 (not 404: no such thing could exist)."""
    errors = []
    for name, raw in params.items():
        try:
            PATH[name].parse(raw)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
    if errors:
        raise InvalidParameters(errors)


def check_query(items: Iterable[tuple[str, str]], rules: Mapping[str, Rule]) -> dict[str, Any]:
    """Every rule's value (its default when not given); unknown, repeated or invalid ones are refused."""
    given: dict[str, list[str]] = {}
    for name, raw in items:
        given.setdefault(name, []).append(raw)
    errors = []
    values = {name: rule.default for name, rule in rules.items()}
    for name, raws in given.items():
        rule = rules.get(name)
        if rule is None:
            takes = f"this endpoint takes {', '.join(sorted(rules))}" if rules else "this endpoint takes none"
            errors.append(f"{_shown(name)}: unknown query parameter ({takes})")
        elif len(raws) > 1:
            errors.append(f"{name}: given {len(raws)} times; give it once")
        else:
            try:
                values[name] = rule.parse(raws[0])
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise InvalidParameters(errors)
    return values


def _shown(name: str) -> str:
    """A client's parameter name as it can be shown in an error line: bounded, control characters escaped."""
    text = name if len(name) <= 64 else name[:64] + "..."
    return text if text.isprintable() else repr(text)
