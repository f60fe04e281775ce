"""The query and path parameter rules (api/params.py), without a server."""

from __future__ import annotations

import math

import pytest

from api import params
from api.params import InvalidParameters, check_path, check_query


def refusal(items: list[tuple[str, str]], rules: dict[str, params.Rule]) -> list[str]:
    with pytest.raises(InvalidParameters) as caught:
        check_query(items, rules)
    return caught.value.errors


def test_defaults_when_nothing_is_given() -> None:
    assert check_query([], params.EVENTS) == {"since": None, "limit": 500, "service": None, "node": None}
    assert check_query([], params.LOGS) == {"tail": "all", "follow": False}
    assert check_query([], params.APPLY) == {"prune": False, "dry_run": False, "check_index": None}
    assert check_query([], params.UNDO) == {"to_version": None}
    assert check_query([], {}) == {}


def test_values_are_parsed() -> None:
    assert check_query([("limit", "30"), ("service", "web")], params.EVENTS)["limit"] == 30
    assert check_query([("since", "1700000000.5")], params.EVENTS)["since"] == 1700000000.5
    assert check_query([("since", "1.7e9")], params.EVENTS)["since"] == 1.7e9
    iso = check_query([("since", "2024-01-02T03:04:05Z")], params.EVENTS)["since"]
    assert iso == 1704164645.0
    assert check_query([("since", "2024-01-02T03:04:05")], params.EVENTS)["since"] == iso  # no zone: UTC
    assert check_query([("tail", "0"), ("follow", "true")], params.LOGS) == {"tail": 0, "follow": True}
    assert check_query([("tail", "all")], params.LOGS)["tail"] == "all"
    assert check_query([("prune", "false"), ("dry_run", "true"), ("check_index", "0123456789abcdef")], params.APPLY) \
        == {"prune": False, "dry_run": True, "check_index": "0123456789abcdef"}
    assert check_query([("to_version", "3")], params.UNDO) == {"to_version": 3}
    assert check_query([("node", "node-1.example_a")], params.TASKS)["node"] == "node-1.example_a"


@pytest.mark.parametrize(
    ("name", "raw", "rule"),
    [
        ("since", "nan", "unix seconds"),
        ("since", "inf", "unix seconds"),
        ("since", "-1", "unix seconds"),
        ("since", "1e300", "unix seconds"),
        ("since", "1e999", "unix seconds"),
        ("since", "", "unix seconds"),
        ("since", "yesterday", "unix seconds"),
        ("since", "０", "unix seconds"),  # a full-width digit
        ("since", "1969-12-31T23:00:00Z", "unix seconds"),
        ("limit", "²", "an integer from 1 to 10000"),
        ("limit", "", "an integer from 1 to 10000"),
        ("limit", "0", "an integer from 1 to 10000"),
        ("limit", "10001", "an integer from 1 to 10000"),
        ("limit", "-5", "an integer from 1 to 10000"),
        ("limit", "5.0", "an integer from 1 to 10000"),
        ("limit", "9" * 400, "an integer from 1 to 10000"),
        ("service", "Web", "a service name"),
        ("service", "web\n", "a service name"),
        ("service", "", "a service name"),
        ("service", "-web", "a service name"),
    ],
)
def test_bad_event_parameters_name_the_parameter_and_the_rule(name: str, raw: str, rule: str) -> None:
    [line] = refusal([(name, raw)], params.EVENTS)
    assert line.startswith(f"{name}: must be ") and rule in line, line


@pytest.mark.parametrize(
    ("rules", "name", "raw"),
    [
        (params.LOGS, "tail", "²"),
        (params.LOGS, "tail", "-1"),
        (params.LOGS, "tail", "10001"),
        (params.LOGS, "tail", "ALL"),
        (params.LOGS, "follow", "yes"),
        (params.LOGS, "follow", "True"),
        (params.LOGS, "follow", ""),
        (params.APPLY, "prune", "1"),
        (params.APPLY, "dry_run", "yes"),
        (params.APPLY, "check_index", "0123456789ABCDEF"),
        (params.APPLY, "check_index", "0123"),
        (params.UNDO, "to_version", "0"),
        (params.UNDO, "to_version", "1e3"),
        (params.TASKS, "node", "a b"),
        (params.TASKS, "node", "-n1"),
        (params.TASKS, "node", "n" * 254),
        (params.TASKS, "service", "web.1"),
    ],
)
def test_bad_parameters_elsewhere(rules: dict[str, params.Rule], name: str, raw: str) -> None:
    [line] = refusal([(name, raw)], rules)
    assert line.startswith(f"{name}: must be "), line


def test_unknown_and_repeated_parameters_are_refused() -> None:
    assert refusal([("limt", "5")], params.EVENTS) == [
        "limt: unknown query parameter (this endpoint takes limit, node, service, since)"
    ]
    assert refusal([("x", "1")], {}) == ["x: unknown query parameter (this endpoint takes none)"]
    assert refusal([("limit", "1"), ("limit", "9999")], params.EVENTS) == ["limit: given 2 times; give it once"]
    assert refusal([("a\nb", "1")], {})[0].startswith("'a\\nb': unknown")
    assert len(refusal([("x" * 10_000, "1")], {})[0]) < 200
    every = refusal([("limit", "0"), ("since", "nan"), ("what", "")], params.EVENTS)
    assert [line.partition(":")[0] for line in every] == ["limit", "since", "what"]


def test_path_parameters() -> None:
    check_path({"name": "web", "node": "node-1", "task": "web.10000"})
    for name, raw in [
        ("name", "Bad_Name"), ("name", "web\n"), ("name", "a" * 64),
        ("node", "a/b"), ("node", " n1"),
        ("task", "web"), ("task", "web.0"), ("task", "web.01"), ("task", "web.10001"), ("task", "web.²"),
    ]:
        with pytest.raises(InvalidParameters) as caught:
            check_path({name: raw})
        assert caught.value.errors[0].startswith(f"{name}: must be a "), (name, raw)


def test_since_bounds() -> None:
    assert params.since("0") == 0.0
    assert params.since(str(params.MAX_UNIX_SECONDS)) == params.MAX_UNIX_SECONDS
    assert params.since("9999-12-31T23:59:59+00:00") == params.MAX_UNIX_SECONDS
    for raw in (str(params.MAX_UNIX_SECONDS + 1), "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError):
            params.since(raw)
    assert math.isfinite(params.since("." + "9" * 9))
