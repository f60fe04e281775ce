"""The command line's core against a real API and Redis: global flags before the command, the output formats,
version, contexts and completion (the hidden `__complete` and the bash script itself, run in bash)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

from shared.config import validate_service
from shared.storage import Store
from tests.support.cli import as_from_a_terminal
from tests.support.procs import ROOT, TEST_IMAGE, VENV_BIN, Processes, free_port, wait_for

GORCHESTER = str(VENV_BIN / "gorchester")


@pytest.fixture
def api(procs: Processes, store: Store) -> str:
    for name in ("web", "worker"):
        store.create_service(validate_service({"service_name": name, "image": TEST_IMAGE, "replicas": 1}), 0.0)
    return procs.api(free_port())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No GORCHESTER_* from the caller, and a context file of the test's own (never the user's)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("GORCHESTER_")}
    return {**clean, "GORCHESTER_CONFIG": str(tmp_path / "gorchester" / "config.yaml")}


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GORCHESTER, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_global_flags_before_the_command_and_every_output(api: str, env: dict[str, str]) -> None:
    names = run(env, "--api", api, "-o", "name", "get", "svc")
    assert (names.returncode, names.stdout) == (0, "service/web\nservice/worker\n"), names.stderr
    assert run(env, "get", "services", "--api", api, "-o", "name").stdout == names.stdout
    listed = yaml.safe_load(run(env, "--api", api, "get", "services", "-o", "yaml").stdout)
    assert [service["service_name"] for service in listed] == ["web", "worker"]
    table = run(env, "--api", api, "get", "services").stdout.splitlines()
    assert table[0].split() == ["NAME", "IMAGE", "DESIRED", "RUNNING", "HEALTH"]
    assert all(line == line.rstrip() and "─" not in line for line in table)  # awk-friendly when piped
    assert [line.split()[0] for line in run(env, "--api", api, "get", "services", "--no-headers").stdout
            .splitlines()] == ["web", "worker"]
    wide = run(env, "--api", api, "get", "services", "-o", "wide").stdout.splitlines()
    assert "VERSION" in wide[0] and "LAST-UPDATED" in wide[0]


def test_version_names_the_server_or_says_it_cannot_be_reached(api: str, env: dict[str, str]) -> None:
    both = run(env, "--api", api, "version", "-o", "json")
    assert both.returncode == 0, both.stderr
    versions = json.loads(both.stdout)
    assert versions["server"] == versions["client"] and versions["client"]
    assert run(env, "--api", api, "--version").stdout == run(env, "--api", api, "version").stdout
    gone = run(env, "--api", f"http://127.0.0.1:{free_port()}", "version")
    assert gone.returncode == 1 and gone.stdout.splitlines()[1] == "Server: unreachable"
    assert gone.stdout.startswith(f"Client: {versions['client']}\n")
    assert "could not be read: cannot reach the API" in gone.stderr and "Traceback" not in gone.stderr


def test_contexts_pick_the_api_and_flags_still_win(api: str, env: dict[str, str]) -> None:
    assert run(env, "context", "set", "local", "--api", api).returncode == 0
    elsewhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert run(env, "context", "set", "elsewhere", "--api", elsewhere).returncode == 0
    path = Path(env["GORCHESTER_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run(env, "context", "current").stdout == "local\n"  # the first one set
    assert run(env, "-o", "name", "get", "services").stdout == "service/web\nservice/worker\n"
    assert run(env, "context", "use", "elsewhere").returncode == 0
    assert run(env, "get", "services").returncode == 1
    assert run(env, "--context", "local", "get", "services").returncode == 0
    assert run({**env, "GORCHESTER_CONTEXT": "local"}, "get", "services").returncode == 0
    assert run(env, "--api", api, "get", "services").returncode == 0
    assert run(env, "context", "list").stdout.splitlines() == [f"  local  {api}", f"* elsewhere  {elsewhere}"]
    path.write_text("contexts: {broken: {api: 7}}\n")
    bad = run(env, "get", "services")
    assert bad.returncode == 1 and bad.stderr == f"error: {path}: contexts.broken.api: must be a string\n"


def test_completion_lists_names_from_the_api(api: str, env: dict[str, str]) -> None:
    assert run(env, "--api", api, "__complete", "services").stdout == "web\nworker\n"
    unreachable = run(env, "--api", f"http://127.0.0.1:{free_port()}", "__complete", "services")
    assert (unreachable.returncode, unreachable.stdout, unreachable.stderr) == (0, "", "")
    # The scripts as the shells load them; the words typed are fixed lists, the names come from the API
    # named on the line typed.
    probe = (
        '[ -n "$ZSH_VERSION" ] && { autoload -U compinit && compinit -u; }; eval "$SCRIPT"; '
        'offered() { COMP_WORDS=("$CLI" "$@"); COMP_CWORD=$#; _gorchester; printf "%s\\n" "${COMPREPLY[@]}" --; }; '
        'offered --api "$NOWHERE" scale w; offered --api "$API" scale w; '
        'offered describe -o json --api "$API" service w; offered ge'
    )
    nowhere = f"http://127.0.0.1:{free_port()}"
    for shell in ("bash", "zsh"):
        script = run(env, "completion", shell).stdout
        shell_env = {**env, "SCRIPT": script, "CLI": GORCHESTER, "API": api, "NOWHERE": nowhere}
        done = subprocess.run([shell, "-c", probe], env=shell_env, capture_output=True, text=True, timeout=60)
        unreachable, named, options_after, commands, _ = done.stdout.split("--\n")
        assert (unreachable.split(), named.split(), options_after.split()) == ([], ["web", "worker"], ["web", "worker"])
        if shell == "bash":
            assert commands.split() == ["get"], done.stderr
        else:  # zsh offers every command and filters them by what was typed itself
            assert {"get", "version"} <= set(commands.split()), done.stderr


# Runs `gorchester ARGV` (sys.argv) with the server extra's packages unimportable, as in a client-only install,
# then prints (last line of stderr) the distributions whose modules it loaded, besides gorchester.
WITHOUT_SERVER = """
import sys

before = set(sys.modules)  # the interpreter's own start-up (site, .pth hooks) is not the command's
import importlib.metadata
import json
from cli.main import SERVER_PACKAGES, main

class WithoutServer:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, WithoutServer())
code = main(sys.argv[1:])
provided = importlib.metadata.packages_distributions()
loaded = {dist.lower() for name in set(sys.modules) - before for dist in provided.get(name.split(".")[0], [])}
print(json.dumps(sorted(loaded - {"gorchester"})), file=sys.stderr)
sys.exit(code)
"""


def without_server(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "python"), "-c", WITHOUT_SERVER, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def loaded(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The distributions the command loaded, named as pyproject.toml names them (`pydantic-core`)."""
    return {name.replace("_", "-") for name in json.loads(result.stderr.splitlines()[-1])}


def test_the_client_runs_without_the_server_extra(api: str, env: dict[str, str]) -> None:
    listed = without_server(env, "--api", api, "get", "services", "-o", "name")
    assert (listed.returncode, listed.stdout) == (0, "service/web\nservice/worker\n"), listed.stderr
    assert loaded(listed) == set()  # `get` loads no third-party package at all: its start-up is the interpreter's
    shown = without_server(env, "--api", api, "-o", "yaml", "get", "services")
    assert shown.returncode == 0 and loaded(shown) == {"pyyaml"}, shown.stderr
    checked = without_server(env, "validate", "-f", "examples/config.yaml")
    declared = {re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower()
                for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert checked.returncode == 0, checked.stderr
    assert loaded(checked) - {"pydantic-core", "typing-extensions", "annotated-types", "typing-inspection"} <= declared
    for argv in (["up", "-f", "examples/config.yaml"], ["agent", "node-1"]):
        refused = without_server(env, *argv)
        message = refused.stderr.splitlines()[0]
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        expected = f"error: gorchester {argv[0]} needs the server extra: pip install 'gorchester[server]'"
        assert message.startswith(expected)


def test_get_watch_prints_again_on_a_change_and_ctrl_c_ends_it(api: str, env: dict[str, str], store: Store) -> None:
    watcher = subprocess.Popen([GORCHESTER, "--api", api, "get", "services", "--watch", "-o", "name"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_from_a_terminal)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)
    try:
        reader.start()
        wait_for(lambda: lines == ["service/web\n", "service/worker\n"], timeout=30, what="the first listing")
        store.create_service(validate_service({"service_name": "cache", "image": TEST_IMAGE, "replicas": 1}), 0.0)
        wait_for(lambda: len(lines) == 5, timeout=30, what="the listing printed again")
        assert lines[2:] == ["service/cache\n", "service/web\n", "service/worker\n"]
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 130
        assert "Traceback" not in watcher.stderr.read()
    finally:
        watcher.kill()
        watcher.wait()
        reader.join(5)
