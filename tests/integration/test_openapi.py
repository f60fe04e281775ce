"""The OpenAPI document: generated from the pydantic models, complete, and true to the live API.

Schemathesis (its CLI) fuzzes every operation of the live API (uvicorn on a real redis-server) and
must find no 500 and no response, status code or content type the document does not allow.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import ROUTES
from api.openapi import v1_routes
from shared.config import Config, ServiceSpec
from tests.support.procs import VENV_BIN, Processes, free_port

ADMIN, READ = "oa-admin-41d9", "oa-read-c27e"
CHECKS = ",".join([
    "not_a_server_error", "response_schema_conformance", "status_code_conformance",
    "content_type_conformance", "response_headers_conformance",
])


@pytest.fixture
def api(procs: Processes) -> str:
    procs.env.update({"GORCHESTER_ADMIN_TOKEN": ADMIN, "GORCHESTER_READ_TOKEN": READ})
    return procs.api(free_port())


def test_document_is_generated_from_the_models_and_covers_every_route(api: str) -> None:
    response = httpx.get(f"{api}/v1/openapi.json", timeout=10)  # open, like /v1/health
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    assert set(schemas["ServiceSpec"]["properties"]) == set(ServiceSpec.model_fields)
    assert set(schemas["Config"]["properties"]) == set(Config.model_fields)
    assert schemas["ServiceSpec"]["additionalProperties"] is False  # requests are strict, as the API is
    for path, method in v1_routes(ROUTES):
        assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} is not in the document"
    described = {
        ("/v1/services", "post"): {"201", "400", "401", "403", "409", "413", "422", "503"},
        ("/v1/services/{name}", "get"): {"200", "401", "403", "404", "503"},
        ("/v1/services/{name}", "delete"): {"202", "404"},
        ("/v1/apply", "post"): {"200", "400", "413", "422"},
        ("/v1/tasks/{id}/logs", "get"): {"200", "404", "409"},
    }
    for (path, method), codes in described.items():
        assert codes <= set(doc["paths"][path][method]["responses"]), (path, method)
    assert doc["paths"]["/v1/services"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceSpec"
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_service_name_that_is_not_a_string_is_invalid_not_a_crash(api: str) -> None:
    # Found by schemathesis: the duplicate-name check hashed a mapping (500).
    body = {"services": [{"service_name": {}, "image": "x"}, {"service_name": ["a"], "image": "y"}]}
    response = httpx.post(f"{api}/v1/apply", json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert response.status_code == 422, response.text
    assert any(line.startswith("services[0].service_name") for line in response.json()["errors"])


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api: str, tmp_path: Path) -> None:
    argv = [
        str(VENV_BIN / "schemathesis"), "run", f"{api}/v1/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15", "--seed", "20240601", "--max-time", "45",
        "--request-timeout", "10", "--no-color",
    ]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=150)
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert "Tested: " in result.stdout
