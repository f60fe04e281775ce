"""`gorchester validate`, run in-process: exit codes 0/1/2 and what it prints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]

SEED_EXAMPLE_1 = """\
service_name: "web-frontend"
image: "nginx:alpine"
replicas: 3
ports:
  - host_port: 80
    container_port: 80
    protocol: "tcp"
env:
  - "NGINX_ENV=production"
resources:
  cpu_millicores: 200
  memory_bytes: 134217728
health_check:
  type: "http"
  http_path: "/health"
  port: 80
  interval: 30
"""

SEED_EXAMPLE_2 = """\
service_name: "postgres-db"
image: "postgres:15-alpine"
replicas: 1
ports:
  - host_port: 5432
    container_port: 5432
env:
  - "POSTGRES_PASSWORD=secret"
volumes:
  - "pgdata:/var/lib/postgresql/data"
resources:
  cpu_millicores: 500
  memory_bytes: 1073741824
health_check:
  type: "command"
  command: ["pg_isready", "-U", "postgres"]
  interval: 30
"""

SEED_EXAMPLE_3 = """\
service_name: "api-service"
image: "myapp/api:latest"
replicas: 2
ports:
  - host_port: 3000
    container_port: 3000
scale_policy:
  min_replicas: 2
  max_replicas: 10
  target_cpu: 80.0
  cooldown_seconds: 120
health_check:
  type: "tcp"
  port: 3000
  interval: 15
"""

MANY_ERRORS = """\
cluster_name: Bad_Name
listen_addr: "8080"
services:
  - service_name: web
    image: "nginx:alpine"
    replicas: -1
    resources:
      cpu_millicores: 1
      memory_bytes: 1024
  - service_name: web
    image: "nginx:alpine"
    replicas: 1
    colour: blue
"""


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("validate", *args)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_shipped_example_is_valid_and_summarised() -> None:
    result = validate("--config", str(ROOT / "examples" / "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert "demo-cluster" in result.stdout
    assert "web: image gorchester/busybox:latest, replicas 3, ports any->80/tcp, cpu 100m, memory 32Mi" in result.stdout
    assert "ticker: image gorchester/busybox:latest, replicas 2, ports none, cpu 50m, memory 16Mi" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("document", "name"),
    [(SEED_EXAMPLE_1, "web-frontend"), (SEED_EXAMPLE_2, "postgres-db"), (SEED_EXAMPLE_3, "api-service")],
)
def test_a_single_service_document_is_accepted(tmp_path: Path, document: str, name: str) -> None:
    result = validate("-f", write(tmp_path, document))
    assert result.returncode == 0, result.stderr
    assert "cluster default-cluster" in result.stdout
    assert f"  {name}: image " in result.stdout


def test_every_error_is_listed_one_per_line(tmp_path: Path) -> None:
    result = validate("-f", write(tmp_path, MANY_ERRORS))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = [
        "cluster_name: must be a DNS label",
        "listen_addr: must be HOST:PORT or :PORT",
        "services[0].replicas: must be at least 0",
        "services[0].resources.cpu_millicores: must be at least 5",
        "services[0].resources.memory_bytes: must be at least 16777216",
        "services[1].colour: unknown field",
        "services[1].service_name: 'web' is already used by services[0]",
    ]
    for start in expected:
        assert any(line.strip().startswith(start) for line in lines), (start, result.stderr)
    assert lines[0].endswith(f": {len(lines) - 1} errors")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "document",
    ["services: [\n", "key: 'unterminated\n", "- just\n- a list\n", "plain words\n", ""],
    ids=["unclosed-flow", "unterminated-quote", "list", "scalar", "empty"],
)
def test_a_document_that_is_not_a_yaml_mapping_exits_2_with_one_line(tmp_path: Path, document: str) -> None:
    path = write(tmp_path, document)
    result = validate("-f", path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"{path}: "), result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    result = validate("-f", path)
    assert result.returncode == 2
    assert result.stderr == f"{path}: cannot read: No such file or directory\n"


def test_a_binary_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    result = validate("-f", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot read" in result.stderr


def test_the_config_option_is_required() -> None:
    result = validate()
    assert result.returncode == 2
    assert "--config" in result.stderr
