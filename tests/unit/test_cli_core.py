"""The command line's core, pure parts: what `get` imports, finding the command, global flags, plain tables,
contexts' checks and precedence, time display, completion names."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cli import completion, contexts, render, resources
from cli.client import ApiClient, CliError
from cli.main import SERVER_PACKAGES, build_parser, command_of
from tests.support.procs import ROOT


def test_get_imports_no_server_dependency() -> None:
    probe = ("import sys; from cli.main import build_parser; build_parser('get').parse_args(['get', 'svc']); "
             "print(sorted(m for m in ('redis', 'pydantic', 'docker', 'httpx', 'rich', 'yaml') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("argv", "command"), [
    (["get", "services"], "get"),
    (["--api", "http://x", "-o", "json", "get"], "get"),
    (["--api=http://x", "--context", "prod", "describe"], "describe"),
    (["--help"], None),
    (["-h", "get"], None),
    (["--", "version"], "version"),
])
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_global_flags_before_or_after_the_command() -> None:
    before = build_parser("get").parse_args(["--api", "http://a", "-o", "wide", "get", "svc"])
    after = build_parser("get").parse_args(["get", "no", "--api", "http://b", "--no-headers"])
    assert (before.api, before.output, before.kind) == ("http://a", "wide", "services")
    assert (after.api, after.no_headers, after.kind, after.output) == ("http://b", True, "nodes", "table")
    assert build_parser("get").parse_args(["get", "ts"]).kind == "tasks"
    assert [build_parser("describe").parse_args(["describe", kind, "x"]).kind
            for kind in ("svc", "nodes", "task")] == ["service", "node", "task"]
    with pytest.raises(SystemExit):
        build_parser("describe").parse_args(["describe", "events", "x"])


def test_piped_tables_are_plain_columns() -> None:
    grid = render.Grid(["NAME", "IMAGE"], [["web", "nginx:alpine"], ["a-long-name", "x"]])
    assert grid.lines() == ["NAME         IMAGE", "web          nginx:alpine", "a-long-name  x"]
    grid.show_header = False
    assert grid.lines() == ["web          nginx:alpine", "a-long-name  x"]


def test_times_in_describe_are_iso() -> None:
    rows = dict(resources.flatten({"usage": {"sampled_at": 1714564803.9, "cpu": 3},
                                   "last_heartbeat": "2024-05-01T12:00:03.250Z", "reason": "x_at"}))
    assert rows["usage.sampled_at"] == "2024-05-01T12:00:03Z"
    assert rows["last_heartbeat"] == "2024-05-01T12:00:03Z"
    assert rows["usage.cpu"] == "3" and rows["reason"] == "x_at"
    assert render.moment("not a time") == "not a time"


@pytest.mark.parametrize(("data", "error"), [
    ([], "expected a mapping"),
    ({"contexts": {"a": {"api": "ftp://x"}}}, "contexts.a.api: must be an http:// or https:// URL"),
    ({"contexts": {"a": {"api": "http://x", "token": "t"}}}, "contexts.a.token: unknown field"),
    ({"contexts": {"a": {"api": "http://x", "cacert": 3}}}, "contexts.a.cacert: must be a string"),
    ({"current": "b", "contexts": {"a": {"api": "http://x"}}}, "current: no context named 'b'"),
])
def test_a_bad_context_file_is_one_error_naming_the_field(data: object, error: str) -> None:
    with pytest.raises(CliError) as raised:
        contexts.parse(data, "/c.yaml")
    assert raised.value.message == f"/c.yaml: {error}" or raised.value.message.startswith(f"/c.yaml: {error}")


def test_contexts_are_saved_private_and_picked_in_order(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    saved = contexts.with_context(contexts.Contexts(None, {}), "a", contexts.Context("http://a"))
    saved = contexts.with_context(saved, "b", contexts.Context("http://b", token_file="/t"))
    contexts.save(path, saved)
    assert path.stat().st_mode & 0o777 == 0o600 and list(tmp_path.iterdir()) == [path]
    loaded = contexts.load(path)
    assert loaded == saved and loaded.current == "a"
    assert contexts.pick(loaded, "b", "f") == contexts.Context("http://b", "/t")
    assert contexts.pick(loaded, None, "f") == contexts.Context("http://a")
    assert contexts.without_context(loaded, "a", "f").current is None
    with pytest.raises(CliError, match="no context named 'c'"):
        contexts.pick(loaded, "c", "f")


def test_completion_names_and_script() -> None:
    assert completion.names("services", [{"service_name": "web"}, {"service_name": 3}, "x"]) == ["web"]
    assert completion.names("nodes", {"error": "x"}) == []
    assert "complete -F _gorchester gorchester" in completion.script("bash", ["get", "describe"])
    assert completion.script("zsh", ["get"]).splitlines()[1].startswith("autoload -U +X bashcompinit")


def server_extra_modules() -> set[str]:
    """The import names of pyproject.toml's `server` extra, as the installed distributions provide them."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    wanted = {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-") for requirement in extra}
    wanted.add("hiredis")  # redis[hiredis]
    provided = importlib.metadata.packages_distributions()
    return {module for module, dists in provided.items()
            if any(dist.lower().replace("_", "-") in wanted for dist in dists)}


def test_the_server_packages_cli_main_names_are_the_server_extras() -> None:
    assert server_extra_modules() == set(SERVER_PACKAGES)


@pytest.mark.parametrize(("client", "error"), [
    (ApiClient("ftp://api"), "--api ftp://api: not an http:// or https:// URL"),
    (ApiClient("http://api:port"), "--api http://api:port: not an http:// or https:// URL"),
    (ApiClient("http://127.0.0.1:9", token="a\nb"), "request to http://127.0.0.1:9/v1/services failed: the token"),
])
def test_a_bad_url_or_token_is_one_error_line(client: ApiClient, error: str) -> None:
    with pytest.raises(CliError) as raised:
        client.get("/v1/services")
    assert raised.value.message.startswith(error)


def test_a_context_file_that_is_not_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("current: a\ncontexts: [\n")
    with pytest.raises(CliError, match=rf"^{re.escape(str(path))}: not valid YAML \(line \d+\)$"):
        contexts.load(path)
    assert contexts.load(tmp_path / "absent.yaml") == contexts.Contexts(None, {})
