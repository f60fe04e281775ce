"""Property-based bad input (hypothesis): whatever a client sends, the config path answers with a
result or a ConfigError/ConfigSyntaxError, never anything else; and whatever it accepts round-trips,
holds no control characters outside the fields that allow TAB and LF, and stays within every bound,
the JSON schema (so the OpenAPI document) included."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jsonschema_rs
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import defaults
from shared.config import (
    CONTROL,
    CONTROL_BUT_TAB_LF,
    DNS_LABEL,
    DOCKER_NAME,
    ENV_ITEM,
    EXTRA_HOST,
    HTTP_PATH,
    IMAGE_REF,
    LISTEN_ADDR,
    MAX_SERVICES_BYTES,
    MAX_SPEC_BYTES,
    VOLUME,
    Config,
    ConfigError,
    ServiceSpec,
    load_config,
    validate_config,
    validate_service,
)
from shared.document import ConfigSyntaxError, load_json, load_yaml

# Random, not derandomized: a counterexample found on any run is a real bug, and hypothesis prints
# it (with the seed to replay it). No example database, so no run depends on what an earlier one saw.
PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

FORBIDDEN = re.compile(f"[{CONTROL}]")
FORBIDDEN_IN_SCRIPTS = re.compile(f"[{CONTROL_BUT_TAB_LF}]")
SPEC_SCHEMA = jsonschema_rs.validator_for(ServiceSpec.model_json_schema())
CONFIG_SCHEMA = jsonschema_rs.validator_for(Config.model_json_schema())

# -- strategies ------------------------------------------------------------------------------------

SPECIAL_TEXT = [
    "", " ", "nl\n", "web\n", "\nweb", "web\r\n", "we\x00b", "\x1b[2J", "\u2028", "\u2029", "\x85", "\x7f",
    "²", "١٢", "８０", "0x10", "1_000", "1:30", "yes", "no", "on", "off", "~", "null", ".inf", ".nan", "NaN",
    "-", "-web", "web-", "Web", "a" * 64, "a" * 513, "/", "//", "/..", "/a/../b", "/a/", ".", "..",
    "/health check", "/h\r\nX: 1", "%zz", "a=b", "=b", "A\n=b", "A=b\x00", "A=line\nline\tx",
    "vol:/data", "/:/host", "/a:/b:ro", "/a:/b:rx", "v\n:/d", "h:1.2.3.4", "h:host-gateway", "h:fe80::1%eth0",
    "1.1.1.1", "::1", ":8080", ":²", "[::1]:8080", "localhost:80", "\ud800", "\U0001F600",
]
SPECIAL_NUMBERS = [
    -1, 0, 1, 5, 30, 65535, 65536, 10_000, 10_001, 86_400, 86_401, 2**24, 2**40, 2**40 + 1, 2**63, -(2**63),
    10**12, 10**400, -(10**400), 1.5, 5.0, 100.0, 100.1, math.nan, math.inf, -math.inf, 1e300, True, False,
]

hostile_text = st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(max_size=40), st.text(st.characters(), max_size=8))
hostile_number = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS), st.integers(), st.floats(), st.integers(-(10**20), 10**20)
)
scalars = st.one_of(st.none(), st.booleans(), hostile_number, hostile_text)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(hostile_text, st.sampled_from(list(ServiceSpec.model_fields))), children, max_size=4),
    ),
    max_leaves=20,
)


# What command items and env values may hold: anything but control characters and U+2028/9, or TAB/LF.
script_text = st.text(
    st.one_of(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), st.sampled_from("\t\n")), max_size=20
)


def text_matching(pattern: str, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True).filter(lambda text: len(text) <= max_size)


def either(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = documents) -> st.SearchStrategy[Any]:
    """Mostly good values (so that accepted specs are common), one in ten anything at all."""
    return st.integers(0, 9).flatmap(lambda choice: bad if choice == 0 else good)


ports = st.fixed_dictionaries(
    {"container_port": either(st.integers(1, 65535), hostile_number)},
    optional={
        "host_port": either(st.integers(0, 65535) | st.none(), hostile_number),
        "protocol": either(st.sampled_from(["tcp", "udp"]), hostile_text),
    },
)
extra_hosts = st.builds(
    "{}:{}".format, text_matching(r"^[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?$"),
    st.one_of(st.ip_addresses().map(str), st.just("host-gateway")),
)
health_checks = st.fixed_dictionaries(
    {},
    optional={
        "type": either(st.sampled_from(["http", "tcp", "command"]), hostile_text),
        "http_path": either(text_matching(HTTP_PATH), hostile_text),
        "port": either(st.integers(1, 65535), hostile_number),
        "command": either(st.lists(script_text, min_size=1, max_size=3), st.lists(hostile_text)),
        "interval": either(st.integers(1, 86_400), hostile_number),
        "timeout": either(st.integers(0, 86_400), hostile_number),
        "retries": either(st.integers(0, 100), hostile_number),
    },
)
services = st.fixed_dictionaries(
    {
        "service_name": either(text_matching(DNS_LABEL, 63), hostile_text),
        "image": either(text_matching(IMAGE_REF), hostile_text),
        "replicas": either(st.integers(0, 10), hostile_number),
    },
    optional={
        "ports": either(st.lists(ports, max_size=3)),
        "env": either(st.lists(text_matching(ENV_ITEM), max_size=3), st.lists(hostile_text, max_size=3)),
        "command": either(st.lists(script_text, min_size=1, max_size=3), st.lists(hostile_text)),
        "volumes": either(st.lists(text_matching(VOLUME, 60), max_size=3), st.lists(hostile_text, max_size=3)),
        "network": either(text_matching(DOCKER_NAME), hostile_text),
        "network_mode": either(st.sampled_from(["bridge", "host", "none"]), hostile_text),
        "dns": either(st.lists(st.ip_addresses().map(str), max_size=3), st.lists(hostile_text, max_size=3)),
        "extra_hosts": either(st.lists(extra_hosts, max_size=3), st.lists(text_matching(EXTRA_HOST, 80), max_size=3)),
        "restart_policy": either(st.sampled_from(["no", "always", "on-failure", "unless-stopped"]), scalars),
        "resources": either(st.fixed_dictionaries({
            "cpu_millicores": either(st.integers(5, 1_000_000), hostile_number),
            "memory_bytes": either(st.integers(2**24, 2**40), hostile_number),
        })),
        "scale_policy": either(st.fixed_dictionaries({}, optional={
            "min_replicas": either(st.integers(1, 3), hostile_number),
            "max_replicas": either(st.integers(3, 10), hostile_number),
            "target_cpu": either(st.floats(5, 100), hostile_number),
            "target_memory": either(st.floats(10, 100), hostile_number),
            "cooldown_seconds": either(st.integers(30, 86_400), hostile_number),
        })),
        "health_check": either(health_checks),
    },
)
configs = st.fixed_dictionaries(
    {"services": either(st.lists(services, max_size=3))},
    optional={
        "env": either(st.sampled_from(["local", "dev", "prod"]), scalars),
        "listen_addr": either(text_matching(LISTEN_ADDR), hostile_text),
        "data_dir": either(st.text(max_size=20), hostile_text),
        "cluster_name": either(text_matching(DNS_LABEL, 63), hostile_text),
    },
)

# -- invariants of whatever is accepted ------------------------------------------------------------


def strings_in(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for key, sub in value.items() for item in strings_in(sub, f"{path}.{key}")]
    if isinstance(value, list):
        return [item for index, sub in enumerate(value) for item in strings_in(sub, f"{path}[{index}]")]
    return []


def check_accepted_service(spec: ServiceSpec) -> None:
    dumped = spec.model_dump(mode="json")
    assert ServiceSpec.model_validate(dumped) == spec
    assert ServiceSpec.model_validate_json(spec.model_dump_json()) == spec
    assert SPEC_SCHEMA.is_valid(dumped), list(SPEC_SCHEMA.iter_errors(dumped))[:3]
    for path, text in strings_in(dumped):
        if re.fullmatch(r"\.(command|health_check\.command)\[\d+\]", path):
            assert not FORBIDDEN_IN_SCRIPTS.search(text), (path, text)
        elif re.fullmatch(r"\.env\[\d+\]", path):
            key, _, value = text.partition("=")
            assert not FORBIDDEN.search(key) and not FORBIDDEN_IN_SCRIPTS.search(value), (path, text)
        else:
            assert not FORBIDDEN.search(text), (path, text)
    assert 0 <= spec.replicas <= defaults.MAX_REPLICAS
    assert 0 <= spec.cpu_request() <= defaults.MAX_CPU_MILLICORES
    assert 0 <= spec.memory_request() <= defaults.MAX_MEMORY_BYTES
    assert all(1 <= port.container_port <= 65535 and 0 <= port.host_port <= 65535 for port in spec.ports)
    if spec.health_check:
        check = spec.health_check
        assert max(check.interval, check.effective_timeout()) <= defaults.MAX_HEALTH_SECONDS
        assert check.retries <= defaults.MAX_HEALTH_RETRIES
    if spec.scale_policy:
        policy = spec.scale_policy
        assert policy.min_replicas <= spec.max_replicas() <= defaults.MAX_REPLICAS
        assert policy.cooldown_seconds <= defaults.MAX_COOLDOWN_SECONDS
        assert all(math.isfinite(target) for target in (policy.target_cpu, policy.target_memory) if target is not None)
    assert len(spec.model_dump_json().encode()) <= MAX_SPEC_BYTES


def check_accepted_config(config: Config) -> None:
    dumped = config.model_dump(mode="json")
    assert Config.model_validate(dumped) == config
    assert CONFIG_SCHEMA.is_valid(dumped), list(CONFIG_SCHEMA.iter_errors(dumped))[:3]
    for path, text in strings_in({key: value for key, value in dumped.items() if key != "services"}):
        assert not FORBIDDEN.search(text), (path, text)
    assert len(json.dumps(dumped["services"], separators=(",", ":"))) <= MAX_SERVICES_BYTES
    for spec in config.services:
        check_accepted_service(spec)


def validated(data: Any) -> None:
    """validate_config gives a Config that keeps every invariant, or errors that fit in a response."""
    try:
        config = validate_config(data)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(line, str) and line for line in exc.errors)
        json.dumps(exc.errors, ensure_ascii=False).encode("utf-8")
        return
    except ConfigSyntaxError as exc:
        str(exc).encode("utf-8")
        return
    check_accepted_config(config)


# -- properties ------------------------------------------------------------------------------------


@PROPERTY
@given(services)
def test_any_service_is_accepted_whole_or_refused_with_config_errors(data: dict[str, Any]) -> None:
    try:
        spec = validate_service(data)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(line, str) and line for line in exc.errors)
        json.dumps(exc.errors, ensure_ascii=False).encode("utf-8")  # every message fits in a response body
        return
    check_accepted_service(spec)


@PROPERTY
@given(configs)
def test_any_config_is_accepted_whole_or_refused_with_config_errors(data: dict[str, Any]) -> None:
    validated(data)


@PROPERTY
@given(documents)
def test_any_document_gives_a_config_or_a_config_error(data: Any) -> None:
    validated(data)


@PROPERTY
@given(st.one_of(configs, documents))
def test_any_document_written_as_yaml_loads_or_fails_cleanly(data: Any) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return  # not representable in YAML at all (a lone surrogate): nothing a client could send
    try:
        config = load_config(text)
    except (ConfigError, ConfigSyntaxError):
        return
    check_accepted_config(config)


@PROPERTY
@given(st.one_of(configs, documents))
def test_any_document_written_as_json_loads_or_fails_cleanly(data: Any) -> None:
    text = json.dumps(data)  # NaN and Infinity are written as such: load_json must refuse them
    try:
        parsed = load_json(text)
    except ConfigSyntaxError:
        return
    json.dumps(parsed, allow_nan=False)  # what was read can be stored and answered as JSON
    validated(parsed)


YAML_PIECES = [
    "\n", " ", "  ", "- ", ": ", "[", "]", "{", "}", ", ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!str ",
    "!!binary ", "!x ", "? ", "|\n", ">\n", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "\t", "\\", "\\u",
    "services", "service_name", "replicas", "image", "0x10", "yes", "~", "1e3", "1e999", ".inf", "web", "nl\\n",
    "\x00", "\ufeff", "\u2028", "é",
]


@PROPERTY
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=60).map("".join))
def test_any_yaml_text_loads_or_fails_cleanly(text: str) -> None:
    try:
        data = load_yaml(text)
    except ConfigSyntaxError as exc:
        str(exc).encode("utf-8")
        return
    json.dumps(data, allow_nan=False)
    validated(data)


JSON_PIECES = ['{', '}', '[', ']', ',', ':', '"a"', '"services"', '"\\ud800"', '"\\u0000"', '1', '-0', '1e999',
               '1' * 30, 'NaN', 'Infinity', 'true', 'null', ' ', '"', '\\']


@PROPERTY
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(JSON_PIECES), max_size=60).map("".join)))
def test_any_json_text_loads_or_fails_cleanly(text: str) -> None:
    try:
        data = load_json(text)
    except ConfigSyntaxError as exc:
        str(exc).encode("utf-8")
        return
    json.dumps(data, allow_nan=False).encode("utf-8")  # what was read can be stored and answered as JSON
    validated(data)
