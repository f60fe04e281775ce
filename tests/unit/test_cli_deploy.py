"""The systemd units in deploy/ as systemd itself reads them, and the env example that feeds them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ["gorchester-api.service", "gorchester-scheduler.service", "gorchester-agent@.service"]
INSTALL_BIN = "/opt/gorchester/.venv/bin"
CONFIG_DIR = "/etc/gorchester/"


def installed_copy(tmp_path: Path) -> Path:
    """The units as if installed: paths pointed at this checkout's venv and a temporary /etc/gorchester."""
    for unit in UNITS:
        text = (DEPLOY / unit).read_text()
        text = text.replace(INSTALL_BIN, str(Path(sys.executable).parent)).replace(CONFIG_DIR, f"{tmp_path}/")
        (tmp_path / unit).write_text(text)
    shutil.copy(DEPLOY / "gorchester.env.example", tmp_path / "gorchester.env")
    (tmp_path / "gorchester-agent@node-1.service").symlink_to("gorchester-agent@.service")
    return tmp_path


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (deploy/setup.sh installs the systemd package)")
    folder = installed_copy(tmp_path)
    units = ["gorchester-api.service", "gorchester-scheduler.service", "gorchester-agent@node-1.service"]
    result = subprocess.run(
        ["systemd-analyze", "verify", *[f"./{unit}" for unit in units]],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_units_run_the_documented_commands_and_restart_on_failure() -> None:
    agent = (DEPLOY / "gorchester-agent@.service").read_text()
    assert f"ExecStart={INSTALL_BIN}/rq worker -w worker.agent.NodeAgent %i\n" in agent
    assert "ExecStart=/opt/gorchester/.venv/bin/python -m scheduler\n" in (
        DEPLOY / "gorchester-scheduler.service"
    ).read_text()
    assert f"ExecStart={INSTALL_BIN}/uvicorn api.app:app " in (DEPLOY / "gorchester-api.service").read_text()
    for unit in UNITS:
        text = (DEPLOY / unit).read_text()
        assert "Restart=on-failure\n" in text, unit
        assert f"EnvironmentFile={CONFIG_DIR}gorchester.env\n" in text, unit


def test_the_env_example_names_every_variable_the_units_and_settings_read() -> None:
    example = (DEPLOY / "gorchester.env.example").read_text()
    named = set(re.findall(r"^#?(GORCHESTER_[A-Z_]+)=", example, re.MULTILINE))
    used = {name for unit in UNITS for name in re.findall(r"\$\{(\w+)\}", (DEPLOY / unit).read_text())}
    settings = Path(__file__).resolve().parents[2] / "shared" / "settings.py"
    used |= set(re.findall(r'"(GORCHESTER_[A-Z_]+)"', settings.read_text()))
    used |= {"GORCHESTER_NODE_ADDRESS"}
    assert used <= named, sorted(used - named)
