"""Authentication and request limits on the real API: tokens from env and files, never logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Tokens
from shared.settings import Settings
from tests.support.procs import Processes, free_port

ADMIN, READ = "adm-8f2a1c0e9b7d", "rd-3c9e7a51f0b2"
WEB = {"service_name": "web", "image": "nginx:alpine", "replicas": 1}


@pytest.fixture
def api(redis_server: Any, cluster: str) -> Iterator[TestClient]:
    app = create_app(Settings(redis_url=redis_server.url, cluster=cluster), Tokens(admin=ADMIN, read=READ))
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_changes_read_token_reads(api: TestClient) -> None:
    assert api.get("/v1/health").status_code == 200
    assert api.get("/v1/services").status_code == 401
    assert api.post("/v1/services", json=WEB, headers=bearer(READ)).status_code == 403
    assert api.post("/v1/services", json=WEB, headers=bearer(ADMIN)).status_code == 201
    assert [s["service_name"] for s in api.get("/v1/services", headers=bearer(READ)).json()] == ["web"]
    assert api.post("/v1/services/web/scale", json={"replicas": 2}, headers=bearer(READ)).status_code == 403
    assert api.post("/v1/services/web/scale", json={"replicas": 2}, headers=bearer(ADMIN)).status_code == 200
    assert api.post("/v1/nodes/nope/drain", headers=bearer(READ)).status_code == 403
    assert api.get("/v1/tasks", headers=bearer(READ)).status_code == 200
    assert api.get("/v1/tasks/web.1/placement").status_code == 401
    assert api.get("/v1/tasks/web.1/placement", headers=bearer(READ)).status_code == 404  # read, found no task
    assert api.get("/v1/events", headers=bearer(READ)).status_code == 200


def test_body_limit_and_malformed_bodies(api: TestClient) -> None:
    too_big = api.post("/v1/apply", content=b"x" * (1024 * 1024 + 1), headers=bearer(ADMIN))
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "request_entity_too_large"
    json_body = {**bearer(ADMIN), "Content-Type": "application/json"}
    assert api.post("/v1/services", content=b"{not json", headers=json_body).status_code == 400
    yaml_body = {**bearer(ADMIN), "Content-Type": "application/yaml"}
    assert api.post("/v1/apply", content=b"services: [unclosed", headers=yaml_body).status_code == 400


def test_uvicorn_reads_token_files_and_never_logs_them(procs: Processes, tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(ADMIN + "\n")
    procs.env["GORCHESTER_ADMIN_TOKEN_FILE"] = str(tmp_path / "admin")
    procs.env["GORCHESTER_READ_TOKEN"] = READ
    url = procs.api(free_port())
    assert httpx.get(f"{url}/v1/nodes").status_code == 401
    assert httpx.get(f"{url}/v1/nodes", headers=bearer(READ)).status_code == 200
    assert httpx.post(f"{url}/v1/apply", json={"services": [WEB]}, headers=bearer(READ)).status_code == 403
    created = httpx.post(f"{url}/v1/apply", json={"services": [WEB]}, headers=bearer(ADMIN))
    assert created.status_code == 200, created.text
    log = procs.log("api")
    assert ADMIN not in log and READ not in log


def test_uvicorn_without_tokens_says_loopback_only(procs: Processes) -> None:
    for name in ("GORCHESTER_ADMIN_TOKEN", "GORCHESTER_READ_TOKEN", "GORCHESTER_ADMIN_TOKEN_FILE",
                 "GORCHESTER_READ_TOKEN_FILE"):
        procs.env.pop(name, None)
    url = procs.api(free_port())
    assert httpx.get(f"{url}/v1/services").status_code == 200
    assert "unauthenticated and serves loopback clients only" in procs.log("api")
