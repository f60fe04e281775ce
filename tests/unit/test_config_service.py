"""One test per service rule of the seed README, asserting the exact `path: rule` line(s)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import (
    ConfigError,
    HealthCheckType,
    RestartPolicy,
    load_config,
    parse_volume,
    validate_config,
    validate_service,
)

DROP = object()  # a field value meaning "leave this field out"
DNS_LABEL_RULE = "must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"


def service(**fields: Any) -> dict[str, Any]:
    data = {"service_name": "web", "image": "nginx:alpine", "replicas": 1, **fields}
    return {key: value for key, value in data.items() if value is not DROP}


def errors(**fields: Any) -> list[str]:
    """The error lines of a config holding the one service `fields` describe."""
    with pytest.raises(ConfigError) as info:
        validate_config({"services": [service(**fields)]})
    return info.value.errors


def accepted(**fields: Any) -> None:
    validate_config({"services": [service(**fields)]})


def line(rule: str) -> list[str]:
    return [f"services[0].{rule}"]


# resources

@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"cpu_millicores": 4, "memory_bytes": 16777216}, "resources.cpu_millicores: must be at least 5"),
        ({"cpu_millicores": 0, "memory_bytes": 16777216}, "resources.cpu_millicores: must be at least 5"),
        ({"cpu_millicores": 5, "memory_bytes": 16777215}, "resources.memory_bytes: must be at least 16777216"),
    ],
)
def test_resources_minimums(resources: dict[str, int], expected: str) -> None:
    assert errors(resources=resources) == line(expected)


def test_resources_minimums_themselves_are_accepted() -> None:
    accepted(resources={"cpu_millicores": 5, "memory_bytes": 16 * 1024 * 1024})


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, ["resources.cpu_millicores: is required", "resources.memory_bytes: is required"]),
        ({"memory_bytes": 16777216}, ["resources.cpu_millicores: is required"]),
        ({"cpu_millicores": 500}, ["resources.memory_bytes: is required"]),
    ],
)
def test_resources_fields_required_when_resources_given(resources: dict[str, int], expected: list[str]) -> None:
    assert errors(resources=resources) == [f"services[0].{rule}" for rule in expected]


# ports

@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ({"container_port": 0}, "ports[0].container_port: must be at least 1"),
        ({"container_port": 65536}, "ports[0].container_port: must be at most 65535"),
        ({"host_port": 8080}, "ports[0].container_port: is required"),
        ({"container_port": 80, "host_port": -1}, "ports[0].host_port: must be at least 0"),
        ({"container_port": 80, "host_port": 65536}, "ports[0].host_port: must be at most 65535"),
        ({"container_port": 80, "protocol": "sctp"}, "ports[0].protocol: must be one of tcp or udp"),
        ({"container_port": 80, "protocol": "TCP"}, "ports[0].protocol: must be one of tcp or udp"),
    ],
)
def test_port_ranges_and_protocol(port: dict[str, Any], expected: str) -> None:
    assert errors(ports=[port]) == line(expected)


@pytest.mark.parametrize(
    "port",
    [
        {"container_port": 1},
        {"container_port": 65535, "host_port": 65535},
        {"container_port": 80, "host_port": 0},
        {"container_port": 53, "protocol": "udp"},
    ],
)
def test_port_bounds_accepted(port: dict[str, Any]) -> None:
    accepted(ports=[port])


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (
            [{"host_port": 8080, "container_port": 80}, {"host_port": 8080, "container_port": 81}],
            "ports: host_port 8080/tcp is published twice",
        ),
        (
            [{"host_port": 53, "container_port": 53, "protocol": "udp"},
             {"host_port": 53, "container_port": 54, "protocol": "udp"}],
            "ports: host_port 53/udp is published twice",
        ),
        (
            [{"host_port": 8080, "container_port": 80}, {"host_port": 8081, "container_port": 80}],
            "ports: container_port 80/tcp is mapped twice",
        ),
        ([{"container_port": 80}, {"container_port": 80}], "ports: container_port 80/tcp is mapped twice"),
    ],
)
def test_duplicate_ports_in_one_service(ports: list[dict[str, Any]], expected: str) -> None:
    assert errors(ports=ports) == line(expected)


@pytest.mark.parametrize(
    "ports",
    [
        [{"host_port": 53, "container_port": 53}, {"host_port": 53, "container_port": 53, "protocol": "udp"}],
        [{"host_port": 0, "container_port": 80}, {"host_port": 0, "container_port": 81}],
        [{"container_port": 80}, {"container_port": 81}],
    ],
    ids=["same-port-tcp-and-udp", "two-random-host-ports", "host-port-absent-twice"],
)
def test_distinct_ports_accepted(ports: list[dict[str, Any]]) -> None:
    accepted(ports=ports)


# service_name

def test_service_name_required() -> None:
    assert errors(service_name=DROP) == line("service_name: is required")


@pytest.mark.parametrize(
    "name",
    ["Web", "web_server", "-web", "web-", "a" * 64, "", "web.server", "web server"],
    ids=["uppercase", "underscore", "leading-dash", "trailing-dash", "64-chars", "empty", "dot", "space"],
)
def test_service_name_must_be_dns_label(name: str) -> None:
    assert errors(service_name=name) == line(f"service_name: {DNS_LABEL_RULE}")


@pytest.mark.parametrize("name", ["a", "web-server", "0db", "a" * 63, "api-v2"])
def test_service_name_dns_labels_accepted(name: str) -> None:
    accepted(service_name=name)


# image

@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (DROP, "image: is required"),
        ("", "image: must not be empty"),
        ("nginx alpine", "image: must be an image reference such as nginx:alpine or registry/repo:tag"),
    ],
    ids=["absent", "empty", "space"],
)
def test_image_required_and_non_empty(image: Any, expected: str) -> None:
    assert errors(image=image) == line(expected)


@pytest.mark.parametrize(
    "image", ["nginx:alpine", "postgres:15-alpine", "myapp/api:latest", "ghcr.io/org/app:1.5.0", "redis@sha256:abc"]
)
def test_image_references_accepted(image: str) -> None:
    accepted(image=image)


# replicas

@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        (DROP, "replicas: is required"),
        (-1, "replicas: must be at least 0"),
        (10_001, "replicas: must be at most 10000"),
        (1.5, "replicas: must be an integer"),
        ("3", "replicas: must be an integer"),
        ("three", "replicas: must be an integer"),
        (True, "replicas: must be an integer"),
        (None, "replicas: must be an integer"),
    ],
    ids=["absent", "negative", "above-10000", "float", "numeric-string", "string", "bool", "null"],
)
def test_replicas_required_non_negative_integer(replicas: Any, expected: str) -> None:
    assert errors(replicas=replicas) == line(expected)


def test_replicas_zero_accepted() -> None:
    accepted(replicas=0)


# scale_policy

@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"min_replicas": 0}, "scale_policy.min_replicas: must be at least 1"),
        ({"max_replicas": 0}, "scale_policy.max_replicas: must be at least 1"),
        ({"target_cpu": 4.9}, "scale_policy.target_cpu: must be at least 5.0"),
        ({"target_cpu": 100.1}, "scale_policy.target_cpu: must be at most 100.0"),
        ({"target_memory": 9.9}, "scale_policy.target_memory: must be at least 10.0"),
        ({"target_memory": 101}, "scale_policy.target_memory: must be at most 100.0"),
        ({"cooldown_seconds": 29}, "scale_policy.cooldown_seconds: must be at least 30"),
        ({"min_replicas": 3, "max_replicas": 2}, "scale_policy: min_replicas (3) must not exceed max_replicas (2)"),
    ],
)
def test_scale_policy_bounds(policy: dict[str, Any], expected: str) -> None:
    assert errors(replicas=2, scale_policy=policy) == line(expected)


@pytest.mark.parametrize(
    ("replicas", "policy"),
    [
        (1, {"min_replicas": 1, "max_replicas": 1, "target_cpu": 5, "target_memory": 10, "cooldown_seconds": 30}),
        (1, {"target_cpu": 100, "target_memory": 100.0}),
        (2, {"min_replicas": 2, "max_replicas": 2}),
    ],
    ids=["minimums", "maximums", "min-equals-max"],
)
def test_scale_policy_bounds_accepted(replicas: int, policy: dict[str, Any]) -> None:
    accepted(replicas=replicas, scale_policy=policy)


@pytest.mark.parametrize(
    ("replicas", "policy", "bounds"),
    [
        (1, {"min_replicas": 2, "max_replicas": 5}, "min_replicas 2, max_replicas 5"),
        (6, {"min_replicas": 2, "max_replicas": 5}, "min_replicas 2, max_replicas 5"),
        (1, {"min_replicas": 3}, "min_replicas 3, max_replicas 3"),
        (0, {}, "min_replicas 1, max_replicas 1"),
    ],
    ids=["below-min", "above-max", "below-min-no-max", "zero-with-policy"],
)
def test_replicas_within_scale_policy(replicas: int, policy: dict[str, Any], bounds: str) -> None:
    expected = f"services[0].replicas: must be within scale_policy [{bounds}], got {replicas}"
    assert errors(replicas=replicas, scale_policy=policy) == [expected]


@pytest.mark.parametrize(
    ("replicas", "policy"), [(2, {"min_replicas": 2, "max_replicas": 5}), (5, {"max_replicas": 5}), (7, {})]
)
def test_replicas_within_scale_policy_accepted(replicas: int, policy: dict[str, Any]) -> None:
    accepted(replicas=replicas, scale_policy=policy)


# health_check

@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ({"type": "grpc", "port": 80}, "health_check.type: must be one of http, tcp or command"),
        ({"type": "http"}, "health_check: http_path, port required for type http"),
        ({"type": "http", "http_path": "/health"}, "health_check: port required for type http"),
        ({"type": "http", "port": 80}, "health_check: http_path required for type http"),
        ({"type": "tcp"}, "health_check: port required for type tcp"),
        ({"type": "tcp", "http_path": "/health"}, "health_check: port required for type tcp"),
        ({"type": "command"}, "health_check: command required for type command"),
        ({"type": "command", "command": []}, "health_check.command: must not be empty"),
        ({"type": "http", "http_path": "health", "port": 80}, "health_check.http_path: must start with '/'"),
        ({"port": 0}, "health_check.port: must be at least 1"),
        ({"port": 65536}, "health_check.port: must be at most 65535"),
        ({"port": 80, "interval": 0}, "health_check.interval: must be at least 1"),
        ({"port": 80, "timeout": -1}, "health_check.timeout: must be at least 0"),
        ({"port": 80, "retries": -1}, "health_check.retries: must be at least 0"),
        ({}, "health_check: type is required (http, tcp or command) when it cannot be inferred"),
        ({"interval": 30}, "health_check: type is required (http, tcp or command) when it cannot be inferred"),
    ],
)
def test_health_check_rules(check: dict[str, Any], expected: str) -> None:
    assert errors(health_check=check) == line(expected)


def test_health_check_minimums_accepted() -> None:
    accepted(health_check={"type": "tcp", "port": 1, "interval": 1, "timeout": 0, "retries": 0})


@pytest.mark.parametrize(
    ("check", "kind"),
    [
        ({"command": ["true"]}, HealthCheckType.COMMAND),
        ({"http_path": "/health", "port": 8080}, HealthCheckType.HTTP),
        ({"port": 5432}, HealthCheckType.TCP),
        ({"type": "tcp", "port": 80}, HealthCheckType.TCP),
    ],
)
def test_health_check_type_inferred_when_absent(check: dict[str, Any], kind: HealthCheckType) -> None:
    health = validate_config({"services": [service(health_check=check)]}).services[0].health_check
    assert health is not None
    assert health.type == check.get("type")
    assert health.inferred_type() is kind


def test_health_check_inferred_http_still_needs_port() -> None:
    assert errors(health_check={"http_path": "/health"}) == line("health_check: port required for type http")


# volumes

@pytest.mark.parametrize(
    ("text", "mount"),
    [
        ("/var/www:/usr/share/nginx/html", ("/var/www", "/usr/share/nginx/html", False, False)),
        ("app_data:/data", ("app_data", "/data", False, True)),
        ("/config:/etc/app:ro", ("/config", "/etc/app", True, False)),
        ("/config:/etc/app:rw", ("/config", "/etc/app", False, False)),
        ("cache.v1:/cache:ro", ("cache.v1", "/cache", True, True)),
    ],
    ids=["bind", "named", "read-only", "read-write", "named-read-only"],
)
def test_volume_formats_accepted(text: str, mount: tuple[str, str, bool, bool]) -> None:
    parsed = parse_volume(text)
    assert (parsed.source, parsed.target, parsed.read_only, parsed.named) == mount
    accepted(volumes=[text])


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        (["/a:/b:rx"], "'/a:/b:rx': mode must be ro or rw, got 'rx'"),
        (["/a:b"], "'/a:b': container path must be absolute"),
        (["data:relative/path"], "'data:relative/path': container path must be absolute"),
        (["./a:/b"], "'./a:/b': source must be an absolute host path or a volume name"),
        (["my vol:/b"], "'my vol:/b': source must be an absolute host path or a volume name"),
        ([":/b"], "':/b': source must be an absolute host path or a volume name"),
        (["/a"], "'/a': must be SOURCE:TARGET or SOURCE:TARGET:ro"),
        (["/a:/b:ro:x"], "'/a:/b:ro:x': must be SOURCE:TARGET or SOURCE:TARGET:ro"),
        (["/a:/data", "vol:/data:ro"], "'/data': mounted more than once"),
    ],
    ids=["bad-mode", "relative-target", "relative-target-named", "relative-source", "bad-name", "empty-source",
         "one-part", "four-parts", "same-target-twice"],
)
def test_volume_rules(volumes: list[str], expected: str) -> None:
    assert errors(volumes=volumes) == line(f"volumes: {expected}")


# env

@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (["FOO"], "'FOO': must be KEY=value with KEY of letters, digits, '_', '.' or '-'"),
        (["=value"], "'=value': must be KEY=value with KEY of letters, digits, '_', '.' or '-'"),
        (["1FOO=x"], "'1FOO=x': must be KEY=value with KEY of letters, digits, '_', '.' or '-'"),
        (["MY VAR=x"], "'MY VAR=x': must be KEY=value with KEY of letters, digits, '_', '.' or '-'"),
        (["A=1", "B=2", "A=3"], "'A': set more than once"),
    ],
    ids=["no-equals", "empty-key", "digit-first", "space-in-key", "duplicate-key"],
)
def test_env_rules(env: list[str], expected: str) -> None:
    assert errors(env=env) == line(f"env: {expected}")


@pytest.mark.parametrize("env", [["A="], ["URL=a=b=c"], ["_X=1", "a.b-c=1"], ["LOG_LEVEL=debug"]])
def test_env_accepted(env: list[str]) -> None:
    accepted(env=env)


# network, network_mode

@pytest.mark.parametrize("network", ["bad net", "-net", "", "net/work"])
def test_network_name(network: str) -> None:
    assert errors(network=network) == line("network: must be a Docker network name (letters, digits, '_', '.', '-')")


@pytest.mark.parametrize("network", ["gorchester-network", "my_net.1", "Net2"])
def test_network_name_accepted(network: str) -> None:
    accepted(network=network)


def test_network_mode_enum() -> None:
    assert errors(network_mode="overlay") == line("network_mode: must be one of bridge, host or none")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"network_mode": "host", "ports": [{"container_port": 80}]},
         "ports: cannot be published with network_mode host"),
        ({"network_mode": "none", "ports": [{"container_port": 80}]},
         "ports: cannot be published with network_mode none"),
        ({"network_mode": "host", "network": "net"}, "network: cannot be set with network_mode host"),
        ({"network_mode": "none", "network": "net"}, "network: cannot be set with network_mode none"),
    ],
)
def test_ports_or_network_rejected_with_host_or_none(fields: dict[str, Any], expected: str) -> None:
    assert errors(**fields) == line(expected)


@pytest.mark.parametrize(
    "fields",
    [
        {"network_mode": "host"},
        {"network_mode": "none"},
        {"network_mode": "bridge", "network": "net", "ports": [{"container_port": 80}]},
    ],
)
def test_network_modes_accepted(fields: dict[str, Any]) -> None:
    accepted(**fields)


# dns, extra_hosts

@pytest.mark.parametrize("dns", ["dns.google", "8.8.8", "", "8.8.8.8:53"])
def test_dns_must_be_ip_addresses(dns: str) -> None:
    assert errors(dns=["1.1.1.1", dns]) == line(f"dns: {dns!r}: must be an IP address")


def test_dns_accepted() -> None:
    accepted(dns=["8.8.8.8", "2001:4860:4860::8888"])


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("myhost", "'myhost': must be HOST:IP or HOST:host-gateway"),
        (":10.0.0.1", "':10.0.0.1': must be HOST:IP or HOST:host-gateway"),
        ("bad_host:10.0.0.1", "'bad_host:10.0.0.1': must be HOST:IP or HOST:host-gateway"),
        ("db:example.com", "'db:example.com': 'example.com' is neither an IP address nor host-gateway"),
        ("db:", "'db:': '' is neither an IP address nor host-gateway"),
    ],
)
def test_extra_hosts_format(entry: str, expected: str) -> None:
    assert errors(extra_hosts=[entry]) == line(f"extra_hosts: {expected}")


def test_extra_hosts_accepted() -> None:
    accepted(extra_hosts=["host.docker.internal:host-gateway", "db:10.0.0.5", "v6:::1"])


# restart_policy

@pytest.mark.parametrize("policy", ["never", "on_failure", "Always", True, False])
def test_restart_policy_enum(policy: Any) -> None:
    assert errors(restart_policy=policy) == line(
        "restart_policy: must be one of no, always, on-failure or unless-stopped"
    )


@pytest.mark.parametrize("policy", ["no", "always", "on-failure", "unless-stopped"])
def test_restart_policy_values_accepted(policy: Any) -> None:
    accepted(restart_policy=policy)


def test_restart_policy_unquoted_no_in_yaml_is_the_string_no() -> None:
    """YAML 1.1 read `no` as false; the config reader's core schema reads it as the string it looks like."""
    config = load_config("service_name: web\nimage: img\nreplicas: 1\nrestart_policy: no\n")
    assert config.services[0].restart_policy is RestartPolicy.NO


# command

@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], "command: must not be empty"),
        ("npm start", "command: must be a list"),
        ([1], "command[0]: must be a string"),
    ],
)
def test_command_must_be_non_empty_list_of_strings(command: Any, expected: str) -> None:
    assert errors(command=command) == line(expected)


# validate_service on its own (the API validates one service at a time)

def test_validate_service_without_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        validate_service(service(replicas=-1))
    assert info.value.errors == ["replicas: must be at least 0"]


def test_validate_service_with_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        validate_service(service(replicas=-1, bogus=1), prefix=("services", 2))
    assert info.value.errors == ["services[2].replicas: must be at least 0", "services[2].bogus: unknown field"]


def test_validate_service_returns_the_spec() -> None:
    assert validate_service(service()).service_name == "web"


def test_validate_service_names_replicas_for_the_scale_policy_rule() -> None:
    with pytest.raises(ConfigError) as info:
        validate_service(service(replicas=9, scale_policy={"min_replicas": 2, "max_replicas": 5}))
    assert info.value.errors == ["replicas: must be within scale_policy [min_replicas 2, max_replicas 5], got 9"]


def test_host_port_null_means_random_like_absent():
    from shared.config import load_config

    config = load_config("service_name: web\nimage: img\nreplicas: 1\nports:\n  - host_port:\n    container_port: 80\n")
    assert config.services[0].ports[0].host_port == 0
