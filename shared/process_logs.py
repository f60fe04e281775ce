"""The processes' own log lines (API, scheduler, node agents): one format for all, text for people or JSON
for machines (GORCHESTER_LOG_FORMAT), at GORCHESTER_LOG_LEVEL. Not the containers' logs (api/logs.py).

    2026-12-03T14:00:03.123Z WARNING agent node=node-1 task failed task=web.1 exit_code=3 reason="exit 3"
    {"time": "2026-12-03T14:00:03.123Z", "level": "WARNING", "component": "agent", "node": "node-1", ...}

A text line is the time (UTC, milliseconds), the level, the component, `node=` where the process is one
node's, the message, then the record's fields as key=value. Every value (and a message that could be taken
for a field) is written as a JSON string when it is not a plain word, so a hostile name with spaces, quotes,
`=` or line breaks can never make a second line or a field of its own; a traceback is the field `traceback`.

Fields go with a record as `log.warning("task failed", extra=fields(task=task_id, exit_code=3))`.
`configure` points every logger of the process at the format, uvicorn's and RQ's included, which
set up their own handlers before our code runs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TextIO

from shared.settings import LogSettings

Component = Literal["api", "scheduler", "agent", "up"]  # up: `gorchester up`'s own lines in its children's logs
FIELDS = "fields"  # the attribute of a log record that carries its fields

# Loggers that libraries give handlers (and formats) of their own; `configure` hands them to ours.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "rq.worker", "rq.job")
# RQ's lines about each job it runs: the agent's own job code logs what matters, so these are debug.
RQ_JOB_LINES = frozenset({
    "Worker %s: %s: %s",  # dequeued (queue: job id)
    "Worker %s: %s: %s (%s)",  # dequeued with its description, and "Job OK"
    "Worker %s: job %s result discarded immediately",
    "Worker %s: job %s result is kept for %s seconds",
    "Worker %s: job %s result will never expire, clean up result key manually",
    "Successfully completed job %s in %ss on worker %s",
    "Successfully completed %s job in %ss on worker %s",
})

_PLAIN = re.compile(r"[^\s\"\\=]+")  # a value written as it is (still checked to be printable)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def fields(**values: Any) -> dict[str, Any]:
    """The `extra` of a log call that carries key=value fields: `log.info("...", extra=fields(node=n))`."""
    return {FIELDS: values}


def quote(text: str) -> str:
    """`text` as a JSON string, with every character that is not printable escaped (line and paragraph
    separators too, which json.dumps leaves as they are)."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            encoded = char.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(encoded[i:i + 2], 'big'):04x}" for i in range(0, len(encoded), 2))
    out.append('"')
    return "".join(out)


def _plain(text: str) -> bool:
    return _PLAIN.fullmatch(text) is not None and text.isprintable()


def text_value(value: Any) -> str:
    """A field's value in a text line: a plain word as it is, anything else quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return text if _plain(text) else quote(text)


def _key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", key) or "_"


def _timestamp(created: float) -> str:
    seconds, millis = divmod(round(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields, with its traceback (if any) as the last one."""
    found = getattr(record, FIELDS, None)
    values = dict(found) if isinstance(found, Mapping) else {}
    if record.exc_info:
        values["traceback"] = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        values["stack"] = record.stack_info
    return values


class TextFormatter(logging.Formatter):
    """`TIME LEVEL COMPONENT [node=NODE] MESSAGE key=value...`: one line per record, whatever it holds."""

    def __init__(self, component: Component, node: str | None = None):
        super().__init__()
        self.component = component
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        parts = [_timestamp(record.created), record.levelname, self.component]
        if self.node is not None:
            parts.append(f"node={text_value(self.node)}")
        # Bare only without `=`, quotes or control characters: the first word with `=` starts the fields.
        parts.append(message if _bare(message) else quote(message))
        parts.extend(f"{_key(key)}={text_value(value)}" for key, value in record_fields(record).items())
        return " ".join(parts)


def _bare(message: str) -> bool:
    """Whether a message can be written without quotes: printable, no `=`, quote or backslash, not empty
    and not starting or ending with a space."""
    return (
        message.isprintable() and not any(char in message for char in '="\\')
        and message == message.strip() and message != ""
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, component, node, message and the record's fields (which
    never replace the first five)."""

    def __init__(self, component: Component, node: str | None = None):
        super().__init__()
        self.component = component
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created), "level": record.levelname, "component": self.component,
            "node": self.node, "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(_key(key), value)
        # ensure_ascii: U+2028 and the like, which some readers take for a line break, are escaped too.
        return json.dumps(entry, default=str, separators=(", ", ": "))


def formatter(component: Component, node: str | None = None, log_format: str = "text") -> logging.Formatter:
    return (JsonFormatter if log_format == "json" else TextFormatter)(component, node)


def line(component: Component, message: str, *, log_format: str = "text", level: int = logging.INFO,
         **values: Any) -> str:
    """One line in the format, written outside logging (the launcher's, into a child's log)."""
    record = logging.makeLogRecord(
        {"msg": message, "levelno": level, "levelname": logging.getLevelName(level), FIELDS: values}
    )
    return formatter(component, log_format=log_format).format(record)


class RqJobLines(logging.Filter):
    """Turns RQ's per-job lines into debug ones (and so drops them below debug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("rq.") and record.levelno == logging.INFO and record.msg in RQ_JOB_LINES:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so `configure` run again replaces it and no other handler (pytest's, say). Writes to the
    stderr of the moment, as logging's last resort does (a test runner may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(
    component: Component, node: str | None = None, *, level: str | None = None, uncaught: bool = True
) -> None:
    """Send every log record of this process to stderr in the configured format, at the configured level
    (or `level`); run again (with the node id once known) it replaces what it set up before. With
    `uncaught`, Python's warnings and the tracebacks of uncaught exceptions become log lines too.

    Raises SettingError (the process does not start) for a bad GORCHESTER_LOG_FORMAT or _LEVEL."""
    settings = LogSettings.from_env()
    handler = _Handler()
    handler.setFormatter(formatter(component, node, settings.format))
    handler.addFilter(RqJobLines())
    root = logging.getLogger()
    for mine in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(mine)
    root.addHandler(handler)
    root.setLevel((level or settings.level).upper())
    if uncaught:  # else they print lines (a traceback) of their own format
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_uncaught
    # The API logs each request itself (api/access_log.py says why).
    logging.getLogger("uvicorn.access").disabled = True
    for name in FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        for old in list(foreign.handlers):
            foreign.removeHandler(old)
        foreign.setLevel(logging.NOTSET)
        foreign.propagate = True


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    logging.getLogger("gorchester").critical("uncaught exception", exc_info=(kind, error, trace))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread else None
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger("gorchester").critical("uncaught exception", exc_info=exc_info, extra=fields(thread=thread))
