"""Host access on real parts: the API refuses what its settings do not grant, each node agent checks
again on its own host (symlinks resolved), and an allowed bind mount works on a real container."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from shared.config import ServiceSpec
from shared.hostaccess import HostAccess, HostAccessRefused
from shared.settings import Settings
from tests.support.procs import TEST_IMAGE, Processes, free_port, wait_for
from worker.host_access import bind_sources

PATHS = "GORCHESTER_ALLOWED_HOST_PATHS"
NAME_IT = f"bind mounts need {PATHS} (on the API and on each node agent) to name it"
HOST_NETWORK = "host networking needs GORCHESTER_ALLOW_HOST_NETWORK=true (on the API and on each node agent)"
SLEEPER = ["sh", "-c", "while true; do sleep 1; done"]

# What an admin token could ask for before (issue 11), and the line the API now answers with.
REPRODUCED = [
    ({"volumes": ["/:/host"]}, f"volumes[0]: host path / is not allowed; {NAME_IT}"),
    ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]},
     f"volumes[0]: host path /var/run/docker.sock is not allowed; {NAME_IT}"),
    ({"volumes": ["/proc:/host/proc:ro"]}, f"volumes[0]: host path /proc is not allowed; {NAME_IT}"),
    ({"volumes": ["/sys:/host/sys"]}, f"volumes[0]: host path /sys is not allowed; {NAME_IT}"),
    ({"volumes": ["/dev:/host/dev"]}, f"volumes[0]: host path /dev is not allowed; {NAME_IT}"),
    ({"volumes": ["data:/data", "/etc/shadow:/shadow:ro"]},
     f"volumes[1]: host path /etc/shadow is not allowed; {NAME_IT}"),
    ({"network_mode": "host"}, f"network_mode: host is not allowed; {HOST_NETWORK}"),
]


def service(name: str = "web", **fields: Any) -> dict[str, Any]:
    return {"service_name": name, "image": TEST_IMAGE, "replicas": 1, "command": SLEEPER, **fields}


@pytest.fixture
def client(redis_server: Any, cluster: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_server.url, cluster=cluster))) as client:
        yield client


def test_without_a_setting_the_api_refuses_each_reproduced_host_access(client: TestClient) -> None:
    assert client.post("/v1/services", json=service(volumes=["web_data:/data"])).status_code == 201
    for fields, line in REPRODUCED:
        created = client.post("/v1/services", json=service("other", **fields))
        assert (created.status_code, created.json()["errors"]) == (422, [line]), fields
        replaced = client.put("/v1/services/web", json=service(**fields))
        assert (replaced.status_code, replaced.json()["errors"]) == (422, [line]), fields
        applied = client.post("/v1/apply", json={"services": [service(**fields)]})
        assert (applied.status_code, applied.json()["errors"]) == (422, [f"services[0].{line}"]), fields

    [stored] = client.get("/v1/services").json()
    assert (stored["service_name"], stored["volumes"], stored["network_mode"]) == ("web", ["web_data:/data"], "bridge")


def test_the_api_grants_what_its_setting_names(redis_server: Any, cluster: str) -> None:
    access = HostAccess(allowed_paths=("/srv", "/var/run/docker.sock"), host_network=True)
    with TestClient(create_app(Settings(redis_url=redis_server.url, cluster=cluster, host_access=access))) as client:
        allowed = service(volumes=["/srv/data:/data", "/var/run/docker.sock:/s"], network_mode="host")
        assert client.post("/v1/services", json=allowed).status_code == 201
        refused = client.post("/v1/apply", json={"services": [service("b", volumes=["/srv:/a", "/etc:/b"])]})
        assert refused.status_code == 422
        assert refused.json()["errors"] == [f"services[0].volumes[1]: host path /etc is not allowed; {NAME_IT}"]


def spec(*volumes: str, **fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate(service(volumes=list(volumes), **fields))


def test_the_agent_resolves_symlinks_on_its_host_before_it_checks(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "real").mkdir(parents=True)
    outside.mkdir()
    (allowed / "inner").symlink_to(allowed / "real")
    (allowed / "escape").symlink_to(outside)
    (allowed / "etc").symlink_to("/etc")
    (tmp_path / "alias").symlink_to(allowed)
    access = HostAccess(allowed_paths=(str(allowed),))

    # Symlinks that stay inside: the engine gets the resolved path.
    resolved = bind_sources(spec("data:/d", f"{allowed}/inner:/a", f"{allowed}/new:/b"), access, "node-1")
    assert resolved == {f"{allowed}/inner": f"{allowed}/real", f"{allowed}/new": f"{allowed}/new"}
    # An allow-list entry that is a symlink grants the directory it resolves to.
    via_alias = HostAccess(allowed_paths=(str(tmp_path / "alias"),))
    assert bind_sources(spec(f"{allowed}/real:/a"), via_alias, "node-1") == {f"{allowed}/real": f"{allowed}/real"}

    for source, real in [(f"{allowed}/escape", str(outside)), (f"{allowed}/etc/shadow", "/etc/shadow")]:
        with pytest.raises(HostAccessRefused) as refused:
            bind_sources(spec(source + ":/x"), access, "node-1")
        assert str(refused.value) == (
            f"volumes[0]: host path {source} (resolves to {real}) is not allowed; "
            f"bind mounts need {PATHS} (on node node-1) to name it"
        )


def test_the_agent_refuses_host_networking_and_every_path_its_settings_do_not_grant() -> None:
    with pytest.raises(HostAccessRefused) as refused:
        bind_sources(spec("/:/host", "/srv/x:/x", network_mode="host"), HostAccess(("/srv",)), "node-2")
    assert str(refused.value) == (
        f"volumes[0]: host path / is not allowed; bind mounts need {PATHS} (on node node-2) to name it | "
        "network_mode: host is not allowed; host networking needs GORCHESTER_ALLOW_HOST_NETWORK=true (on node node-2)"
    )
    if os.path.realpath("/var/run") == "/run":  # Debian: /var/run links to /run; naming it does not give the socket
        with pytest.raises(HostAccessRefused) as socket:
            bind_sources(spec("/var/run/docker.sock:/s"), HostAccess(("/var/run",)), "node-2")
        assert str(socket.value) == (
            "volumes[0]: host path /var/run/docker.sock (resolves to /run/docker.sock) is not allowed; "
            f"it is protected, so {PATHS} (on node node-2) must name it exactly"
        )


@pytest.fixture
def allowing(procs: Processes, tmp_path: Path) -> Iterator[tuple[Processes, Path]]:
    """Processes whose setting allows bind mounts under tmp_path/allowed (node-2 is started without)."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    own = Processes({**procs.env, PATHS: str(allowed)}, procs.log_dir)
    yield own, allowed
    own.close()


def test_an_allowed_bind_mount_runs_and_a_node_that_forbids_it_fails_the_task(
    procs: Processes, allowing: tuple[Processes, Path]
) -> None:
    own, allowed = allowing
    api = own.api(free_port())
    own.scheduler()
    own.agent("node-1", "127.0.0.2", cpu=2000, memory=2**31)
    procs.agent("node-2", "127.0.0.3", cpu=2000, memory=2**31)  # no GORCHESTER_ALLOWED_HOST_PATHS of its own
    wait_for(lambda: [n["status"] for n in httpx.get(f"{api}/v1/nodes", timeout=5).json()] == ["ready"] * 2,
             what="two ready nodes")

    write = ["sh", "-c", "hostname > /data/$(hostname); while true; do sleep 1; done"]
    body = {"services": [service("writer", replicas=2, command=write, volumes=[f"{allowed}/data:/data"])]}
    response = httpx.post(f"{api}/v1/apply", json=body, timeout=10)
    assert response.status_code == 200, response.text

    def settled() -> dict[str, dict] | None:
        tasks = httpx.get(f"{api}/v1/tasks", params={"service": "writer"}, timeout=5).json()
        by_node = {task["node"]: task for task in tasks}
        return by_node if {t["state"] for t in tasks} == {"running", "failed"} else None

    by_node = wait_for(settled, timeout=60, what="one replica running and one failed")
    running, failed = by_node["node-1"], by_node["node-2"]
    assert running["state"] == "running"
    hostname = running["id"].replace(".", "-")
    wait_for(lambda: (allowed / "data" / hostname).is_file(), what="the container to write through its bind mount")
    assert (allowed / "data" / hostname).read_text().strip() == hostname
    assert failed["state"] == "failed"
    assert failed["reason"] == (
        f"volumes[0]: host path {allowed}/data is not allowed; bind mounts need {PATHS} (on node node-2) to name it"
    )
    assert procs.procs["node-2"].poll() is None
