"""`gorchester up` refuses a bad config before it starts anything, with validate's exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import run_cli


def up(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("up", *args)


def test_an_invalid_config_lists_its_errors_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    data_dir = tmp_path / "data"
    config.write_text(f"data_dir: '{data_dir}'\nservices:\n  - service_name: web\n    image: x\n    replicas: -1\n")
    result = up("--config", str(config))
    assert result.returncode == 1
    assert "services[0].replicas: must be at least 0" in result.stderr
    assert not data_dir.exists()


def test_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    result = up("-f", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_nodes_must_be_at_least_one(tmp_path: Path) -> None:
    result = up("-f", str(tmp_path / "absent.yaml"), "--nodes", "0")
    assert result.returncode == 2
    assert "--nodes: '0' must be at least 1" in result.stderr
