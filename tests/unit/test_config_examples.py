"""The seed README's examples (copied into tests/fixtures/seed) load, with the values and defaults of its tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import (
    Config,
    HealthCheck,
    HealthCheckType,
    NetworkMode,
    PortMapping,
    Protocol,
    Resources,
    RestartPolicy,
    ScalePolicy,
    ServiceSpec,
    load_config,
    parse_volume,
    validate_config,
)

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"
ROOT_DEFAULTS = ("local", ":8080", "./orchestrator-data", "default-cluster")


def load(name: str) -> Config:
    return load_config((SEED / f"{name}.yaml").read_text())


def root(config: Config) -> tuple[str, str, str, str]:
    return (config.env, config.listen_addr, config.data_dir, config.cluster_name)


@pytest.mark.parametrize(
    ("name", "services"),
    [
        ("example1", ["web-frontend"]),
        ("example2", ["postgres-db"]),
        ("example3", ["api-service"]),
        ("complete", ["load-balancer", "application"]),
    ],
)
def test_seed_example_loads(name: str, services: list[str]) -> None:
    config = load(name)
    assert isinstance(config, Config)
    assert [service.service_name for service in config.services] == services


@pytest.mark.parametrize("name", ["example1", "example2", "example3"])
def test_single_service_document_becomes_one_service_config_with_root_defaults(name: str) -> None:
    config = load(name)
    assert len(config.services) == 1
    assert root(config) == ROOT_DEFAULTS


@pytest.mark.parametrize("name", ["example1", "example2", "example3", "complete"])
def test_seed_examples_take_the_service_defaults(name: str) -> None:
    for service in load(name).services:
        assert service.restart_policy is RestartPolicy.NO
        assert service.network_mode is NetworkMode.BRIDGE
        assert service.network is None
        assert service.command is None
        assert service.dns == []
        assert service.extra_hosts == []


def test_example1_web_server() -> None:
    (service,) = load("example1").services
    assert service.image == "nginx:alpine"
    assert service.replicas == 3
    assert service.ports == [PortMapping(host_port=80, container_port=80, protocol=Protocol.TCP)]
    assert service.env == ["NGINX_ENV=production"]
    assert service.volumes == []
    assert service.resources == Resources(cpu_millicores=200, memory_bytes=134217728)
    assert service.scale_policy is None
    assert service.health_check == HealthCheck(
        type=HealthCheckType.HTTP, http_path="/health", port=80, interval=30, timeout=5, retries=3
    )


def test_example1_env_stays_on_the_service_not_the_root() -> None:
    config = load("example1")
    assert config.env == "local"
    assert config.services[0].env == ["NGINX_ENV=production"]


def test_example2_database() -> None:
    (service,) = load("example2").services
    assert service.image == "postgres:15-alpine"
    assert service.replicas == 1
    assert service.ports == [PortMapping(host_port=5432, container_port=5432)]
    assert service.ports[0].protocol is Protocol.TCP
    assert service.env == ["POSTGRES_PASSWORD=secret"]
    assert service.volumes == ["pgdata:/var/lib/postgresql/data"]
    mount = parse_volume(service.volumes[0])
    assert (mount.source, mount.target, mount.read_only, mount.named) == (
        "pgdata",
        "/var/lib/postgresql/data",
        False,
        True,
    )
    assert service.resources == Resources(cpu_millicores=500, memory_bytes=1073741824)
    check = service.health_check
    assert check is not None
    assert check.type is HealthCheckType.COMMAND
    assert check.command == ["pg_isready", "-U", "postgres"]
    assert (check.http_path, check.port) == (None, None)
    assert (check.interval, check.timeout, check.retries) == (30, 5, 3)


def test_example3_autoscaling() -> None:
    (service,) = load("example3").services
    assert service.image == "myapp/api:latest"
    assert service.replicas == 2
    assert service.ports == [PortMapping(host_port=3000, container_port=3000, protocol=Protocol.TCP)]
    assert service.resources is None
    assert service.scale_policy == ScalePolicy(
        min_replicas=2, max_replicas=10, target_cpu=80.0, target_memory=None, cooldown_seconds=120
    )
    assert service.health_check == HealthCheck(type=HealthCheckType.TCP, port=3000, interval=15, timeout=5, retries=3)


def test_complete_example_root() -> None:
    config = load("complete")
    assert root(config) == ("production", ":8080", "/var/lib/gorchester", "production-cluster")
    assert config.listen_host_port() == ("0.0.0.0", 8080)


def test_complete_example_load_balancer() -> None:
    service = load("complete").services[0]
    assert service.image == "nginx:alpine"
    assert service.replicas == 2
    assert service.ports == [
        PortMapping(host_port=80, container_port=80, protocol=Protocol.TCP),
        PortMapping(host_port=443, container_port=443, protocol=Protocol.TCP),
    ]
    assert service.env == ["UPSTREAM_SERVERS=app1:3000,app2:3000"]
    mount = parse_volume(service.volumes[0])
    assert (mount.source, mount.target, mount.read_only, mount.named) == (
        "/etc/nginx/conf.d",
        "/etc/nginx/conf.d",
        True,
        False,
    )
    assert service.resources == Resources(cpu_millicores=300, memory_bytes=134217728)
    assert service.scale_policy == ScalePolicy(min_replicas=2, max_replicas=5, target_cpu=70.0, cooldown_seconds=90)
    assert service.scale_policy.target_memory is None
    assert service.health_check == HealthCheck(
        type=HealthCheckType.HTTP, http_path="/nginx-health", port=80, interval=30, timeout=5, retries=3
    )


def test_complete_example_application() -> None:
    service = load("complete").services[1]
    assert service.image == "mycompany/app:1.5.0"
    assert service.replicas == 3
    assert service.ports == [PortMapping(host_port=0, container_port=3000, protocol=Protocol.TCP)]
    assert service.env == ["DATABASE_URL=postgresql://user:pass@db:5432/app", "REDIS_URL=redis://cache:6379/0"]
    assert service.volumes == []
    assert service.resources == Resources(cpu_millicores=500, memory_bytes=268435456)
    assert service.scale_policy == ScalePolicy(
        min_replicas=3, max_replicas=10, target_cpu=75.0, target_memory=85.0, cooldown_seconds=120
    )
    assert service.health_check == HealthCheck(
        type=HealthCheckType.HTTP, http_path="/api/health", port=3000, interval=20, timeout=10, retries=2
    )


# Defaults of the tables, on the smallest documents that reach them.

MINIMAL = {"service_name": "web", "image": "nginx:alpine", "replicas": 2}


def minimal(**fields: object) -> ServiceSpec:
    return validate_config({"services": [{**MINIMAL, **fields}]}).services[0]


def test_root_defaults() -> None:
    assert root(validate_config({"services": [MINIMAL]})) == ROOT_DEFAULTS


def test_service_defaults() -> None:
    service = minimal()
    assert service.ports == []
    assert service.env == []
    assert service.command is None
    assert service.volumes == []
    assert service.network is None
    assert service.network_mode is NetworkMode.BRIDGE
    assert service.dns == []
    assert service.extra_hosts == []
    assert service.restart_policy is RestartPolicy.NO
    assert service.resources is None
    assert service.scale_policy is None
    assert service.health_check is None


def test_port_defaults_host_port_0_and_tcp() -> None:
    (port,) = minimal(ports=[{"container_port": 80}]).ports
    assert (port.host_port, port.container_port, port.protocol) == (0, 80, Protocol.TCP)


def test_health_check_defaults() -> None:
    check = minimal(health_check={"type": "tcp", "port": 80}).health_check
    assert check is not None
    assert (check.interval, check.timeout, check.retries) == (10, 5, 3)


def test_scale_policy_defaults() -> None:
    policy = minimal(scale_policy={}).scale_policy
    assert policy is not None
    assert (policy.min_replicas, policy.max_replicas, policy.cooldown_seconds) == (1, None, 30)
    assert (policy.target_cpu, policy.target_memory) == (None, None)


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ('restart_policy: "no"', RestartPolicy.NO),
        ("restart_policy: no", RestartPolicy.NO),  # YAML 1.1 reads a bare `no` as false
        ("restart_policy: always", RestartPolicy.ALWAYS),
        ("restart_policy: on-failure", RestartPolicy.ON_FAILURE),
        ("restart_policy: unless-stopped", RestartPolicy.UNLESS_STOPPED),
    ],
)
def test_restart_policy_values_from_yaml(text: str, policy: RestartPolicy) -> None:
    config = load_config(f"service_name: web\nimage: nginx\nreplicas: 1\n{text}\n")
    assert config.services[0].restart_policy is policy


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("bridge", NetworkMode.BRIDGE), ("host", NetworkMode.HOST), ("none", NetworkMode.NONE)],
)
def test_network_mode_values_from_yaml(mode: str, expected: NetworkMode) -> None:
    config = load_config(f"service_name: web\nimage: nginx\nreplicas: 1\nnetwork_mode: {mode}\n")
    assert config.services[0].network_mode is expected
