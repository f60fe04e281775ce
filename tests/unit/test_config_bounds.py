"""Hostile values in every field (issue 11): control characters, whole-string patterns, upper bounds
on every number, length and count, stored size, and a JSON schema that shows all of it."""

from __future__ import annotations

from typing import Any

import pytest

from shared import defaults
from shared.config import (
    MAX_SERVICES_BYTES,
    MAX_SPEC_BYTES,
    Config,
    ConfigError,
    ServiceSpec,
    load_config,
    validate_config,
    validate_service,
)

SERVICE = {"service_name": "web", "image": "nginx:alpine", "replicas": 1}
CONTROL = "must not contain control characters"


def service(**fields: Any) -> dict[str, Any]:
    return {**SERVICE, **fields}


def errors(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return info.value.errors


def service_errors(**fields: Any) -> list[str]:
    return errors({"services": [service(**fields)]})


def accepted(**fields: Any) -> ServiceSpec:
    return validate_config({"services": [service(**fields)]}).services[0]


# control characters and whole-string patterns

# Where each string field lives, as (fields of the service, path in the error); `{}` is the value.
STRING_FIELDS = [
    (lambda v: {"service_name": v}, "service_name", "web"),
    (lambda v: {"image": v}, "image", "nginx:alpine"),
    (lambda v: {"env": [v]}, "env[0]", "KEY=value"),
    (lambda v: {"env": ["A=1", f"{v}=1"]}, "env[1]", "KEY"),
    (lambda v: {"network": v}, "network", "qnet"),
    (lambda v: {"extra_hosts": [v]}, "extra_hosts[0]", "db:10.0.0.1"),
    (lambda v: {"extra_hosts": [f"{v}:10.0.0.1"]}, "extra_hosts[0]", "db"),
    (lambda v: {"volumes": [v]}, "volumes[0]", "data:/data"),
    (lambda v: {"volumes": [f"{v}:/data"]}, "volumes[0]", "vol"),
    (lambda v: {"volumes": [f"/srv/{v}:/data"]}, "volumes[0]", "dir"),
    (lambda v: {"volumes": [f"vol:/data/{v}:ro"]}, "volumes[0]", "dir"),
    (lambda v: {"dns": [v]}, "dns[0]", "1.1.1.1"),
    (lambda v: {"command": ["sh", v]}, "command[1]", "run"),
    (lambda v: {"health_check": {"port": 80, "http_path": v}}, "health_check.http_path", "/health"),
    (lambda v: {"health_check": {"command": [v]}}, "health_check.command[0]", "true"),
]
ROOT_STRING_FIELDS = [("cluster_name", "prod"), ("data_dir", "/var/lib/gorchester"), ("listen_addr", ":8080")]
# C0 (NUL, TAB, LF, CR, ESC), DEL, C1 (0x80, NEL, 0x9F), U+2028, U+2029.
CONTROLS = ["\x00", "\t", "\n", "\r", "\x1b", "\x7f", "\x80", "\x85", "\x9f", "\u2028", "\u2029"]
# TAB and LF are allowed in command items and env values (not keys); nothing else is.
SCRIPT_FIELDS = {"command[1]", "health_check.command[0]"}


def allows(path: str, character: str, value: str) -> bool:
    key, _, env_value = value.partition("=")
    in_env_value = path == "env[0]" and character in env_value and character not in key
    return character in "\t\n" and (path in SCRIPT_FIELDS or in_env_value)


@pytest.mark.parametrize("character", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize(("fields", "path", "good"), STRING_FIELDS, ids=[path for _, path, _ in STRING_FIELDS])
def test_control_characters_refused_in_every_service_string(fields: Any, path: str, good: str, character: str) -> None:
    for value in (good + character, character + good, good[:1] + character + good[1:]):
        if allows(path, character, value):
            accepted(**fields(value))
        else:
            assert service_errors(**fields(value)) == [f"services[0].{path}: {CONTROL}"], repr(value)


@pytest.mark.parametrize("character", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize(("field", "good"), ROOT_STRING_FIELDS)
def test_control_characters_refused_in_every_root_string(field: str, good: str, character: str) -> None:
    assert errors({"services": [SERVICE], field: good + character}) == [f"{field}: {CONTROL}"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"service_name": "nl\n"}, "service_name"),
        ({"image": "nginx:alpine\n"}, "image"),
        ({"env": ["KEY\n=1"]}, "env[0]"),
        ({"network": "qnet\n"}, "network"),
        ({"extra_hosts": ["db\n:10.0.0.1"]}, "extra_hosts[0]"),
        ({"extra_hosts": ["db:10.0.0.1\n"]}, "extra_hosts[0]"),
        ({"volumes": ["vol\n:/data"]}, "volumes[0]"),
    ],
    ids=["service_name", "image", "env-key", "network", "extra_hosts-host", "extra_hosts-ip", "volume-name"],
)
def test_the_reproduced_trailing_newlines_are_refused(fields: dict[str, Any], path: str) -> None:
    assert service_errors(**fields) == [f"services[0].{path}: {CONTROL}"]
    with pytest.raises(ConfigError):
        validate_service(service(**fields))


def test_the_reproduced_trailing_newline_in_cluster_name_is_refused() -> None:
    assert errors({"services": [SERVICE], "cluster_name": "prod\n"}) == [f"cluster_name: {CONTROL}"]


def test_trailing_newline_in_a_yaml_quoted_name_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config('service_name: "nl\\n"\nimage: img\nreplicas: 1\n')
    assert info.value.errors == [f"services[0].service_name: {CONTROL}"]


def test_scripts_and_pem_values_keep_tabs_and_newlines() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\tx\n-----END CERTIFICATE-----\n"
    spec = accepted(
        command=["sh", "-c", "set -e\nfor i in 1 2; do\n\techo $i\ndone\n"],
        env=[f"CERT={pem}", "EMPTY="],
        health_check={"command": ["sh", "-c", "test -f /ready &&\n  exit 0"]},
    )
    assert spec.env[0] == f"CERT={pem}"


def test_nul_is_refused_even_where_newlines_are_allowed() -> None:
    assert service_errors(command=["a\x00b"]) == [f"services[0].command[0]: {CONTROL}"]
    assert service_errors(env=["A=a\x00b"]) == [f"services[0].env[0]: {CONTROL}"]


def test_a_control_character_in_an_unknown_key_is_shown_escaped() -> None:
    assert errors({"services": [service(**{"bad\nkey": 1})]}) == ["services[0].'bad\\nkey': unknown field"]


@pytest.mark.parametrize("value", [b"nginx", bytearray(b"nginx")])
def test_strings_must_be_strings_not_bytes(value: Any) -> None:
    assert service_errors(image=value) == ["services[0].image: must be a string"]


# numbers

@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resources": {"cpu_millicores": 100, "memory_bytes": 10**400}},
         f"resources.memory_bytes: must be at most {2**40}"),
        ({"resources": {"cpu_millicores": 100, "memory_bytes": 2**40 + 1}},
         f"resources.memory_bytes: must be at most {2**40}"),
        ({"resources": {"cpu_millicores": 1_000_001, "memory_bytes": 2**24}},
         "resources.cpu_millicores: must be at most 1000000"),
        ({"health_check": {"port": 80, "interval": 10**12}}, "health_check.interval: must be at most 86400"),
        ({"health_check": {"port": 80, "timeout": 10**12}}, "health_check.timeout: must be at most 86400"),
        ({"health_check": {"port": 80, "retries": 101}}, "health_check.retries: must be at most 100"),
        ({"scale_policy": {"cooldown_seconds": 86_401}}, "scale_policy.cooldown_seconds: must be at most 86400"),
        ({"scale_policy": {"min_replicas": 10_001}}, "scale_policy.min_replicas: must be at most 10000"),
        ({"scale_policy": {"max_replicas": 10_001}}, "scale_policy.max_replicas: must be at most 10000"),
        ({"scale_policy": {"target_cpu": float("nan")}}, "scale_policy.target_cpu: must be a finite number"),
        ({"scale_policy": {"target_cpu": float("inf")}}, "scale_policy.target_cpu: must be a finite number"),
        ({"scale_policy": {"target_memory": float("-inf")}}, "scale_policy.target_memory: must be a finite number"),
        ({"replicas": 10**400}, "replicas: must be at most 10000"),
        ({"ports": [{"container_port": 10**400}]}, "ports[0].container_port: must be at most 65535"),
        ({"ports": [{"container_port": 80, "host_port": 65536}]}, "ports[0].host_port: must be at most 65535"),
        ({"health_check": {"port": 65536}}, "health_check.port: must be at most 65535"),
    ],
    ids=["memory-10**400", "memory-1TiB+1", "cpu", "interval-10**12", "timeout-10**12", "retries", "cooldown",
         "min_replicas", "max_replicas", "target_cpu-nan", "target_cpu-inf", "target_memory--inf", "replicas",
         "container_port", "host_port", "health-port"],
)
def test_every_number_has_an_upper_bound(fields: dict[str, Any], expected: str) -> None:
    assert service_errors(**fields) == [f"services[0].{expected}"]


def test_the_upper_bounds_themselves_are_accepted() -> None:
    spec = accepted(
        replicas=10_000,
        resources={"cpu_millicores": defaults.MAX_CPU_MILLICORES, "memory_bytes": defaults.MAX_MEMORY_BYTES},
        scale_policy={"min_replicas": 10_000, "max_replicas": 10_000, "cooldown_seconds": 86_400},
        health_check={"port": 65535, "interval": 86_400, "timeout": 86_400, "retries": 100},
    )
    assert spec.memory_request() == 2**40


def test_memory_10_to_the_400_from_yaml_text_is_refused() -> None:
    text = f"service_name: web\nimage: img\nreplicas: 1\nresources:\n  cpu_millicores: 100\n  memory_bytes: {10**400}\n"
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert info.value.errors == [f"services[0].resources.memory_bytes: must be at most {2**40}"]


@pytest.mark.parametrize(
    "addr", [":²", ":٨٠", ":８０", ": 80", ":80 ", ":+80", ":8_0", ":080000", "host name:80", "::1:80", "[::1]"]
)
def test_listen_addr_port_is_ascii_digits(addr: str) -> None:
    assert errors({"services": [SERVICE], "listen_addr": addr}) == [
        "listen_addr: must be HOST:PORT or :PORT with a port from 1 to 65535"
    ]


@pytest.mark.parametrize("addr", ["[::1]:8080", "localhost:80", "0.0.0.0:65535", ":1", "api.example.com:443"])
def test_listen_addr_accepted(addr: str) -> None:
    assert validate_config({"services": [SERVICE], "listen_addr": addr}).listen_addr == addr


# health checks that could never pass

@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/health check", "must be a URL path"),
        ("/health\r\nX-Injected: 1", CONTROL),
        ("/health\n", CONTROL),
        ("/%zz", "must be a URL path"),
        ("/a#fragment", "must be a URL path"),
        ("/é", "must be a URL path"),
        ("health", "must start with '/'"),
        ("/" + "a" * 2048, "must be at most 2048 characters"),
    ],
    ids=["space", "crlf", "newline", "bad-percent", "fragment", "non-ascii", "relative", "too-long"],
)
def test_http_path_must_be_an_origin_form_path(path: str, expected: str) -> None:
    (line,) = service_errors(health_check={"port": 80, "http_path": path})
    assert line.startswith(f"services[0].health_check.http_path: {expected}"), line


@pytest.mark.parametrize("path", ["/", "/health", "/api/v1/health?full=1&x=%20y", "/a:b@c/~user/(x)!$'*+,;="])
def test_http_paths_accepted(path: str) -> None:
    accepted(health_check={"port": 80, "http_path": path})


# lengths and counts

@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"image": "a" * 513}, "image: must be at most 512 characters"),
        ({"network": "n" * 65}, "network: must be at most 64 characters"),
        ({"env": [f"K{i}=v" for i in range(1001)]}, "env: must have at most 1000 items"),
        ({"env": ["K=" + "v" * 32 * 1024]}, "env[0]: must be at most 32768 characters"),
        ({"command": ["x"] * 1001}, "command: must have at most 1000 items"),
        ({"command": ["x" * (32 * 1024 + 1)]}, "command[0]: must be at most 32768 characters"),
        ({"health_check": {"command": ["x"] * 1001}}, "health_check.command: must have at most 1000 items"),
        ({"ports": [{"container_port": 1 + i % 65535} for i in range(1001)]}, "ports: must have at most 1000 items"),
        ({"volumes": [f"v{i}:/d{i}" for i in range(101)]}, "volumes: must have at most 100 items"),
        ({"dns": ["1.1.1.1"] * 17}, "dns: must have at most 16 items"),
        ({"extra_hosts": ["h:1.1.1.1"] * 1001}, "extra_hosts: must have at most 1000 items"),
    ],
    ids=["image", "network", "env-count", "env-item", "command-count", "command-item", "health-command-count",
         "ports", "volumes", "dns", "extra_hosts"],
)
def test_every_length_and_count_has_a_bound(fields: dict[str, Any], expected: str) -> None:
    assert service_errors(**fields) == [f"services[0].{expected}"]


def test_services_per_config_bounded() -> None:
    data = {"services": [service(service_name=f"s{i}") for i in range(1001)]}
    assert errors(data) == ["services: must have at most 1000 items"]


def test_data_dir_length_bounded() -> None:
    expected = ["data_dir: must be at most 4096 characters"]
    assert errors({"services": [SERVICE], "data_dir": "/" + "d" * 4096}) == expected


def test_a_spec_over_256_kib_as_json_is_refused_naming_the_service() -> None:
    env = [f"K{i}=" + "v" * 30_000 for i in range(9)]
    (line,) = service_errors(env=env)
    assert line.startswith(f"services[0]: service 'web': must be at most {MAX_SPEC_BYTES} bytes as JSON, got ")
    with pytest.raises(ConfigError) as info:
        validate_service(service(env=env))
    assert info.value.errors[0].startswith("service 'web': must be at most")


def test_a_config_over_1_mib_of_services_is_refused() -> None:
    env = [f"K{i}=" + "v" * 30_000 for i in range(8)]  # about 240 KB each, within the per-service bound
    data = {"services": [service(service_name=f"s{i}", env=env) for i in range(5)]}
    (line,) = errors(data)
    assert line.startswith(f"services: must be at most {MAX_SERVICES_BYTES} bytes as JSON, got ")


# volumes: normalised absolute paths

@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        ("/srv/../etc:/data", "host path must be normalised"),
        ("/srv/./x:/data", "host path must be normalised"),
        ("//srv:/data", "host path must be normalised"),
        ("/srv/:/data", "host path must be normalised"),
        ("/srv:/data/", "container path must be normalised"),
        ("/srv:/data/..", "container path must be normalised"),
        ("/srv:/", "container path must not be /"),
        ("v" * 65 + ":/data", "source must be an absolute host path or a volume name"),
        ("/" + "s" * 4096 + ":/data", "host path must be at most 4096 characters"),
        ("/srv:/" + "d" * 4096, "container path must be at most 4096 characters"),
    ],
)
def test_volume_paths_absolute_and_normalised(volume: str, expected: str) -> None:
    (line,) = service_errors(volumes=[volume])
    assert line.startswith("services[0].volumes: ") and expected in line, line


@pytest.mark.parametrize("volume", ["/:/host", "/srv/...:/data", "/.hidden:/x:ro", "v" * 64 + ":/data", "a.b-c_d:/d"])
def test_volume_paths_accepted(volume: str) -> None:
    accepted(volumes=[volume])


@pytest.mark.parametrize("address", ["fe80::1%eth0", "1.1.1.1.1", "::g"])
def test_dns_and_extra_hosts_need_plain_ip_addresses(address: str) -> None:
    assert service_errors(dns=[address]) == [f"services[0].dns: {address!r}: must be an IP address"]
    (line,) = service_errors(extra_hosts=[f"db:{address}"])
    assert line.startswith("services[0].extra_hosts: ")


# the JSON schema (and so the OpenAPI document) shows every bound

def schema_leaves(schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if "$ref" in schema:
        return schema_leaves(defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    if "anyOf" in schema:
        return [leaf for option in schema["anyOf"] for leaf in schema_leaves(option, defs, path)]
    if schema.get("type") == "object":
        return [leaf for name, sub in schema.get("properties", {}).items()
                for leaf in schema_leaves(sub, defs, f"{path}.{name}")]
    if schema.get("type") == "array":
        return [(path, schema)] + schema_leaves(schema["items"], defs, f"{path}[]")
    return [(path, schema)]


def test_every_field_in_the_schema_is_bounded() -> None:
    schema = Config.model_json_schema()
    unbounded = []
    for path, leaf in schema_leaves(schema, schema["$defs"]):
        kind = leaf.get("type")
        if kind == "string" and "enum" not in leaf and "const" not in leaf:
            pattern = leaf.get("pattern", "")
            if not (pattern.startswith("^") and pattern.endswith("$")):
                unbounded.append(f"{path}: pattern")
            if "maxLength" not in leaf and path not in (".services[].service_name", ".cluster_name"):
                unbounded.append(f"{path}: maxLength")  # DNS labels: 63 by the pattern
        elif kind in ("integer", "number") and "maximum" not in leaf:
            unbounded.append(f"{path}: maximum")
        elif kind == "array" and "maxItems" not in leaf:
            unbounded.append(f"{path}: maxItems")
    assert unbounded == []
