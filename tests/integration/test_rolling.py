"""Rolling updates on real parts: start-first batches that wait for health, rollback of a broken
update while the old replicas keep serving, and start-first drains."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.test_end_to_end import containers, service, tasks
from tests.integration.test_health import HTTPD, event_types, http_check, start_cluster, wait_healthy
from tests.support.procs import VENV_BIN, Processes, wait_for

HTTPD_V2 = ["sh", "-c", "trap 'exit 0' TERM; echo v2 > /tmp/version; httpd -f -p 80 -h /www & wait"]
# Serves on the wrong port: its http check on port 80 fails, so the replica turns unhealthy.
HTTPD_BROKEN = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 81 -h /www & wait"]


def web(replicas: int = 4, command: list[str] = HTTPD) -> dict:
    return service(
        "web", replicas, command=command, ports=[{"container_port": 80}], health_check=http_check(),
        restart_policy="always",
    )


def serving(api: str, name: str) -> int:
    """Slots with a healthy running container (its current gen, or the previous one kept start-first)."""
    return sum(
        1
        for t in tasks(api, name)
        if (t["state"] == "running" and t["health"] == "healthy") or t["previous"] is not None
    )


@contextmanager
def sampling(sample: Callable[[], int]) -> Iterator[list[int]]:
    """Call `sample` in a loop in the background while the block runs; yields the values seen."""
    seen: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with suppress(httpx.HTTPError):
                seen.append(sample())
            time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def update_state(api: str) -> dict:
    return httpx.get(f"{api}/v1/services/web", timeout=5).json()


@pytest.fixture
def two_nodes(procs: Processes) -> str:
    return start_cluster(procs, 2)


def test_update_replaces_replicas_start_first_and_never_drops_below_three_healthy(cluster: str, two_nodes: str):
    api = two_nodes
    assert httpx.post(f"{api}/v1/services", json=web(), timeout=5).status_code == 201
    wait_healthy(api, "web", 4)

    with sampling(lambda: serving(api, "web")) as healthy, sampling(lambda: len(containers(cluster, "web"))) as live:
        response = httpx.put(f"{api}/v1/services/web", json=web(command=HTTPD_V2), timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["update"]["state"] == "updating"
        wait_for(lambda: update_state(api)["update"]["state"] == "completed", timeout=90, what="update completed")
    assert healthy and min(healthy) >= 3, healthy
    assert live and max(live) <= 5, f"more than desired + parallelism containers: {max(live)}"
    assert max(live) == 5, "start-first: a new replica runs beside the one it replaces"

    view = update_state(api)
    assert view["update"]["updated_replicas"] == 4 and view["update"]["total"] == 4
    assert view["command"] == HTTPD_V2
    wait_for(lambda: len(containers(cluster, "web")) == 4, what="previous containers removed")
    assert all(c.attrs["Config"]["Cmd"] == HTTPD_V2 for c in containers(cluster, "web"))
    types = event_types(api, service="web")
    assert {"service_update_started", "task_updated", "service_update_completed"} <= set(types)
    assert types.count("task_updated") == 4


def test_a_broken_update_rolls_back_while_the_old_replicas_keep_serving(cluster: str, two_nodes: str):
    api = two_nodes
    assert httpx.post(f"{api}/v1/services", json=web(), timeout=5).status_code == 201
    before = wait_healthy(api, "web", 4)
    urls = [f"http://{p['host_ip']}:{p['host_port']}/health" for t in before for p in t["ports"]]
    assert len(urls) == 4

    def answering() -> int:
        count = 0
        for url in urls:
            with suppress(httpx.HTTPError):
                count += httpx.get(url, timeout=1).status_code == 200
        return count

    with sampling(answering) as answers:
        response = httpx.put(f"{api}/v1/services/web", json=web(command=HTTPD_BROKEN), timeout=5)
        assert response.status_code == 200, response.text
        rolled = wait_for(
            lambda: (v := update_state(api))["update"]["state"] == "rolled_back" and v, timeout=90, what="rollback"
        )
        assert rolled["command"] == HTTPD
        assert "unhealthy" in rolled["update"]["reason"], rolled["update"]
        wait_healthy(api, "web", 4)
    assert answers and min(answers) >= 3, answers
    assert answering() >= 3
    assert "service_rolled_back" in event_types(api, service="web")
    assert all(c.attrs["Config"]["Cmd"] == HTTPD for c in containers(cluster, "web"))


def test_drain_moves_replicas_start_first_without_dropping_below_desired(cluster: str, two_nodes: str):
    api = two_nodes
    assert httpx.post(f"{api}/v1/services", json=web(), timeout=5).status_code == 201
    before = wait_healthy(api, "web", 4)
    assert {t["node"] for t in before} == {"node-1", "node-2"}

    with sampling(lambda: serving(api, "web")) as healthy, sampling(lambda: len(containers(cluster, "web"))) as live:
        assert httpx.post(f"{api}/v1/nodes/node-2/drain", timeout=5).status_code == 200
        after = wait_for(
            lambda: (ts := wait_healthy(api, "web", 4)) and all(t["node"] == "node-1" for t in ts) and ts,
            timeout=90,
            what="every replica healthy on node-1",
        )
    assert min(healthy) >= 4, healthy
    assert min(live) >= 4 and max(live) <= 5, live
    assert len(after) == 4
    wait_for(lambda: len(containers(cluster, "web")) == 4, what="the drained node's containers removed")


def apply_wait(api: str, tmp_path: Path, spec: dict) -> subprocess.CompletedProcess[str]:
    """`gorchester apply -f FILE --wait` of a one-service config, as an operator runs it."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"services": [spec]}))
    argv = [str(VENV_BIN / "gorchester"), "apply", "-f", str(path), "--wait", "--timeout", "120", "--api", api]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def test_apply_wait_follows_the_rollout_and_fails_naming_a_rolled_back_service(two_nodes: str, tmp_path: Path):
    """`apply --wait` exits 0 only once the rolling update it started completed (never while the old
    replicas still run), and 1 at once, naming the service and why, when the update is rolled back."""
    api = two_nodes
    created = apply_wait(api, tmp_path, web(2))
    assert created.returncode == 0, created.stderr
    assert "ready: web 2/2 running" in created.stderr

    updated = apply_wait(api, tmp_path, web(2, command=HTTPD_V2))
    assert updated.returncode == 0, updated.stderr
    assert "web updating" in updated.stderr
    view = update_state(api)
    assert (view["update"]["state"], view["update"]["updated_replicas"]) == ("completed", 2)

    broken = apply_wait(api, tmp_path, web(2, command=HTTPD_BROKEN))
    assert broken.returncode == 1, broken.stderr
    assert "1 service(s) will not roll out" in broken.stderr
    assert "web: rolled back:" in broken.stderr and "unhealthy" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert update_state(api)["update"]["state"] == "rolled_back"
