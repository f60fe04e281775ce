"""The real processes' own logs (shared/process_logs.py): every line of the API, the scheduler and an agent in
the one format, text or JSON; RQ's per-job lines kept out of info; the events that matter logged where they
happen (a task failed with its exit code, a replica pending with its reason, a node down, the leader)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.test_end_to_end import service
from tests.support.log_lines import parse_json, parse_text
from tests.support.procs import Processes, free_port, wait_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
ADMIN = "adm-5d1e0c7a9f3b"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
RQ_JOB_LINES = ("Job OK", "Successfully completed", "result is kept")


def entries(procs: Processes, name: str, parse: Callable[[str], dict[str, Any]] = parse_text) -> list[dict[str, Any]]:
    """Every line of the process's output, parsed: one that does not parse fails the test."""
    return [parse(line) for line in procs.log(name).splitlines()]


def lines(procs: Processes, name: str, message: str) -> list[dict[str, Any]]:
    return [entry for entry in entries(procs, name) if entry["message"] == message]


def pending_lines(procs: Processes, task: str) -> list[dict[str, Any]]:
    return [entry for entry in lines(procs, "scheduler", "task pending") if entry["fields"]["task"] == task]


def create(api: str, spec: dict[str, Any]) -> None:
    response = httpx.post(f"{api}/v1/services", json=spec, headers=BEARER, timeout=5)
    assert response.status_code == 201, response.text


def test_every_line_is_one_format_and_the_events_that_matter_are_logged(procs: Processes) -> None:
    procs.env["GORCHESTER_ADMIN_TOKEN"] = ADMIN
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    [leader] = wait_for(lambda: [e for e in entries(procs, "scheduler") if e["message"].startswith("became leader")],
                        what="the scheduler to say it leads")
    assert leader["fields"]["leader"] in leader["message"]
    wait_for(lambda: httpx.get(f"{api}/v1/nodes", headers=BEARER, timeout=5).json()[0]["status"] == "ready",
             what="node-1 to be ready")

    # A container that exits 3: the agent says so, with the exit code.
    create(api, service("crash", 1, command=["sh", "-c", "exit 3"]))
    failed = wait_for(lambda: [e for e in lines(procs, "node-1", "task failed") if e["fields"]["exit_code"] == "3"],
                      what="a task failed line with exit_code=3")
    assert failed[0]["node"] == "node-1" and failed[0]["level"] == "WARNING"
    assert failed[0]["fields"]["service"] == "crash"

    # A replica that fits nowhere: one pending line with the reason, however many passes follow.
    too_big = {"cpu_millicores": 3000, "memory_bytes": 64 * MIB}
    create(api, service("big", 1, command=["sleep", "3600"], resources=too_big))
    [pending] = wait_for(lambda: pending_lines(procs, "big.1"), what="a task pending line")
    assert "node-1: not enough cpu (needs 3000m, 2000m free)" in pending["fields"]["reason"]
    create(api, service("ok", 1, command=["sleep", "3600"]))  # passes after the pending one, and a job run
    wait_for(lambda: [t["state"] for t in httpx.get(f"{api}/v1/tasks", params={"service": "ok"}, headers=BEARER,
                                                     timeout=5).json()] == ["running"], what="ok.1 to run")
    assert pending_lines(procs, "big.1") == [pending]

    # The access line: method, path, status, duration and client; never the Authorization header.
    assert httpx.get(f"{api}/v1/services", headers=BEARER).status_code == 200
    assert httpx.get(f"{api}/v1/services?token=qs-secret-7e1", headers=BEARER).status_code == 400  # unknown query
    def access_lines() -> list[dict[str, Any]]:
        found = [e["fields"] for e in lines(procs, "api", "request") if e["fields"]["path"] == "/v1/services"]
        return [line for line in found if line["method"] == "GET"]

    access = wait_for(lambda: len(access_lines()) == 2 and access_lines(), what="the two access lines")
    assert [line["status"] for line in access] == ["200", "400"]
    assert access[0]["client"] == "127.0.0.1" and float(access[0]["duration_ms"]) >= 0
    api_log = procs.log("api")
    assert ADMIN not in api_log and "Bearer" not in api_log and "qs-secret-7e1" not in api_log

    # A node that stops beating is down.
    procs.kill("node-1")
    down = wait_for(lambda: [e for e in lines(procs, "scheduler", "node down") if e["fields"]["node"] == "node-1"],
                    what="a node down line")
    assert down[0]["level"] == "WARNING"

    agent_log = procs.log("node-1")
    assert not [text for text in RQ_JOB_LINES if text in agent_log]  # RQ's per-job chatter is debug
    assert "Listening on" in agent_log  # its start stays at info
    for name in ("api", "scheduler", "node-1"):
        assert entries(procs, name), name  # every line parses (entries raises on one that does not)


def test_json_format_and_rq_job_lines_at_debug(procs: Processes) -> None:
    procs.env.update(GORCHESTER_LOG_FORMAT="json", GORCHESTER_LOG_LEVEL="debug")
    api = procs.api(free_port())
    procs.scheduler()
    procs.agent("node-1", "127.0.0.2", cpu=2000, memory=2048 * MIB)
    response = httpx.post(f"{api}/v1/services", json=service("ok", 1, command=["sleep", "3600"]), timeout=5)
    assert response.status_code == 201, response.text
    wait_for(lambda: [t["state"] for t in httpx.get(f"{api}/v1/tasks", timeout=5).json()] == ["running"],
             what="ok.1 to run")

    def job_ok() -> list[dict[str, Any]]:
        return [e for e in entries(procs, "node-1", parse_json) if "Job OK" in e["message"]]

    [done] = wait_for(job_ok, what="RQ's Job OK line, at debug")
    assert (done["level"], done["component"], done["node"]) == ("DEBUG", "agent", "node-1")
    for name in ("api", "scheduler", "node-1"):
        assert entries(procs, name, parse_json), name  # every line is a JSON object with the format's keys
    [leader] = [e for e in entries(procs, "scheduler", parse_json) if e["message"].startswith("became leader")]
    assert (leader["component"], leader["level"], leader["node"]) == ("scheduler", "INFO", None)
    assert leader["leader"] in leader["message"]
    requests = [e for e in entries(procs, "api", parse_json) if e["message"] == "request"]
    assert {"method", "path", "status", "duration_ms", "client"} <= requests[0].keys()
