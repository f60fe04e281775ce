"""Root-level rules, unique names, unknown fields, several errors at once, syntax errors and wrong types."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import Config, ConfigError, ConfigSyntaxError, load_config, validate_config

SERVICE = {"service_name": "web", "image": "nginx:alpine", "replicas": 1}


def named(name: str, **fields: Any) -> dict[str, Any]:
    return {**SERVICE, "service_name": name, **fields}


def errors(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return info.value.errors


def root_errors(**fields: Any) -> list[str]:
    return errors({"services": [SERVICE], **fields})


# root fields

@pytest.mark.parametrize("env", ["staging", "Local", "", "test"])
def test_root_env_enum(env: str) -> None:
    assert root_errors(env=env) == ["env: must be one of local, dev, prod, development or production"]


@pytest.mark.parametrize("env", ["local", "dev", "prod", "production"])
def test_root_env_accepted(env: str) -> None:
    assert validate_config({"env": env, "services": [SERVICE]}).env == env


@pytest.mark.parametrize("addr", ["8080", ":0", ":65536", ":http", "localhost", "", "0.0.0.0:"])
def test_root_listen_addr_format_and_port_range(addr: str) -> None:
    assert root_errors(listen_addr=addr) == ["listen_addr: must be HOST:PORT or :PORT with a port from 1 to 65535"]


@pytest.mark.parametrize(
    ("addr", "host_port"),
    [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:9000", ("127.0.0.1", 9000)), ("0.0.0.0:65535", ("0.0.0.0", 65535)),
     (":1", ("0.0.0.0", 1))],
)
def test_root_listen_addr_accepted(addr: str, host_port: tuple[str, int]) -> None:
    assert validate_config({"listen_addr": addr, "services": [SERVICE]}).listen_host_port() == host_port


@pytest.mark.parametrize("name", ["Prod", "prod_1", "-prod", "prod-", "a" * 64, ""])
def test_root_cluster_name_dns_label(name: str) -> None:
    expected = (
        "cluster_name: must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
    )
    assert root_errors(cluster_name=name) == [expected]


def test_root_data_dir_not_blank() -> None:
    assert root_errors(data_dir=" ") == ["data_dir: must not be empty"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"env": "local"}, "services: is required"),
        ({"services": None}, "services: must be a list"),
        ({"services": {"web": SERVICE}}, "services: must be a list"),
        ({"services": ["web"]}, "services[0]: must be a mapping"),
    ],
    ids=["absent", "null", "mapping", "item-not-mapping"],
)
def test_root_services_required_list_of_mappings(data: dict[str, Any], expected: str) -> None:
    assert errors(data) == [expected]


# unique service names

def test_unique_service_names() -> None:
    expected = "services[1].service_name: 'a' is already used by services[0]"
    assert errors({"services": [named("a"), named("a")]}) == [expected]


def test_every_duplicate_name_is_reported_against_its_first_use() -> None:
    data = {"services": [named("a"), named("b"), named("a"), named("b"), named("a")]}
    assert errors(data) == [
        "services[2].service_name: 'a' is already used by services[0]",
        "services[3].service_name: 'b' is already used by services[1]",
        "services[4].service_name: 'a' is already used by services[0]",
    ]


def test_duplicate_names_reported_alongside_other_errors() -> None:
    data = {"services": [named("a"), named("a", replicas=-1)]}
    assert errors(data) == [
        "services[1].replicas: must be at least 0",
        "services[1].service_name: 'a' is already used by services[0]",
    ]


# unknown fields

@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"services": [named("web", bogus=1)]}, "services[0].bogus: unknown field"),
        ({"services": [SERVICE], "bogus": 1}, "bogus: unknown field"),
        ({"services": [named("web", ports=[{"container_port": 80, "hostport": 1}])]},
         "services[0].ports[0].hostport: unknown field"),
        ({"services": [named("web", resources={"cpu_millicores": 5, "memory_bytes": 16777216, "cpu": 1})]},
         "services[0].resources.cpu: unknown field"),
        ({"services": [named("web", scale_policy={"max": 2})]}, "services[0].scale_policy.max: unknown field"),
        ({"services": [named("web", health_check={"port": 80, "path": "/"})]},
         "services[0].health_check.path: unknown field"),
        ({"services": [named("web", restartPolicy="always")]}, "services[0].restartPolicy: unknown field"),
    ],
    ids=["service", "root", "port", "resources", "scale_policy", "health_check", "camel-case"],
)
def test_unknown_fields_rejected(data: dict[str, Any], expected: str) -> None:
    assert errors(data) == [expected]


def test_root_and_service_keys_together_are_not_a_single_service() -> None:
    assert errors({"services": [SERVICE], "service_name": "x"}) == ["service_name: unknown field"]


# several errors at once

def test_several_errors_reported_at_once() -> None:
    data = {
        "env": "staging",
        "listen_addr": "8080",
        "services": [
            named("web", image="", replicas=-1),
            named("B", resources={"cpu_millicores": 1, "memory_bytes": 1}, ports=[{"container_port": 0}]),
        ],
    }
    assert errors(data) == [
        "env: must be one of local, dev, prod, development or production",
        "listen_addr: must be HOST:PORT or :PORT with a port from 1 to 65535",
        "services[0].image: must not be empty",
        "services[0].replicas: must be at least 0",
        "services[1].service_name: must be a DNS label: 1-63 lowercase letters, digits or '-', "
        "not starting or ending with '-'",
        "services[1].ports[0].container_port: must be at least 1",
        "services[1].resources.cpu_millicores: must be at least 5",
        "services[1].resources.memory_bytes: must be at least 16777216",
    ]


def test_config_error_message_joins_every_line() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"services": [named("web", image="", replicas=-1)]})
    assert str(info.value) == "services[0].image: must not be empty\nservices[0].replicas: must be at least 0"


# syntax errors and documents that are not mappings

@pytest.mark.parametrize(
    "text",
    [
        "services: [\n",
        "services:\n  - service_name: a\n   image: b\n",
        "a: b: c\n",
        "key: 'unterminated\n",
        "\tservices: []\n",
    ],
    ids=["unclosed-flow", "bad-indent", "nested-colon", "unterminated-quote", "tab"],
)
def test_yaml_syntax_errors_raise_config_syntax_error(text: str) -> None:
    with pytest.raises(ConfigSyntaxError, match="^not valid YAML"):
        load_config(text)


@pytest.mark.parametrize(
    "text", ["", "# only a comment\n", "null\n", "- web\n- api\n", "just a string\n", "42\n"],
    ids=["empty", "comment", "null", "list", "string", "number"],
)
def test_non_mapping_documents_raise_config_syntax_error(text: str) -> None:
    with pytest.raises(ConfigSyntaxError, match="must be a mapping"):
        load_config(text)


def test_config_syntax_error_is_not_a_config_error() -> None:
    assert not issubclass(ConfigSyntaxError, ConfigError)


def test_json_document_loads() -> None:
    config = load_config('{"services": [{"service_name": "web", "image": "nginx", "replicas": 1}]}')
    assert isinstance(config, Config)
    assert config.services[0].service_name == "web"


# wrong types give clear messages

@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"replicas": "three"}, "replicas: must be an integer"),
        ({"replicas": "3"}, "replicas: must be an integer"),
        ({"service_name": 5}, "service_name: must be a string"),
        ({"image": ["nginx"]}, "image: must be a string"),
        ({"resources": {"cpu_millicores": "500m", "memory_bytes": 16777216}},
         "resources.cpu_millicores: must be an integer"),
        ({"resources": {"cpu_millicores": 500, "memory_bytes": "128Mi"}},
         "resources.memory_bytes: must be an integer"),
        ({"resources": [500]}, "resources: must be a mapping"),
        ({"scale_policy": {"target_cpu": "70"}}, "scale_policy.target_cpu: must be a number"),
        ({"scale_policy": {"cooldown_seconds": "60s"}}, "scale_policy.cooldown_seconds: must be an integer"),
        ({"health_check": "http"}, "health_check: must be a mapping"),
        ({"health_check": {"port": "80"}}, "health_check.port: must be an integer"),
        ({"health_check": {"port": 80, "interval": "30s"}}, "health_check.interval: must be an integer"),
        ({"ports": "80:80"}, "ports: must be a list"),
        ({"ports": ["80:80"]}, "ports[0]: must be a mapping"),
        ({"ports": [{"container_port": "80"}]}, "ports[0].container_port: must be an integer"),
        ({"env": "A=1"}, "env: must be a list"),
        ({"env": [1]}, "env[0]: must be a string"),
        ({"volumes": "/a:/b"}, "volumes: must be a list"),
        ({"dns": "8.8.8.8"}, "dns: must be a list"),
    ],
)
def test_wrong_types_give_clear_messages(fields: dict[str, Any], expected: str) -> None:
    assert errors({"services": [named("web", **fields)]}) == [f"services[0].{expected}"]


@pytest.mark.parametrize(("field", "value"), [("listen_addr", 8080), ("cluster_name", 1), ("data_dir", None)])
def test_wrong_root_types(field: str, value: Any) -> None:
    assert root_errors(**{field: value}) == [f"{field}: must be a string"]


def test_wrong_type_from_yaml_text() -> None:
    with pytest.raises(ConfigError) as info:
        load_config('service_name: web\nimage: nginx\nreplicas: "2"\n')
    assert info.value.errors == ["services[0].replicas: must be an integer"]
