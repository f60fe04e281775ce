"""The dashboard in a real headless Chromium (Playwright): it shows the cluster and follows changes.

Needs the API, Redis, a scheduler and one node agent; the API requires tokens, and the page gets the
read-only one through `#token=` (kept in sessionStorage, never sent in a URL).
A screenshot is saved to test-artifacts/dashboard.png.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.records import NodeRecord
from shared.storage import Store
from tests.support.procs import ROOT, TEST_IMAGE, Processes, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ADMIN, READ = "dash-admin-5b1e", "dash-read-77c0"
MIB = 1024 * 1024
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium is not installed")


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def api(procs: Processes) -> str:
    procs.env.update({"GORCHESTER_ADMIN_TOKEN": ADMIN, "GORCHESTER_READ_TOKEN": READ})
    url = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=1024 * MIB)
    return url


def admin(method: str, url: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10, **kwargs)
    assert response.is_success, response.text
    return response


def test_dashboard_follows_apply_and_scale(api: str, browser: Any, store: Store, cluster: str) -> None:
    # A second node, registered directly: it never heartbeats again, so it shows as down.
    store.register_node(NodeRecord(id="node-9", address="10.0.0.9", cpu_millicores=4000,
                                   memory_bytes=8192 * MIB, labels={"zone": "b"}, last_heartbeat=time.time() - 60))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{api}/ui/")
    status = page.get_by_test_id("status")
    status.filter(has_text="needs a token").wait_for(timeout=10_000)

    page.goto(f"{api}/ui/#token={READ}")
    page.wait_for_function("!location.href.includes('token')", timeout=10_000)  # out of the address bar
    status.filter(has_text="live").wait_for(timeout=10_000)
    page.get_by_test_id("node-node-1").filter(has_text="ready").wait_for(timeout=10_000)
    page.get_by_test_id("node-node-9").filter(has_text="down").wait_for(timeout=10_000)

    config = {"cluster_name": cluster, "services": [
        {"service_name": "web", "image": TEST_IMAGE, "replicas": 2, "command": ["sleep", "3600"],
         "resources": {"cpu_millicores": 250, "memory_bytes": 32 * MIB}},
    ]}
    admin("POST", f"{api}/v1/apply", json=config)
    replicas = page.get_by_test_id("replicas-web")
    replicas.filter(has_text="2/2 running").wait_for(timeout=60_000)
    page.get_by_test_id("task-web.2").filter(has_text="running").wait_for(timeout=10_000)
    page.get_by_test_id("events").filter(has_text="service web created").wait_for(timeout=10_000)

    admin("POST", f"{api}/v1/services/web/scale", json={"replicas": 3})
    replicas.filter(has_text="/3 running").wait_for(timeout=10_000)
    replicas.filter(has_text="3/3 running").wait_for(timeout=60_000)
    page.get_by_test_id("task-web.3").wait_for(timeout=10_000)
    node_text = page.get_by_test_id("node-node-1").inner_text()
    assert "750m / 2 cores" in node_text  # three replicas of 250m allocated on node-1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 0

    # Forgetting the token: the page says it needs one again.
    page.get_by_role("button", name="Forget").click()
    status.filter(has_text="needs a token").wait_for(timeout=10_000)
    assert errors == []
    page.close()


def test_dashboard_files_are_served_without_a_token(api: str) -> None:
    assert httpx.get(f"{api}/ui").status_code in (200, 307)
    page = httpx.get(f"{api}/ui/", timeout=5)
    assert page.status_code == 200 and "<title>gorchester</title>" in page.text
    assert httpx.get(f"{api}/ui/app.js", timeout=5).status_code == 200
    assert httpx.get(f"{api}/v1/services", timeout=5).status_code == 401
    assert Path(ROOT / "api" / "ui" / "style.css").exists()
