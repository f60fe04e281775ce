"""`gorchester rollout` on real parts: a failed update paused by its failure_action, `rollout status`
failing while it is, `undo` rolling the old template out again, the history telling it all; and an
update whose new replica fits nowhere failing after the deadline instead of waiting for ever."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from tests.integration.test_end_to_end import containers
from tests.integration.test_health import HTTPD, start_cluster, wait_healthy
from tests.integration.test_rolling import HTTPD_BROKEN, update_state, web
from tests.support.procs import VENV_BIN, Processes, wait_for

PAUSE = {"update_config": {"failure_action": "pause"}}


def gorchester(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(VENV_BIN / "gorchester"), *args, "--api", api]
    env = {**os.environ, "COLUMNS": "400"}  # a table's rows unwrapped
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)


def put(api: str, spec: dict) -> None:
    response = httpx.put(f"{api}/v1/services/{spec['service_name']}", json=spec, timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture
def two_nodes(procs: Processes) -> str:
    return start_cluster(procs, 2)


def test_a_paused_update_fails_rollout_status_and_undo_rolls_the_old_template_out(cluster: str, two_nodes: str):
    api = two_nodes
    assert httpx.post(f"{api}/v1/services", json={**web(2), **PAUSE}, timeout=5).status_code == 201
    wait_healthy(api, "web", 2)
    assert gorchester(api, "rollout", "status", "web").returncode == 0

    put(api, {**web(2, command=HTTPD_BROKEN), **PAUSE})
    status = gorchester(api, "rollout", "status", "web", "--timeout", "120")
    assert status.returncode == 1, status.stderr
    assert "web: paused: web.1" in status.stderr and "gorchester rollout resume web" in status.stderr
    view = update_state(api)
    assert (view["update"]["state"], view["update"]["version"]) == ("paused", 2)
    # Paused: the second replica was never replaced; it still serves the old template.
    [kept] = [t for t in httpx.get(f"{api}/v1/tasks", params={"service": "web"}, timeout=5).json() if t["slot"] == 2]
    assert kept["state"] == "running" and kept["health"] == "healthy" and kept["gen"] == 1

    resumed = gorchester(api, "rollout", "resume", "web")
    assert resumed.returncode == 0 and "rolling update to version 2 updating" in resumed.stdout, resumed.stderr
    wait_for(lambda: update_state(api)["update"]["state"] == "paused", timeout=90, what="paused again")

    undo = gorchester(api, "rollout", "undo", "web")
    assert undo.returncode == 0 and "rolling update to version 3 started" in undo.stdout, undo.stderr
    done = gorchester(api, "rollout", "status", "web", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert update_state(api)["command"] == HTTPD
    wait_for(lambda: len(containers(cluster, "web")) == 2, what="the broken containers removed")
    assert all(c.attrs["Config"]["Cmd"] == HTTPD for c in containers(cluster, "web"))

    listed = gorchester(api, "rollout", "history", "web", "-o", "json")
    versions = json.loads(listed.stdout)["versions"]
    assert [(v["version"], v["cause"], v["outcome"]) for v in versions] == [
        (3, "undo", "completed"), (2, "updated", "superseded"), (1, "created", "replaced"),
    ]
    assert versions[0]["reason"] == "back to version 1" and versions[0]["changed"] == ["command"]
    assert versions[1]["outcome_reason"].startswith("web.1 ")
    table = gorchester(api, "rollout", "history", "web").stdout
    assert "the last 10 versions" in table and "undo (back to version 1)" in table

    nothing = gorchester(api, "rollout", "pause", "web")
    assert nothing.returncode == 1 and "has no rolling update under way: its last update is completed" in nothing.stderr
    missing = gorchester(api, "rollout", "undo", "web", "--to-version", "9")
    assert missing.returncode == 1
    assert "version 9 of service 'web' is not in its history (kept: 3, 2, 1)" in missing.stderr


def test_an_update_whose_new_replica_fits_nowhere_rolls_back_naming_it(procs: Processes):
    api = start_cluster(procs, 1, scheduler_env={"GORCHESTER_UPDATE_DEADLINE": "2"})
    small = {**web(1), "resources": {"cpu_millicores": 1000, "memory_bytes": 16 * 1024 * 1024}}
    assert httpx.post(f"{api}/v1/services", json=small, timeout=5).status_code == 201
    wait_healthy(api, "web", 1)
    put(api, {**small, "resources": {"cpu_millicores": 8000, "memory_bytes": 16 * 1024 * 1024}})
    status = gorchester(api, "rollout", "status", "web", "--timeout", "120")
    assert status.returncode == 1, status.stderr
    assert "web: rolled back: web.1 cannot be placed:" in status.stderr and "cpu" in status.stderr
    view = update_state(api)
    assert view["resources"]["cpu_millicores"] == 1000
    wait_healthy(api, "web", 1)
