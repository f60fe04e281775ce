"""The OpenAPI document: generated from the pydantic models, complete, and true to the live API.

Schemathesis (its CLI) fuzzes every operation of the live API (uvicorn on a real redis-server) and
must find no 500 and no response, status code or content type the document does not allow. Answers
are checked strictly: every object in the document is closed (`additionalProperties: false`), so a
property the document does not name fails response_schema_conformance.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import ROUTES
from api.openapi import v1_routes
from shared.config import Config, ServiceSpec
from shared.records import ServiceRecord
from shared.storage import Store
from shared.storage.connection import connect
from shared.task_parts import Assignment, TaskStatus
from tests.support.procs import VENV_BIN, Processes, free_port

ADMIN, READ = "oa-admin-41d9", "oa-read-c27e"


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
    # A request's spec may differ from a response's (host_port may be null in a request only), so
    # pydantic may name the two ServiceSpec-Input and ServiceSpec-Output: follow the request body.
    body = doc["paths"]["/v1/services"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    spec_in = schemas[body["$ref"].rsplit("/", 1)[1]]
    assert set(spec_in["properties"]) == set(ServiceSpec.model_fields)
    assert set(schemas["Config"]["properties"]) == set(Config.model_fields)
    assert spec_in["additionalProperties"] is False  # requests are strict, as the API is
    port_in = schemas[spec_in["properties"]["ports"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"type": "null"} in port_in["properties"]["host_port"]["anyOf"]  # `host_port:` with no value
    for path, method in v1_routes(ROUTES):
        assert method in doc["paths"].get(path, {}), f"{method.upper()} {path} is not in the document"
    described = {
        ("/v1/services", "post"): {"201", "400", "401", "403", "408", "409", "413", "415", "422", "503"},
        ("/v1/services/{name}", "get"): {"200", "400", "401", "403", "404", "503"},
        ("/v1/services/{name}", "delete"): {"202", "400", "404"},
        ("/v1/apply", "post"): {"200", "400", "408", "413", "415", "422"},
        ("/v1/tasks/{task}/logs", "get"): {"200", "400", "404", "409", "503"},
        ("/v1/tasks/{task}/placement", "get"): {"200", "400", "401", "403", "404", "409", "503"},
        ("/v1/tasks/{task}/exec", "post"): {"200", "400", "401", "403", "404", "409", "413", "415", "422", "503"},
        ("/v1/events", "get"): {"200", "400", "503"},
        ("/v1/health", "get"): {"200", "503"},
    }
    for (path, method), codes in described.items():
        assert codes <= set(doc["paths"][path][method]["responses"]), (path, method)
    for path, entry in doc["paths"].items():
        assert set(entry["options"]["responses"]) >= {"204", "400", "403"}, path
    # Parameters carry the rules the API checks (api/params.py), as strict as the code.
    events = {param["name"]: param["schema"] for param in doc["paths"]["/v1/events"]["parameters"]}
    assert events["limit"] == {"type": "integer", "minimum": 1, "maximum": 10000}
    assert events["service"]["pattern"] == "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    placement = {param["name"]: param["schema"] for param in doc["paths"]["/v1/tasks/{task}/placement"]["parameters"]}
    assert placement["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    [name] = doc["paths"]["/v1/services/{name}"]["parameters"]
    assert (name["in"], name["required"], name["schema"]["minLength"]) == ("path", True, 1)
    scale = doc["components"]["schemas"]["ScaleRequest"]["properties"]["replicas"]
    assert (scale["minimum"], scale["maximum"]) == (0, 10000)
    assert set(doc["paths"]["/v1/apply"]["post"]["requestBody"]["content"]) == {
        "application/json", "application/yaml", "application/x-yaml", "text/yaml"
    }
    assert body["$ref"].startswith("#/components/schemas/ServiceSpec")
    # Answers are closed: schemathesis fails one that carries a property not named here.
    for name in ("Service", "TaskView", "NodeView", "ServiceUsage", "EndpointView", "Problem"):
        assert schemas[name]["additionalProperties"] is False, name
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_service_name_that_is_not_a_string_is_invalid_not_a_crash(api: str) -> None:
    # Found by schemathesis: the duplicate-name check hashed a mapping (500).
    body = {"services": [{"service_name": {}, "image": "x"}, {"service_name": ["a"], "image": "y"}]}
    response = httpx.post(f"{api}/v1/apply", json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert response.status_code == 422, response.text
    assert any(line.startswith("services[0].service_name") for line in response.json()["errors"])


MAX_RESPONSE_SECONDS = 2.0
# Statuses a schema-valid request may rightly get: 409 (a service that exists already, a task with
# no container) and 422 (rules across fields no schema states, e.g. replicas within scale_policy).
POSITIVE_STATUSES = ["2XX", "401", "403", "404", "409", "422"]
# Statuses that rightly refuse a schema-violating request: schemathesis' own list, plus 413 (a body
# over the 1 MiB limit is refused before it is parsed, whatever it holds).
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


def test_bad_input_suite_schemathesis_all_checks_against_a_live_cluster(procs: Processes, tmp_path: Path) -> None:
    """The issue's bad-input suite: every schemathesis check, against the API with a scheduler and two
    node agents running; no answer >= 500, none slower than 2 s, every process alive, every record valid."""
    procs.env.update({"GORCHESTER_ADMIN_TOKEN": ADMIN, "GORCHESTER_READ_TOKEN": READ})
    # The restart back-off as shipped (1 s doubling to 60 s), not the tests' 0.2-2 s: the fuzzer makes
    # services of up to 10,000 replicas of images no registry has, each retried with the back-off
    # (their containers never ran), and at 2 s that churn alone would load the machine the suite runs on.
    procs.env.update({"GORCHESTER_RESTART_BACKOFF_BASE": "1", "GORCHESTER_RESTART_BACKOFF_MAX": "60"})
    api = procs.api(free_port())
    scheduler = procs.scheduler()
    agents = [procs.agent("n1", "127.0.0.2"), procs.agent("n2", "127.0.0.3")]
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.positive_data_acceptance]\n"
        f"expected-statuses = {POSITIVE_STATUSES!r}\n"
        "[checks.negative_data_rejection]\n"
        f"expected-statuses = {NEGATIVE_STATUSES!r}\n".replace("'", '"')
    )
    har = tmp_path / "responses.har"
    argv = [
        str(VENV_BIN / "schemathesis"), "--config-file", str(tmp_path / "schemathesis.toml"),
        "run", f"{api}/v1/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN}",
        "--checks", "all", "--max-response-time", str(MAX_RESPONSE_SECONDS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "12", "--seed", "20240601", "--max-time", "60", "--workers", "1",
        "--request-timeout", "10", "--no-color", "--report", "har", "--report-har-path", str(har),
    ]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=170)
    (tmp_path / "schemathesis.out").write_text(result.stdout + result.stderr)
    summary = failures(result.stdout) or result.stdout[-4000:]
    assert "Tested: " in result.stdout or "API Operations" in result.stdout, summary
    entries = json.loads(har.read_text())["log"]["entries"]
    assert len(entries) > 500, summary
    errors = [(entry["request"]["method"], entry["request"]["url"], entry["response"]["status"])
              for entry in entries if entry["response"]["status"] >= 500]
    assert not errors, errors[:10]
    slow = [at for at, entry in enumerate(entries) if entry["time"] >= MAX_RESPONSE_SECONDS * 1000]
    # Each slow answer with the two requests before it (sizes and headers): what the connection carried.
    assert not slow, [
        [(e["startedDateTime"], e["request"]["method"], e["request"]["url"][:120], e["request"].get("bodySize"),
          {h["name"]: h["value"][:40] for h in e["request"]["headers"] if h["name"].lower() != "authorization"},
          e["response"]["status"], e["time"]) for e in entries[max(at - 2, 0) : at + 1]]
        for at in slow[:5]
    ]
    assert scheduler.poll() is None, procs.log("scheduler")[-3000:]
    for agent in agents:
        assert agent.poll() is None
    store = Store(connect(procs.env["GORCHESTER_REDIS_URL"]), procs.env["GORCHESTER_CLUSTER"])
    for body in store._client.hgetall(store._keys.services).values():
        ServiceRecord.model_validate_json(body)
    for body in store._client.hgetall(store._keys.assignments).values():
        Assignment.model_validate_json(body)
    for body in store._client.hgetall(store._keys.statuses).values():
        TaskStatus.model_validate_json(body)
    unexplained = [block for block in failure_blocks(result.stdout) if not any(known in block for known in ELSEWHERE)]
    assert result.returncode == 0 or not unexplained, "\n\n".join(unexplained)[:6000] or summary


# Failures that belong to other parts of the code, each with the input that shows it; remove an
# entry once it is fixed (the run then holds it to the document like everything else).
ELSEWHERE: list[str] = []


def failure_blocks(output: str) -> list[str]:
    """schemathesis' report of each operation that failed a check or met an error, one text block each."""
    blocks = re.split(r"\n(?=_{3,} \S.* _{3,}\n)", output.split("\nSUMMARY ")[0])
    return [block for block in blocks if re.match(r"_{3,} \S", block)]


def failures(output: str) -> str:
    """Each failing operation and what schemathesis found, one short line each (the whole report is in
    schemathesis.out beside the test's other files)."""
    lines = [line.strip() for line in output.splitlines()]
    found = [line[:300] for line in lines if re.match(r"^_{3,} \S.* _{3,}$", line) or line.startswith("- ST")
             or line.startswith(("Invalid component", "Expected", "[", "curl "))]
    return "\n".join(found[:200])
