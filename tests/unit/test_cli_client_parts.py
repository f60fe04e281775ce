"""The REST-client commands' pure parts: error mapping, options, rendering, wait and follow logic."""

from __future__ import annotations

import argparse
import http.server
import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from cli import apply, events, render, rollouts
from cli.client import ApiClient, CliError, api_error, token_from
from cli.main import build_parser
from cli.rollouts import Verdict, verdict


def service(
    name: str, running: int, desired: int, deleting: bool = False, *, healthy: int | None = None,
    update: dict[str, Any] | None = None, health: str = "degraded", reason: str | None = None,
) -> dict[str, Any]:
    status = {"running_replicas": running, "desired_replicas": desired, "health": health, "reason": reason,
              "healthy_replicas": running if healthy is None else healthy}
    return {"service_name": name, "image": "nginx:alpine", "deleting": deleting, "status": status, "update": update}


def update(state: str, version: int, done: int = 0, total: int = 3, reason: str | None = None) -> dict[str, Any]:
    return {"state": state, "version": version, "updated_replicas": done, "total": total, "reason": reason}


def rendered(renderable: Any) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(renderable)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


class FakeClient:
    """Answers GETs from a table of path -> list of answers (the last one repeats)."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str, **params: Any) -> Any:
        self.calls.append((path, params))
        queue = self.answers[path]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


# --- errors ---------------------------------------------------------------------------------------

def test_422_lists_every_error_line() -> None:
    error = api_error(httpx.Response(422, json={"error": "invalid", "errors": ["a: bad", "b: worse"]}))
    assert error.lines() == ["the API refused it as invalid (2 errors):", "  a: bad", "  b: worse"]
    assert error.exit_code == 1


def test_other_errors_use_the_apis_message() -> None:
    assert api_error(httpx.Response(404, json={"error": "not_found", "message": "service 'x' not found"})).lines() == [
        "service 'x' not found"
    ]
    unauthorized = api_error(httpx.Response(401, json={"message": "a bearer token is required"}))
    assert unauthorized.message.endswith("(give one with --token, --token-file or $GORCHESTER_TOKEN)")
    unavailable = api_error(httpx.Response(503, json={"error": "unavailable", "reason": "redis unavailable: down"}))
    assert unavailable.message == "redis unavailable: down (HTTP 503)"
    assert api_error(httpx.Response(502, text="<html>\n bad gateway\n</html>")).message == (
        "the API answered HTTP 502: <html> bad gateway </html>"
    )


def test_request_sends_token_and_maps_refused_connections() -> None:
    seen: dict[str, Any] = {}

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.update(path=self.path, headers=dict(self.headers), body=body)
            answer = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_port}", token="s3cret")
        answer = client.request("POST", "/v1/apply", content="services: []", content_type="application/yaml")
    finally:
        thread.join(5)
        server.server_close()
    assert answer == {"ok": True}
    assert seen["path"] == "/v1/apply"
    assert seen["headers"]["Authorization"] == "Bearer s3cret"
    assert seen["headers"]["Content-Type"] == "application/yaml"
    assert seen["body"] == b"services: []"
    with pytest.raises(CliError, match=rf"^cannot reach the API at http://127.0.0.1:{server.server_port}: "):
        ApiClient(f"http://127.0.0.1:{server.server_port}").get("/v1/services")  # closed: refused


# --- options --------------------------------------------------------------------------------------

def test_api_and_token_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORCHESTER_API", "http://elsewhere:9000")
    monkeypatch.setenv("GORCHESTER_TOKEN", "from-env")
    args = build_parser().parse_args(["get", "service"])
    assert (args.api, args.kind, args.output) == ("http://elsewhere:9000", "services", "table")
    assert token_from(args) == "from-env"
    assert token_from(build_parser().parse_args(["get", "nodes", "--token", "flag"])) == "flag"


def test_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GORCHESTER_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text("file-token\n")
    assert token_from(build_parser().parse_args(["rm", "web", "--token-file", str(path)])) == "file-token"
    with pytest.raises(CliError, match="cannot read the token"):
        token_from(build_parser().parse_args(["rm", "web", "--token-file", str(tmp_path / "nope")]))
    assert token_from(build_parser().parse_args(["rm", "web"])) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "widgets"],
        ["get", "nodes", "--token", "a", "--token-file", "b"],
        ["apply", "-f", "c.yaml", "--timeout", "0"],
        ["scale", "web", "many"],
        ["get", "services", "-o", "xml"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_existing_commands_still_parse() -> None:
    assert build_parser().parse_args(["validate", "-f", "c.yaml"]).config == "c.yaml"
    assert build_parser().parse_args(["up", "-f", "c.yaml", "--nodes", "3"]).nodes == 3


# --- rendering ------------------------------------------------------------------------------------

def test_sizes_ports_and_times() -> None:
    assert [render.size(n) for n in (12, 2048, 512 * 2**20, 3 * 2**29)] == ["12B", "2Ki", "512Mi", "1.5Gi"]
    assert render.ports([{"host_port": 0, "container_port": 80, "protocol": "tcp"},
                         {"host_port": 8080, "container_port": 80, "protocol": "udp"}]) == "any->80/tcp, 8080->80/udp"
    assert render.ports([]) == "-"
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert render.ago((now - timedelta(seconds=2.5)).isoformat().replace("+00:00", "Z"), now) == "2.5s ago"
    assert render.ago(None, now) == "never"
    assert render.moment("2024-05-01T12:00:03.250Z") == "2024-05-01T12:00:03Z"
    assert render.moment(1714564803.25) == "2024-05-01T12:00:03Z"  # an epoch, as a node's usage.sampled_at


def test_tables() -> None:
    text = rendered(render.services_table([service("web", 1, 3), service("old", 0, 1, deleting=True)]))
    assert text.split("\n")[0].split() == ["NAME", "IMAGE", "DESIRED", "RUNNING", "HEALTH"]
    assert "web    nginx:alpine   3         1         degraded" in text
    assert "deleting" in text.split("\n")[3]
    node = {"id": "n1", "address": "10.0.0.1", "status": "ready", "tasks": 2, "last_heartbeat": None,
            "capacity": {"cpu_millicores": 4000, "memory_bytes": 2**32},
            "allocated": {"cpu_millicores": 750, "memory_bytes": 2**28}}
    assert "750m/4000m" in rendered(render.nodes_table([node]))
    assert "256Mi/4Gi" in rendered(render.nodes_table([node]))


# --- apply --wait ---------------------------------------------------------------------------------

def test_apply_summary() -> None:
    assert apply.summary({"created": ["web", "api"], "updated": [], "unchanged": ["db"], "deleted": []}) == (
        "created: web, api\nunchanged: db"
    )
    assert apply.summary({"created": [], "updated": [], "unchanged": [], "deleted": []}).startswith("nothing")
    outcome = {"created": ["web"], "updated": ["api"], "unchanged": ["db"], "deleted": ["old"],
               "versions": {"web": 1, "api": 4, "db": 2}}
    assert apply.targets(outcome) == {"web": 1, "api": 4, "old": None}


def test_a_rollout_is_done_when_its_version_completed_and_every_replica_runs_healthy() -> None:
    assert verdict("web", service("web", 2, 3), 1) == Verdict("web", False, "web 2/3 running")
    assert verdict("web", service("web", 3, 3, healthy=2), 1).progress == "web 3/3 running, 2 healthy"
    assert verdict("web", service("web", 3, 3), 1).done
    # The old replicas all run while the update of version 4 is at 1/3: not done (the bug it fixes).
    rolling = service("web", 3, 3, update=update("updating", 4, done=1))
    assert verdict("web", rolling, 4) == Verdict("web", False, "web updating 1/3")
    assert verdict("web", service("web", 3, 3, update=update("completed", 4, 3)), 4).done
    assert verdict("web", service("web", 3, 3, update=update("updating", 2)), 1).done is False  # a newer one
    assert verdict("web", service("web", 3, 3, update=update("rolled_back", 2)), 4).done  # an older one
    rolled = verdict("web", service("web", 3, 3, update=update("rolled_back", 4, reason="web.1 failed: exit 1")), 4)
    assert (rolled.done, rolled.line) == (False, "web: rolled back: web.1 failed: exit 1")
    failed = verdict("web", service("web", 0, 3, health="failed", reason="cannot be scheduled"), 1)
    assert failed.line == "web: failed: cannot be scheduled"
    assert verdict("old", None, None).done and not verdict("old", service("old", 0, 1, True), None).done
    assert verdict("web", None, 1).failure == "deleted while rolling out"
    paused = verdict("web", service("web", 3, 3, update=update("paused", 4, reason="web.1 failed: exit 1")), 4)
    assert paused.line == "web: paused: web.1 failed: exit 1 (go on with `gorchester rollout resume web`)"


def test_wait_returns_once_every_change_rolled_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollouts, "POLL_INTERVAL", 0)
    outcome = {"created": ["web"], "updated": [], "unchanged": ["db"], "deleted": [], "versions": {"web": 1}}
    client = FakeClient({"/v1/services": [[service("web", 1, 2), service("db", 0, 1)],
                                          [service("web", 2, 2), service("db", 0, 1)]]})
    rollouts.wait(client, apply.targets(outcome), timeout=5, quiet=True)  # type: ignore[arg-type]
    assert len(client.calls) == 2  # db, unchanged, is not waited for


def test_wait_fails_at_once_naming_a_rolled_back_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollouts, "POLL_INTERVAL", 0)
    outcome = {"created": [], "updated": ["web"], "unchanged": [], "deleted": [], "versions": {"web": 2}}
    back = service("web", 3, 3, update=update("rolled_back", 2, reason="web.1 not ready 60s after it was assigned"))
    client = FakeClient({"/v1/services": [[service("web", 3, 3, update=update("updating", 2))], [back]]})
    with pytest.raises(CliError) as error:
        rollouts.wait(client, apply.targets(outcome), timeout=60, quiet=True)  # type: ignore[arg-type]
    assert error.value.message == "1 service(s) will not roll out"
    assert error.value.details == ["web: rolled back: web.1 not ready 60s after it was assigned"]


def test_wait_timeout_names_short_services_and_task_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollouts, "POLL_INTERVAL", 0)
    tasks = [{"id": "web.2", "state": "pending", "reason": "no node has 2 GiB free"},
             {"id": "web.1", "state": "running", "reason": None}]
    outcome = {"created": ["web", "db"], "updated": [], "unchanged": [], "deleted": [], "versions": {"web": 1, "db": 1}}
    client = FakeClient({"/v1/services": [[service("web", 1, 2), service("db", 1, 1)]], "/v1/tasks": [tasks]})
    with pytest.raises(CliError) as error:
        rollouts.wait(client, apply.targets(outcome), timeout=0.01, quiet=True)  # type: ignore[arg-type]
    assert error.value.message == "timed out after 0.01s: 1 service(s) not rolled out"
    assert error.value.details == ["web: 1/2 running (web.2 pending: no node has 2 GiB free)"]
    no_tasks = rollouts.why_short(FakeClient({"/v1/tasks": [[]]}), service("api", 0, 1))  # type: ignore[arg-type]
    assert no_tasks == "api: 0/1 running (no tasks yet: is the scheduler running?)"


# --- events --follow ------------------------------------------------------------------------------

def event(event_id: str, message: str) -> dict[str, Any]:
    return {"id": event_id, "type": "custom", "time": "2024-05-01T12:00:00.000Z", "message": message, "data": {}}


def test_follow_prints_each_event_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(events, "POLL_INTERVAL", 0)
    first = [event("1000-0", "one"), event("1000-1", "two")]
    again = [event("1000-1", "two"), event("1000-2", "three"), event("1001-0", "four")]
    client = FakeClient({"/v1/events": [again, [event("1001-0", "four")], KeyboardInterrupt()]})
    args = argparse.Namespace(output="table", service=None, since=None)
    with pytest.raises(KeyboardInterrupt):
        events.follow(client, args, first)  # type: ignore[arg-type]
    printed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["one", "two", "three", "four"]
    assert client.calls[0][1]["since"] == "1.000"
    assert client.calls[1][1]["since"] == "1.001"
