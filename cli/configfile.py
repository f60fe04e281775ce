"""Read a config file for a command, turning every failure into the exit codes all commands share.

Exit 1: the document broke rules (every `path: rule` line is printed).
Exit 2: the file is unreadable, not YAML, or not a mapping (one line).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cli.client import EXIT_USAGE, CliError
from shared.config import Config, ConfigError, ConfigSyntaxError, load_config

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


# PyYAML marks a position as `in "<unicode string>", line L, column C:` then the text and a caret line.
YAML_MARK = re.compile(r'\s*in "<unicode string>", (line \d+, column \d+):(\n[^\n]*\n\s*\^)?')


def one_line(text: str) -> str:
    """YAML parser messages span lines and quote the document; a terminal error is one line."""
    return " ".join(YAML_MARK.sub(r" at \1", text).split())


def read_config(path: str) -> tuple[Config, str]:
    """The validated config and its raw text (the API is sent the text itself), or SystemExit."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"{path}: cannot read: {one_line(reason)}", file=sys.stderr)
        raise SystemExit(EXIT_UNREADABLE) from None
    try:
        return load_config(text), text
    except ConfigSyntaxError as exc:
        print(f"{path}: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_UNREADABLE) from None
    except ConfigError as exc:
        count = len(exc.errors)
        print(f"{path}: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def read_text(path: str) -> str:
    """The file's text; unreadable is exit 2, as for `validate` and `up`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"{path}: cannot read: {reason}", exit_code=EXIT_USAGE) from None
