"""README.md's "Install on three hosts", read as the tests follow it: its tagged code blocks, and the
same blocks with a test's own addresses and directories in place of the README's examples.

A block is tagged by the HTML comment on the line before its fence: `<!-- install:NAME -->` for
commands, `<!-- install:file PATH -->` for a file's content.
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Install on three hosts"
BLOCK = re.compile(r"<!-- install:(?P<tag>[^>]+?) -->\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)
ADDRESSES = ("10.0.0.11", "10.0.0.12", "10.0.0.13")  # the README's hosts; node-N runs on ADDRESSES[N-1]
EXAMPLE_NODE = "node-2"  # the node the per-node blocks are written for


@dataclass(frozen=True)
class Guide:
    blocks: dict[str, str]  # tag -> body

    @classmethod
    def read(cls, readme: Path = README) -> Guide:
        text = readme.read_text()
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        section = text[start:] if end < 0 else text[start:end]
        return cls({match["tag"].strip(): match["body"] for match in BLOCK.finditer(section)})

    def block(self, tag: str) -> str:
        return self.blocks[tag]

    def files(self) -> dict[str, str]:
        """PATH -> content, of every `install:file PATH` block."""
        return {tag.removeprefix("file ").strip(): body + "\n" for tag, body in self.blocks.items()
                if tag.startswith("file ")}

    def run_command(self, tag: str) -> tuple[list[str], list[str]]:
        """A `run` block as systemd sees it: the files it sources, and the command line it starts."""
        *setup, command = self.block(f"run {tag}").splitlines()
        steps = [step.strip() for line in setup for step in line.split(";")]
        sourced = [step.removeprefix(". ").strip() for step in steps if step.startswith(". ")]
        return sourced, shlex.split(command)


def for_node(text: str, node: int) -> str:
    """A per-node block (written for EXAMPLE_NODE) for node `node`."""
    return text.replace(EXAMPLE_NODE, f"node-{node}").replace(ADDRESSES[1], f"@@{node}@@")


def localised(text: str, addresses: Mapping[int, str], dirs: Mapping[str, str]) -> str:
    """`text` with a test's addresses for the README's hosts (by node number) and its directories for
    the README's absolute ones (/opt/gorchester, /etc/gorchester, /etc/redis)."""
    for index, example in enumerate(ADDRESSES, start=1):
        text = text.replace(example, f"@@{index}@@")
    for index, address in addresses.items():
        text = text.replace(f"@@{index}@@", address)
    for example, replacement in dirs.items():
        text = re.sub(rf"{re.escape(example)}(?=[/\s'\"]|$)", replacement, text, flags=re.MULTILINE)
    return text


def service_settings(unit: Path) -> dict[str, list[str]]:
    """A systemd unit's [Service] settings, each key with all its values in order (systemd allows repeats)."""
    parser = configparser.RawConfigParser(strict=False, dict_type=_MultiDict, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return {key: value.split("\n") for key, value in parser["Service"].items()}


class _MultiDict(dict):
    def __setitem__(self, key: str, value: object) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)
