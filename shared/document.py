"""Config documents (YAML or JSON text) as plain data, with limits that hold before anything is built.

A request body is at most 1 MiB, but what it parses to is not bounded by that: YAML aliases repeat
a node without repeating its text (an 18 KB body became a 20 MB service), and deep nesting costs
the recursive parts (PyYAML's composer, the JSON decoder) their stack and seconds of CPU. So every
config path (API bodies, `gorchester validate|apply|up`, `python -m scheduler --config`) reads
documents here, and:

- nesting deeper than MAX_DEPTH collections is refused: for YAML while composing (with aliases
  expanded), for JSON by a linear scan before the decoder sees the text;
- aliases may add at most ALIAS_NODE_BUDGET nodes and ALIAS_TEXT_BUDGET characters of scalar text
  to what is written; both are counted over the composed graph, each node once, before anything
  is constructed (as go-yaml bounds alias expansion for Kubernetes);
- duplicate keys are refused (both specs say keys are unique; PyYAML and `json` keep the last);
- YAML scalars resolve as YAML 1.2's core schema does, not YAML 1.1's: booleans are only
  true/false (True, TRUE, False, FALSE), null only null/Null/NULL/~/empty, integers only decimal,
  floats only decimal with an optional exponent. `0x10`, `0o17`, `1_000`, `1:30`, `yes`, `no`,
  `on`, `off`, `y`, `n`, `.inf`, `.nan` and timestamps are the strings they look like; tags beyond
  the core ones (`!!binary`, `!!timestamp`, `!!set`, ...) are refused;
- JSON refuses NaN, Infinity and -Infinity, and strings holding a lone surrogate (`"\\ud800"`),
  which no UTF-8 store or response could hold; neither format gives a number that is infinite
  (`1e999` is refused), nor an integer too long for int() (over 4,300 digits).

YAML is scanned and parsed by libyaml (the pure-Python scanner costs about 4 s of CPU per MiB)
and composed here, in Python, where depth and duplicate keys are checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar

import yaml
from yaml._yaml import CParser
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

MAX_DEPTH = 32  # nested collections (mappings and sequences); a config needs 6
ALIAS_NODE_BUDGET = 10_000  # nodes aliases may add to a YAML document
ALIAS_TEXT_BUDGET = 1024 * 1024  # characters of scalar text aliases may add

MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigSyntaxError(Exception):
    """A document that is not YAML/JSON, goes beyond the limits above, or is not a mapping."""


def load_yaml(text: str) -> Any:
    """The one document in `text` (None when it is empty), or ConfigSyntaxError."""
    reader = _YamlReader(text)
    try:
        node = reader.get_single_node()
        if node is None:
            return None
        if reader.aliased:
            _check_expansion(node)
        return reader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth" and exc.problem_mark:  # libyaml's own limit (1000)
            raise _too_deep(exc.problem_mark.line + 1) from None
        raise ConfigSyntaxError(f"not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"not valid YAML: {exc}") from None
    finally:
        reader.dispose()


def load_json(text: str) -> Any:
    _check_json_depth(text)
    try:
        data = json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_int=_json_int,
            parse_float=_json_float,
        )
    except json.JSONDecodeError as exc:
        raise ConfigSyntaxError(f"not valid JSON: {exc}") from None
    _check_unicode(data)
    return data


# -- YAML ------------------------------------------------------------------------------------------


def _line(node_or_event: Any) -> int:
    return int(node_or_event.start_mark.line) + 1


def _too_deep(line: int | None = None) -> ConfigSyntaxError:
    where = f" (line {line})" if line is not None else ""
    return ConfigSyntaxError(f"nesting deeper than {MAX_DEPTH} levels{where}")


class _CoreResolver(Resolver):
    """YAML 1.2 core schema plain scalars; PyYAML's own resolver is YAML 1.1's."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"(?:true|True|TRUE|false|False|FALSE)\Z", "tTfF"),
    ("tag:yaml.org,2002:null", r"(?:~|null|Null|NULL|)\Z", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+\Z", "-+0123456789"),  # before float: `1` is an int
    ("tag:yaml.org,2002:float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z", "-+.0123456789"),
    (MERGE_TAG, r"<<\Z", "<"),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))

_CORE_INT = re.compile(r"[-+]?[0-9]+")
_CORE_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_CORE_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_CORE_NULL = frozenset({"", "~", "null", "Null", "NULL"})


class _CoreConstructor(SafeConstructor):
    """Only the core schema's tags, each read strictly (an explicit `!!int 0x10` is an error too)."""

    def construct_core_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node)
        if not _CORE_INT.fullmatch(text):
            raise ConfigSyntaxError(f"not valid YAML: {text!r} is not a decimal integer (line {_line(node)})")
        return _integer(text, f"line {_line(node)}")

    def construct_core_float(self, node: ScalarNode) -> float:
        text = self.construct_scalar(node)
        if not _CORE_FLOAT.fullmatch(text):
            raise ConfigSyntaxError(f"not valid YAML: {text!r} is not a decimal number (line {_line(node)})")
        return _finite(text, f"line {_line(node)}")

    def construct_core_bool(self, node: ScalarNode) -> bool:
        text = self.construct_scalar(node)
        if text not in _CORE_BOOL:
            raise ConfigSyntaxError(f"not valid YAML: {text!r} is not true or false (line {_line(node)})")
        return _CORE_BOOL[text]

    def construct_core_null(self, node: ScalarNode) -> None:
        text = self.construct_scalar(node)
        if text not in _CORE_NULL:
            raise ConfigSyntaxError(f"not valid YAML: {text!r} is not null (line {_line(node)})")

    def construct_unsupported(self, node: Node) -> Any:
        raise ConfigSyntaxError(f"not valid YAML: tag {node.tag} is not supported (line {_line(node)})")

    yaml_constructors: ClassVar[dict[str | None, Callable[..., Any]]] = {
        "tag:yaml.org,2002:str": SafeConstructor.construct_yaml_str,
        "tag:yaml.org,2002:seq": SafeConstructor.construct_yaml_seq,
        "tag:yaml.org,2002:map": SafeConstructor.construct_yaml_map,
        "tag:yaml.org,2002:int": construct_core_int,
        "tag:yaml.org,2002:float": construct_core_float,
        "tag:yaml.org,2002:bool": construct_core_bool,
        "tag:yaml.org,2002:null": construct_core_null,
        MERGE_TAG: SafeConstructor.construct_yaml_str,  # `<<` anywhere but as a key is just text
        None: construct_unsupported,  # !!binary, !!timestamp, !!set, !!omap, !!pairs, !custom ...
    }


class _YamlReader(Composer, CParser, _CoreConstructor, _CoreResolver):  # type: ignore[misc]
    """libyaml's events, composed here (Composer comes first, so its Python methods win over
    CParser's C composer) with a depth limit and duplicate keys refused."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        Composer.__init__(self)
        _CoreConstructor.__init__(self)
        _CoreResolver.__init__(self)
        self.depth = 0
        self.aliased = False  # without aliases, what was composed is what gets built

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            self.aliased = True
        return super().compose_node(parent, index)

    def compose_sequence_node(self, anchor: Any) -> SequenceNode:
        self._descend()
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        self._descend()
        try:
            node = super().compose_mapping_node(anchor)
        finally:
            self.depth -= 1
        self._check_unique_keys(node)
        return node

    def _descend(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _too_deep(_line(self.peek_event()))

    def _check_unique_keys(self, node: MappingNode) -> None:
        """Keys written twice in one mapping; keys a merge (`<<`) brings in may be overridden."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue  # a collection as a key fails later, when constructed: unhashable
            key = self.construct_object(key_node)
            if key in seen:
                raise ConfigSyntaxError(f"not valid YAML: duplicate key {key!r} (line {_line(key_node)})")
            seen.add(key)


def _check_expansion(root: Node) -> None:
    """Depth and size with aliases expanded, in time linear in the composed graph."""
    measured: dict[Node, tuple[int, int, int]] = {}  # node -> (nodes, text, height) when expanded
    open_nodes: set[Node] = set()

    def measure(node: Node, level: int) -> tuple[int, int, int]:
        known = measured.get(node)
        if known is None:
            if node in open_nodes:
                raise ConfigSyntaxError(f"not valid YAML: an alias refers to a node containing it (line {_line(node)})")
            open_nodes.add(node)
            known = measured[node] = measure_new(node, level)
            open_nodes.discard(node)
        if level + known[2] > MAX_DEPTH:
            raise _too_deep(_line(node))
        return known

    def measure_new(node: Node, level: int) -> tuple[int, int, int]:
        if isinstance(node, ScalarNode):
            return 1, len(node.value), 0
        if level + 1 > MAX_DEPTH:
            raise _too_deep(_line(node))
        children = node.value if isinstance(node, SequenceNode) else [part for pair in node.value for part in pair]
        nodes, text, height = 1, 0, 0
        for child in children:
            child_nodes, child_text, child_height = measure(child, level + 1)
            nodes, text, height = nodes + child_nodes, text + child_text, max(height, child_height)
        return nodes, text, height + 1

    nodes, text, _ = measure(root, 0)
    added_nodes = nodes - len(measured)
    added_text = text - sum(len(node.value) for node in measured if isinstance(node, ScalarNode))
    if added_nodes > ALIAS_NODE_BUDGET:
        raise ConfigSyntaxError(f"aliases expand the document by {added_nodes} nodes; at most {ALIAS_NODE_BUDGET}")
    if added_text > ALIAS_TEXT_BUDGET:
        raise ConfigSyntaxError(
            f"aliases expand the document by {added_text} characters; at most {ALIAS_TEXT_BUDGET}"
        )


# -- JSON ------------------------------------------------------------------------------------------

# A string, closed or not (an unclosed one is the decoder's error to report); linear, never backtracks.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _check_json_depth(text: str) -> None:
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            raise _too_deep()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigSyntaxError(f"not valid JSON: duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ConfigSyntaxError(f"not valid JSON: {name} is not a JSON number")


def _json_int(text: str) -> int:
    return _integer(text, "JSON")


def _json_float(text: str) -> float:
    return _finite(text, "JSON")


def _check_unicode(value: Any) -> None:
    """A `\\ud800` escape decodes to a lone surrogate, which no UTF-8 text can hold."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigSyntaxError(f"not valid JSON: {value[:40]!r} holds a lone surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key)
            _check_unicode(item)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)


def _integer(text: str, where: str) -> int:
    """int() of ASCII digits, which refuses more than sys.get_int_max_str_digits() of them."""
    try:
        return int(text)
    except ValueError:
        raise ConfigSyntaxError(f"an integer of {len(text)} digits is too long ({where})") from None


def _finite(text: str, where: str) -> float:
    """float() of a decimal number, which is infinite past 1.8e308: no document holds NaN or infinity."""
    value = float(text)
    if math.isinf(value):
        raise ConfigSyntaxError(f"the number {text[:40]} is out of range ({where})")
    return value
