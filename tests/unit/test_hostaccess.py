"""The host-access policy (shared/hostaccess.py): which bind sources and networks an allow-list grants."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import ConfigError, ServiceSpec, validate_config
from shared.hostaccess import (
    PROTECTED_PATHS,
    HostAccess,
    check_config,
    check_service,
    is_within,
    normal_path,
    path_refusal,
    refusals,
)

NAME_IT = "bind mounts need GORCHESTER_ALLOWED_HOST_PATHS (on the API and on each node agent) to name it"


def exactly(relation: str) -> str:
    return f"it {relation}, so GORCHESTER_ALLOWED_HOST_PATHS (on the API and on each node agent) must name it exactly"


@pytest.mark.parametrize(
    ("source", "allowed", "refusal"),
    [
        # Nothing allowed: every host path is refused, protected or not.
        ("/srv/data", [], NAME_IT),
        ("/", [], NAME_IT),
        ("/etc/shadow", [], NAME_IT),
        ("/var/run/docker.sock", [], NAME_IT),
        # Beneath an entry: granted unless it touches a protected path below that entry.
        ("/srv/data", ["/srv"], None),
        ("/srv/data/deep/er", ["/srv"], None),
        ("/srv", ["/srv/data"], NAME_IT),  # above an entry is not under it
        ("/srvx", ["/srv"], NAME_IT),  # a shared prefix is not a parent
        ("/srv/data", ["/"], None),
        ("/etc", ["/"], exactly("is protected")),
        ("/etc/shadow", ["/"], exactly("is inside protected /etc")),
        ("/var", ["/"], exactly("contains protected /var/lib/containerd")),
        ("/var/run/docker.sock", ["/"], exactly("is protected")),
        ("/var/run/docker.sock", ["/var"], exactly("is protected")),
        ("/var/log", ["/var"], None),
        ("/var/lib", ["/var"], exactly("contains protected /var/lib/containerd")),
        ("/proc/1/root", ["/"], exactly("is inside protected /proc")),
        ("/sys/kernel", ["/"], exactly("is inside protected /sys")),
        ("/dev/sda", ["/"], exactly("is inside protected /dev")),
        ("/run/user/1000", ["/run"], None),
        ("/run/docker.sock", ["/run"], exactly("is protected")),
        ("/run/containerd/s", ["/run"], exactly("is inside protected /run/containerd")),
        # The operator named a protected path: it, and what lies beneath, is theirs to give ...
        ("/", ["/"], None),
        ("/etc", ["/etc"], None),
        ("/etc/shadow", ["/etc"], None),
        ("/var/run/docker.sock", ["/var/run/docker.sock"], None),
        ("/etc/nginx/conf.d", ["/etc/nginx/conf.d"], None),  # the seed's complete example, named exactly
        # ... but not what is protected below it.
        ("/run/docker.sock", ["/run"], exactly("is protected")),
        # Any entry that grants it is enough.
        ("/etc/shadow", ["/", "/etc"], None),
        ("/var", ["/", "/var"], None),
    ],
)
def test_bind_sources_against_the_allow_list(source: str, allowed: list[str], refusal: str | None) -> None:
    assert path_refusal(source, allowed) == refusal


def test_every_protected_path_is_refused_through_root_but_granted_by_name() -> None:
    for path in PROTECTED_PATHS:
        if path != "/":
            assert path_refusal(path, ["/"]) is not None, path
        assert path_refusal(path, [path]) is None, path


def test_paths_compare_by_whole_parts() -> None:
    assert is_within("/srv/data", "/srv") and is_within("/srv", "/srv") and is_within("/x", "/")
    assert not is_within("/srvdata", "/srv") and not is_within("/", "/srv")
    assert normal_path("//srv/./data/") == "/srv/data" and normal_path("/") == "/"


def spec(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"service_name": "web", "image": "nginx:alpine", "replicas": 1, **fields})


def test_named_volumes_are_always_allowed() -> None:
    assert refusals(spec(volumes=["web_data:/data", "pgdata:/var/lib/postgresql/data"]), HostAccess()) == []


def test_one_line_per_refused_volume_naming_the_field_and_setting() -> None:
    service = spec(volumes=["web_data:/data", "/etc:/host-etc:ro", "/srv/ok:/ok", "/:/host"])
    assert refusals(service, HostAccess(allowed_paths=("/srv",)), "services[0].") == [
        f"services[0].volumes[1]: host path /etc is not allowed; {NAME_IT}",
        f"services[0].volumes[3]: host path / is not allowed; {NAME_IT}",
    ]


def test_host_networking_needs_its_setting() -> None:
    need = "host networking needs GORCHESTER_ALLOW_HOST_NETWORK=true (on the API and on each node agent)"
    assert refusals(spec(network_mode="host"), HostAccess()) == [f"network_mode: host is not allowed; {need}"]
    assert refusals(spec(network="host"), HostAccess()) == [
        f"network: host is the host's own network and is not allowed; {need}"
    ]
    assert refusals(spec(network_mode="host"), HostAccess(host_network=True)) == []
    assert refusals(spec(network_mode="none"), HostAccess()) == []
    assert refusals(spec(network="backend"), HostAccess()) == []


def test_checks_raise_config_errors_with_every_line() -> None:
    with pytest.raises(ConfigError) as single:
        check_service(spec(volumes=["/etc:/e"], network_mode="host"), HostAccess())
    assert [line.split(":")[0] for line in single.value.errors] == ["volumes[0]", "network_mode"]

    config = validate_config(
        {"services": [{"service_name": "a", "image": "x", "replicas": 1, "volumes": ["d:/d"]},
                      {"service_name": "b", "image": "x", "replicas": 1, "volumes": ["/var/run/docker.sock:/s"]}]}
    )
    with pytest.raises(ConfigError) as whole:
        check_config(config, HostAccess())
    assert whole.value.errors == [f"services[1].volumes[0]: host path /var/run/docker.sock is not allowed; {NAME_IT}"]
    check_config(config, HostAccess(allowed_paths=("/var/run/docker.sock",)))
