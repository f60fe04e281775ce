"""The document reader: YAML core-schema scalars, duplicate keys, depth and alias limits, strict JSON,
and request bodies through the API's body path (BodyLimit, read_mapping, the error handlers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.body import BodyLimit, read_mapping
from api.errors import HANDLERS
from shared.config import ConfigError, load_config, validate_config
from shared.document import (
    ALIAS_NODE_BUDGET,
    ALIAS_TEXT_BUDGET,
    MAX_DEPTH,
    ConfigSyntaxError,
    load_json,
    load_yaml,
)


def yaml_error(text: str) -> str:
    with pytest.raises(ConfigSyntaxError) as info:
        load_yaml(text)
    return str(info.value)


def json_error(text: str) -> str:
    with pytest.raises(ConfigSyntaxError) as info:
        load_json(text)
    return str(info.value)


# YAML scalars: the 1.2 core schema

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False),
        ("null", None), ("Null", None), ("NULL", None), ("~", None), ("", None),
        ("0", 0), ("17", 17), ("-5", -5), ("+5", 5), ("007", 7),
        ("2.5", 2.5), ("1.", 1.0), (".5", 0.5), ("1e3", 1000.0), ("-1.5E-2", -0.015),
    ],
)
def test_core_schema_scalars(text: str, value: Any) -> None:
    assert load_yaml(f"a: {text}\n") == {"a": value}


@pytest.mark.parametrize(
    "text",
    ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "0x10", "0o17", "0b101", "1_000", "1:30", "190:20:30",
     ".inf", "-.inf", ".nan", ".NaN", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "=", "nan", "inf"],
)
def test_yaml_1_1_scalars_are_the_strings_they_look_like(text: str) -> None:
    assert load_yaml(f"a: {text}\n") == {"a": text}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!int 0x10\n", "'0x10' is not a decimal integer (line 1)"),
        ("a: !!float .inf\n", "'.inf' is not a decimal number (line 1)"),
        ("a: !!bool yes\n", "'yes' is not true or false (line 1)"),
        ("a: !!null none\n", "'none' is not null (line 1)"),
        ("a: !!binary aGk=\n", "tag tag:yaml.org,2002:binary is not supported (line 1)"),
        ("a: !!timestamp 2001-12-14\n", "tag tag:yaml.org,2002:timestamp is not supported (line 1)"),
        ("a: !!set {x}\n", "tag tag:yaml.org,2002:set is not supported (line 1)"),
        ("a: !!python/object:os.system x\n", "tag tag:yaml.org,2002:python/object:os.system is not supported"),
        ("a: !custom x\n", "tag !custom is not supported (line 1)"),
    ],
)
def test_explicit_tags_are_read_strictly_or_refused(text: str, expected: str) -> None:
    assert expected in yaml_error(text)


def test_core_tags_written_out_work() -> None:
    assert load_yaml("a: !!str 10\nb: !!int '12'\nc: !!float 1\nd: !!bool true\n") == {
        "a": "10", "b": 12, "c": 1.0, "d": True,
    }


def test_replicas_0x10_is_not_an_integer() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("service_name: web\nimage: img\nreplicas: 0x10\n")
    assert info.value.errors == ["services[0].replicas: must be an integer"]


# duplicate keys

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("service_name: a\nimage: b\nreplicas: 1\nreplicas: 2\n", "duplicate key 'replicas' (line 4)"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "duplicate key 'b' (line 4)"),
        ("{a: 1, a: 2}", "duplicate key 'a' (line 1)"),
        ("1: a\n01: b\n", "duplicate key 1 (line 2)"),
        ("'a': 1\n\"a\": 2\n", "duplicate key 'a' (line 2)"),
    ],
)
def test_yaml_duplicate_keys_refused_naming_key_and_line(text: str, expected: str) -> None:
    assert yaml_error(text) == f"not valid YAML: {expected}"


def test_merge_keys_still_work_and_explicit_keys_override_them() -> None:
    text = "base: &base {x: 1, y: 2}\nm:\n  <<: *base\n  x: 3\nn:\n  <<: [*base, {z: 4}]\n"
    assert load_yaml(text) == {"base": {"x": 1, "y": 2}, "m": {"x": 3, "y": 2}, "n": {"x": 1, "y": 2, "z": 4}}


def test_keys_that_differ_by_type_are_distinct() -> None:
    assert load_yaml("'1': a\n1: b\n") == {"1": "a", 1: "b"}


@pytest.mark.parametrize(
    ("text", "key"), [('{"a": 1, "a": 2}', "a"), ('{"x": {"replicas": 1, "replicas": 2}}', "replicas")]
)
def test_json_duplicate_keys_refused_naming_the_key(text: str, key: str) -> None:
    assert json_error(text) == f"not valid JSON: duplicate key {key!r}"


# depth

def deep_block_yaml(levels: int) -> str:
    return "".join("  " * level + "a:\n" for level in range(levels - 1)) + "  " * (levels - 1) + "a: 1\n"


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "{a: " * 100_000, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "- " * 5000 + "x\n",
     deep_block_yaml(1000), deep_block_yaml(MAX_DEPTH + 1)],
    ids=["flow-seq-100000", "flow-map-100000", "flow-33", "block-seq-5000", "block-map-1000", "block-map-33"],
)
def test_yaml_nesting_beyond_the_limit_is_refused(text: str) -> None:
    assert yaml_error(text).startswith(f"nesting deeper than {MAX_DEPTH} levels (line ")


def test_yaml_nesting_at_the_limit_is_read() -> None:
    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert load_yaml(deep_block_yaml(MAX_DEPTH)) is not None


def test_yaml_nesting_through_aliases_counts_expanded() -> None:
    half = MAX_DEPTH // 2 + 1
    text = f"a: &a {'[' * half}{']' * half}\nb: {'[' * half}*a{']' * half}\n"
    assert yaml_error(text).startswith(f"nesting deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"a":' * 100_000, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), '[{"a": ' * 20 + "1" + "}]" * 20],
    ids=["array-100000", "object-100000", "array-33", "mixed-40"],
)
def test_json_nesting_beyond_the_limit_is_refused(text: str) -> None:
    assert json_error(text) == f"nesting deeper than {MAX_DEPTH} levels"


def test_json_brackets_inside_strings_do_not_count() -> None:
    assert load_json(json.dumps({"a": "[" * 1000 + '\\"{{{' + "]"})) == {"a": "[" * 1000 + '\\"{{{' + "]"}
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_json_unclosed_string_full_of_escaped_quotes_is_a_syntax_error() -> None:
    assert json_error('"' + '\\"' * 100_000).startswith("not valid JSON: Unterminated string")


# aliases

def command_alias_bomb(aliases: int = 2500, length: int = 5500) -> str:
    """The reproduced shape: one long string, then thousands of 3-byte aliases to it."""
    return (
        "service_name: bomb\nimage: img\nreplicas: 1\n"
        f"command: [&s {'x' * length}, {', '.join(['*s'] * aliases)}]\n"
    )


def test_the_18_kb_alias_bomb_is_refused() -> None:
    text = command_alias_bomb()
    assert len(text) <= 18 * 1024
    assert yaml_error(text).startswith("aliases expand the document by ")
    assert f"characters; at most {ALIAS_TEXT_BUDGET}" in yaml_error(text)


def test_nested_aliases_are_counted_without_expanding_them() -> None:
    """Billion laughs: 9 levels of 10 aliases each is 10^9 nodes; counted in linear time."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    message = yaml_error("\n".join(lines) + "\n")
    assert message.startswith("aliases expand the document by ") and f"nodes; at most {ALIAS_NODE_BUDGET}" in message


def test_merge_key_chains_are_counted_too() -> None:
    """Each level merges the previous one 10 times: PyYAML's merge would copy 10^10 pairs."""
    lines = ["m0: &m0 {k: v}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}], k{i}: v}}" for i in range(1, 11)]
    assert yaml_error("\n".join(lines) + "\n").startswith("aliases expand the document by ")


def test_aliases_within_the_budget_are_expanded() -> None:
    config = load_config(
        "services:\n"
        "  - service_name: a\n    image: img\n    replicas: 1\n"
        "    env: &env [A=1, B=2]\n    resources: &res {cpu_millicores: 100, memory_bytes: 16777216}\n"
        "  - service_name: b\n    image: img\n    replicas: 1\n    env: *env\n    resources: *res\n"
    )
    assert config.services[0].env == config.services[1].env == ["A=1", "B=2"]
    assert config.services[1].resources == config.services[0].resources


def test_many_aliases_of_a_small_node_are_within_the_budget() -> None:
    text = f"command: [&s x, {', '.join(['*s'] * (ALIAS_NODE_BUDGET - 1))}]\n"
    assert len(load_yaml(text)["command"]) == ALIAS_NODE_BUDGET


def test_one_alias_past_the_node_budget_is_refused() -> None:
    text = f"command: [&s x, {', '.join(['*s'] * (ALIAS_NODE_BUDGET + 1))}]\n"
    expected = f"aliases expand the document by {ALIAS_NODE_BUDGET + 1} nodes; at most {ALIAS_NODE_BUDGET}"
    assert yaml_error(text) == expected


def test_an_alias_to_a_node_containing_it_is_refused() -> None:
    assert "an alias refers to a node containing it" in yaml_error("a: &a [1, *a]\n")
    assert "an alias refers to a node containing it" in yaml_error("a: &a {b: *a}\n")


def test_a_large_document_without_aliases_is_not_limited_by_the_alias_budget() -> None:
    text = "items:\n" + "".join(f"  - item-{index}\n" for index in range(3 * ALIAS_NODE_BUDGET))
    assert len(load_yaml(text)["items"]) == 3 * ALIAS_NODE_BUDGET


# JSON specifics and plain syntax errors

@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_refused(constant: str) -> None:
    assert json_error(f'{{"a": {constant}}}') == f"not valid JSON: {constant} is not a JSON number"


def test_json_lone_surrogates_refused_and_pairs_read() -> None:
    assert json_error('{"a": ["\\ud800"]}') == "not valid JSON: '\\ud800' holds a lone surrogate"
    assert json_error('{"\\udc00": 1}') == "not valid JSON: '\\udc00' holds a lone surrogate"
    assert load_json('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001F600"}


def test_yaml_lone_surrogate_escape_refused() -> None:
    assert yaml_error('a: "\\ud800"\n').startswith("not valid YAML")


@pytest.mark.parametrize("load", [load_json, load_yaml])
def test_integers_too_long_for_int_are_a_syntax_error(load: Any) -> None:
    text = '{"a": ' + "9" * 5000 + "}"
    with pytest.raises(ConfigSyntaxError, match="an integer of 5000 digits is too long"):
        load(text)


@pytest.mark.parametrize("load", [load_json, load_yaml])
@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 400 + ".0"])
def test_numbers_beyond_a_float_are_a_syntax_error(load: Any, number: str) -> None:
    with pytest.raises(ConfigSyntaxError, match="is out of range"):
        load(f'{{"target_cpu": {number}}}')


@pytest.mark.parametrize("load", [load_json, load_yaml])
def test_huge_but_parseable_integers_are_read_for_the_validator_to_bound(load: Any) -> None:
    assert load('{"memory_bytes": 1' + "0" * 400 + "}") == {"memory_bytes": 10**400}


def test_more_than_one_yaml_document_is_refused() -> None:
    assert yaml_error("a: 1\n---\nb: 2\n").startswith("not valid YAML: expected a single document")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_yaml_document_is_none(text: str) -> None:
    assert load_yaml(text) is None


def test_json_syntax_errors() -> None:
    assert json_error('{"a": }').startswith("not valid JSON: Expecting value")


# through the API's body path: 400 with the reason, never 500

def body_app() -> Starlette:
    async def apply(request: Request) -> JSONResponse:
        config = validate_config(await read_mapping(request, "a config"))
        return JSONResponse({"services": [service.service_name for service in config.services]})

    return Starlette(
        routes=[Route("/v1/apply", apply, methods=["POST"])],
        middleware=[Middleware(BodyLimit)],
        exception_handlers=HANDLERS,
    )


SERVICE = '{"service_name": "web", "image": "nginx", "replicas": 1}'


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", "[" * 100_000, "nesting deeper than 32 levels"),
        ("application/yaml", "[" * 100_000, "nesting deeper than 32 levels (line 1)"),
        ("application/yaml", "- " * 5000 + "x\n", "nesting deeper than 32 levels (line 1)"),
        ("application/yaml", command_alias_bomb(), "aliases expand the document by"),
        ("application/json", '{"services": [], "services": []}', "not valid JSON: duplicate key 'services'"),
        ("application/yaml", "services: []\nservices: []\n", "not valid YAML: duplicate key 'services' (line 2)"),
        ("application/json", f'{{"services": [{SERVICE[:-1]}, "replicas": NaN}}]}}', "NaN is not a JSON number"),
        ("application/json", '{"a": "\\ud800"}', "holds a lone surrogate"),
        ("application/json", '{"a": ' + "9" * 5000 + "}", "an integer of 5000 digits is too long"),
    ],
    ids=["json-deep", "yaml-deep-flow", "yaml-depth-5000", "alias-bomb", "json-duplicate", "yaml-duplicate",
         "json-nan", "json-surrogate", "json-long-integer"],
)
def test_hostile_bodies_are_400_with_the_reason(content_type: str, body: str, message: str) -> None:
    with TestClient(body_app(), raise_server_exceptions=False) as client:
        response = client.post("/v1/apply", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed"
    assert message in response.json()["message"]


def test_a_good_body_still_reads() -> None:
    with TestClient(body_app()) as client:
        response = client.post("/v1/apply", content=SERVICE, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (200, {"services": ["web"]})
