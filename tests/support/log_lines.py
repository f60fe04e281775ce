"""Read back the processes' log lines (shared/process_logs.py), text or JSON, as a machine would: a line
that does not parse fails the test that reads it."""

from __future__ import annotations

import json
import re
from typing import Any

TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
HEAD = re.compile(rf"({TIME}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (api|scheduler|agent|up) ")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
VALUE = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s"\\=]+')
KEY = re.compile(r"([A-Za-z0-9_.-]+)=")


def _value(token: str) -> Any:
    return json.loads(token) if token.startswith('"') else token


def parse_text(line: str) -> dict[str, Any]:
    """time, level, component, node (or None), message and fields of one text line; ValueError if it is not one."""
    head = HEAD.match(line)
    if head is None:
        raise ValueError(f"not a log line: {line!r}")
    entry: dict[str, Any] = {"time": head[1], "level": head[2], "component": head[3], "node": None}
    rest = line[head.end():]
    if rest.startswith("node="):
        node = VALUE.match(rest, 5)
        if node is None:
            raise ValueError(f"bad node in {line!r}")
        entry["node"] = _value(node[0])
        rest = rest[node.end() + 1:]
    if rest.startswith('"'):
        quoted = QUOTED.match(rest)
        if quoted is None:
            raise ValueError(f"bad message in {line!r}")
        entry["message"], rest = json.loads(quoted[0]), rest[quoted.end():]
    else:  # a bare message runs to the first word with `=`
        words = rest.split(" ")
        first_field = next((i for i, word in enumerate(words) if "=" in word), len(words))
        entry["message"] = " ".join(words[:first_field])
        rest = " " + " ".join(words[first_field:]) if first_field < len(words) else ""
    fields: dict[str, Any] = {}
    position = 0
    while position < len(rest):
        if rest[position] != " ":
            raise ValueError(f"fields must be separated by one space in {line!r}")
        key = KEY.match(rest, position + 1)
        value = VALUE.match(rest, key.end()) if key else None
        if key is None or value is None:
            raise ValueError(f"bad field at {rest[position:]!r} in {line!r}")
        fields[key[1]] = _value(value[0])
        position = value.end()
    entry["fields"] = fields
    return entry


def parse_json(line: str) -> dict[str, Any]:
    """One JSON line as a dict, checked to hold time, level, component, node and message."""
    entry = json.loads(line)
    if not isinstance(entry, dict) or not {"time", "level", "component", "node", "message"} <= entry.keys():
        raise ValueError(f"not a log object: {line!r}")
    if not re.fullmatch(TIME, entry["time"]):
        raise ValueError(f"bad time in {line!r}")
    return entry
