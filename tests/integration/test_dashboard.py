"""The dashboard in a real headless Chromium (Playwright): it shows the cluster and follows changes.

Needs the API, Redis, a scheduler and one node agent; the API requires tokens, and the page gets the
read-only one through `#token=` (kept in sessionStorage, never sent in a URL).
With the admin token every action is clicked and the cluster checked through the API; with the read
token a change shows the API's refusal. Screenshots go to test-artifacts/ (desktop and 420 px wide).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.records import NodeRecord
from shared.storage import Store
from tests.support.procs import ROOT, TEST_IMAGE, Processes, free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ADMIN, READ = "dash-admin-5b1e", "dash-read-77c0"
MIB = 1024 * 1024
ARTIFACTS = ROOT / "test-artifacts"
ISO_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

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
    shown = page.get_by_test_id("events").locator("time").all_inner_texts()
    assert shown and all(ISO_SECOND.fullmatch(text) for text in shown), shown  # as the CLI and the API show them

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
    icon = httpx.get(f"{api}/favicon.ico", timeout=5)  # browsers ask the root, whatever the page links
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert httpx.get(f"{api}/ui/favicon.svg", timeout=5).content == icon.content
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{api}/v1/services", timeout=5).status_code == 401
    assert Path(ROOT / "api" / "ui" / "style.css").exists()


def api_get(url: str) -> Any:
    return admin("GET", url).json()


def running(api: str, service: str) -> list[dict[str, Any]]:
    return [t for t in api_get(f"{api}/v1/tasks?service={service}") if t["state"] == "running"]


def no_overflow(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_dashboard_acts_with_the_admin_token(
    api: str, browser: Any, store: Store, cluster: str, procs: Processes
) -> None:
    """Every action, clicked: the cluster changes as the CLI would change it; the page fits a phone."""
    procs.agent("node-2", "127.0.0.3", cpu=2000, memory=1024 * MIB)  # where a drain moves node-1's replicas
    store.register_node(NodeRecord(id="node-9", address="10.0.0.9", cpu_millicores=1000, memory_bytes=512 * MIB,
                                   last_heartbeat=time.time() - 60))  # never beats: down
    web = {"service_name": "web", "image": TEST_IMAGE, "replicas": 1, "restart_policy": "always",
           "command": ["sh", "-c", "echo hello-from-web; exec sleep 3600"], "env": ["LEVEL=one"],
           "resources": {"cpu_millicores": 100, "memory_bytes": 16 * MIB}}
    crash = {"service_name": "crash", "image": TEST_IMAGE, "replicas": 1, "restart_policy": "always",
             "command": ["sh", "-c", "exit 3"], "resources": {"cpu_millicores": 100, "memory_bytes": 16 * MIB}}
    admin("POST", f"{api}/v1/apply", json={"cluster_name": cluster, "services": [web, crash]})
    wait_for(lambda: len(running(api, "web")) == 1, timeout=60, what="web.1 running")
    changed = {**web, "env": ["LEVEL=two"]}
    admin("POST", f"{api}/v1/apply", json={"cluster_name": cluster, "services": [changed, crash]})

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    page.goto(f"{api}/ui/#token={ADMIN}")
    page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
    notice = page.get_by_test_id("notice-text")

    # The service page: spec, rollout, history, tasks, events.
    page.get_by_test_id("open-web").click()
    page.get_by_test_id("service-title").filter(has_text="web").wait_for(timeout=10_000)
    page.get_by_test_id("version-2").wait_for(timeout=10_000)
    page.get_by_test_id("rollout").filter(has_text="v2").wait_for(timeout=10_000)
    page.get_by_test_id("spec").filter(has_text="LEVEL=two").wait_for(timeout=10_000)
    page.get_by_test_id("service-events").filter(has_text="service web created").wait_for(timeout=10_000)
    wait_for(lambda: (t := running(api, "web")) and t[0]["gen"] > 1, timeout=60, what="the update to LEVEL=two")

    # Logs, followed in the page.
    page.get_by_test_id("logs-web.1").click()
    page.get_by_test_id("log-output").filter(has_text="hello-from-web").wait_for(timeout=30_000)
    page.get_by_test_id("close-logs").click()

    # Undo: the template of version 1 again, as version 3.
    page.get_by_test_id("undo").click()
    notice.filter(has_text="undo web: done").wait_for(timeout=10_000)
    service = api_get(f"{api}/v1/services/web")
    assert service["version"] == 3 and service["env"] == ["LEVEL=one"]
    page.get_by_test_id("spec").filter(has_text="LEVEL=one").wait_for(timeout=10_000)

    # Scale 1 -> 2.
    page.get_by_test_id("scale-replicas").fill("2")
    page.get_by_test_id("scale").click()
    notice.filter(has_text="scale web to 2: done").wait_for(timeout=10_000)
    wait_for(lambda: len(running(api, "web")) == 2, timeout=60, what="two web replicas running")

    # Stop a task: always restarts it, in a new container.
    wait_for(lambda: _settled(api), timeout=60, what="the undo rolled out")
    before = api_get(f"{api}/v1/tasks/web.1")
    page.get_by_test_id("stop-web.1").click()
    notice.filter(has_text="stop web.1: done").wait_for(timeout=10_000)
    wait_for(lambda: (t := api_get(f"{api}/v1/tasks/web.1"))["state"] == "running"
             and t["container_id"] != before["container_id"], timeout=60, what="web.1 replaced")

    # A crash loop is a few lines with counts, not a flood.
    page.goto(f"{api}/ui/#/services/crash")
    page.get_by_test_id("service-events").get_by_test_id("repeat").first.wait_for(timeout=60_000)

    # Nodes: drain moves the tasks off, activate takes them back; a down node can be removed.
    page.get_by_test_id("back").click()
    wait_for(lambda: api_get(f"{api}/v1/tasks?node=node-1"), what="replicas on node-1")
    page.get_by_test_id("drain-node-1").click()
    notice.filter(has_text="drain node-1: done").wait_for(timeout=10_000)
    page.get_by_test_id("node-node-1").filter(has_text="draining").wait_for(timeout=10_000)
    assert api_get(f"{api}/v1/nodes/node-1")["availability"] == "drain"
    wait_for(lambda: not api_get(f"{api}/v1/tasks?node=node-1") and len(running(api, "web")) == 2,
             timeout=60, what="node-1's replicas moved to node-2")
    page.get_by_test_id("activate-node-1").click()
    notice.filter(has_text="activate node-1: done").wait_for(timeout=10_000)
    page.get_by_test_id("drain-node-1").wait_for(timeout=10_000)
    assert api_get(f"{api}/v1/nodes/node-1")["availability"] == "active"
    page.get_by_test_id("remove-node-9").click()
    notice.filter(has_text="remove node-9: done").wait_for(timeout=10_000)
    assert httpx.get(f"{api}/v1/nodes/node-9", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 404
    page.get_by_test_id("node-node-9").wait_for(state="detached", timeout=10_000)

    # The events, filtered by service.
    page.get_by_test_id("event-service").select_option("web")
    page.get_by_test_id("events").filter(has_text="service web scaled to 2").wait_for(timeout=10_000)
    page.get_by_test_id("events").filter(has_not_text="crash").wait_for(timeout=10_000)
    page.get_by_test_id("event-service").select_option("")
    page.get_by_test_id("event-node").select_option("node-1")
    page.get_by_test_id("events").filter(has_text="node node-1 draining").wait_for(timeout=10_000)
    page.get_by_test_id("events").filter(has_not_text="service web scaled").wait_for(timeout=10_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"), full_page=True)
    for route, name, ready in (("#", "overview", "services"), ("#/services/web", "service", "spec")):
        page.set_viewport_size({"width": 420, "height": 900})
        page.goto(f"{api}/ui/{route}")
        page.get_by_test_id("status").filter(has_text="live").wait_for(timeout=10_000)
        page.get_by_test_id(ready).filter(has_text="web").first.wait_for(timeout=10_000)
        assert no_overflow(page), page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}-420.png"), full_page=True)
    assert errors == []
    page.close()


def _settled(api: str) -> bool:
    update = api_get(f"{api}/v1/services/web")["update"]
    return update is not None and update["version"] == 3 and update["state"] == "completed" \
        and len(running(api, "web")) == 2


def test_dashboard_shows_a_refused_change(api: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 420, "height": 900})
    page.goto(f"{api}/ui/#token={READ}")
    page.get_by_test_id("node-node-1").filter(has_text="ready").wait_for(timeout=10_000)
    page.get_by_test_id("drain-node-1").click()
    page.get_by_test_id("notice-text").filter(
        has_text="drain node-1 refused (403): the read-only token cannot make changes").wait_for(timeout=10_000)
    assert api_get(f"{api}/v1/nodes/node-1")["availability"] == "active"
    assert no_overflow(page)
    # A crash loop's cycle, ten times over, newest first: three lines of ten, not thirty.
    loop = [{"type": kind, "message": f"crash.1 {kind} ({n})", "time": None, "data": {"task": "crash.1"}}
            for n in range(10) for kind in ("task_started", "task_restarted", "task_failed")]
    assert page.evaluate("(events) => groupEvents(events).map((group) => group.count)", loop) == [10, 10, 10]
    page.close()
