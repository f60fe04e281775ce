"""This build's version, as installed: the one string the CLI, the API and the metrics report."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

PACKAGE = "gorchester"


def build_version() -> str:
    """The installed package's version (pyproject.toml's), or "unknown" when run from an uninstalled tree."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"
