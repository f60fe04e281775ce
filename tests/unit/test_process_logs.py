"""The processes' log format (shared/process_logs.py): one line per record, fields that cannot be forged."""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings

import pytest

from shared import process_logs
from shared.process_logs import JsonFormatter, RqJobLines, TextFormatter, fields
from shared.settings import LogSettings, SettingError
from tests.support.log_lines import parse_json, parse_text

HOSTILE = [
    'web" exit_code=0',
    "web\n2026-12-03T14:00:03.123Z INFO scheduler forged line",
    "two words",
    "a=b",
    'back\\slash"',
    "line\u2028separator\x85next\r",
    "",
    " padded ",
    "\x1b[31mred",
]


def record(message: str, *args: object, level: int = logging.INFO, name: str = "gorchester.scheduler",
           extra: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\ninjected=1")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.getLogger(name).makeRecord(name, level, __file__, 1, message, args, exc_info, extra=extra)
    made.created = 1796306403.123  # 2026-12-03T14:00:03.123Z
    return made


def test_text_line_has_time_level_component_node_message_and_fields() -> None:
    line = TextFormatter("agent", "node-1").format(
        record("task failed", level=logging.WARNING, extra=fields(task="web.1", exit_code=3, reason="exit 3"))
    )
    assert line == (
        '2026-12-03T14:00:03.123Z WARNING agent node=node-1 task failed task=web.1 exit_code=3 reason="exit 3"'
    )


def test_text_line_without_node_and_with_plain_values() -> None:
    line = TextFormatter("scheduler").format(record("node %s", "down", extra=fields(ok=True, gone=None, ratio=0.5)))
    assert line == "2026-12-03T14:00:03.123Z INFO scheduler node down ok=true gone=null ratio=0.5"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_text_hostile_values_and_messages_stay_one_line_and_their_own_field(hostile: str) -> None:
    line = TextFormatter("api", hostile).format(record(hostile, extra=fields(service=hostile, status=200)))
    assert len(line.splitlines()) == 1
    parsed = parse_text(line)
    assert (parsed["node"], parsed["message"]) == (hostile, hostile)
    assert parsed["fields"] == {"service": hostile, "status": "200"}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_json_hostile_values_stay_one_object_on_one_line(hostile: str) -> None:
    line = JsonFormatter("api", hostile).format(record(hostile, extra=fields(service=hostile, time="forged")))
    assert len(line.splitlines()) == 1
    entry = parse_json(line)
    assert (entry["node"], entry["message"], entry["service"]) == (hostile, hostile, hostile)
    assert entry["time"] == "2026-12-03T14:00:03.123Z"  # a field never replaces the line's own keys


def test_json_line() -> None:
    entry = json.loads(JsonFormatter("scheduler").format(record("task pending", extra=fields(reason="no node fits"))))
    assert entry == {
        "time": "2026-12-03T14:00:03.123Z", "level": "INFO", "component": "scheduler", "node": None,
        "message": "task pending", "reason": "no node fits",
    }


def test_a_traceback_is_a_field_of_the_line() -> None:
    text = TextFormatter("scheduler").format(record("pass failed", level=logging.ERROR, exc=True))
    assert len(text.splitlines()) == 1
    parsed = parse_text(text)
    assert parsed["fields"].keys() == {"traceback"}
    assert parsed["fields"]["traceback"].endswith("ValueError: boom\ninjected=1")
    entry = parse_json(JsonFormatter("scheduler").format(record("pass failed", level=logging.ERROR, exc=True)))
    assert "ValueError: boom" in entry["traceback"]


def test_rq_per_job_lines_are_debug_and_its_start_stays_info() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        per_job = record("Worker %s: %s: %s (%s)", "w", "default", "Job OK", "j1", name="rq.worker")
        assert not RqJobLines().filter(per_job)
        assert per_job.levelname == "DEBUG"
        assert RqJobLines().filter(record("*** Listening on %s...", "q", name="rq.worker"))
        assert RqJobLines().filter(record("Worker %s: %s: %s", "a", "b", "c", name="gorchester.api"))  # not rq's
        root.setLevel(logging.DEBUG)
        kept = record("Successfully completed job %s in %ss on worker %s", "j1", 0.1, "w", name="rq.worker")
        assert RqJobLines().filter(kept)
        assert kept.levelno == logging.DEBUG
    finally:
        root.setLevel(level)


def test_settings_default_and_whole_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GORCHESTER_LOG_FORMAT", raising=False)
    monkeypatch.delenv("GORCHESTER_LOG_LEVEL", raising=False)
    assert LogSettings.from_env() == LogSettings(format="text", level="info")
    monkeypatch.setenv("GORCHESTER_LOG_FORMAT", "JSON")
    monkeypatch.setenv("GORCHESTER_LOG_LEVEL", "debug")
    assert LogSettings.from_env() == LogSettings(format="json", level="debug")
    for name, bad in (("GORCHESTER_LOG_FORMAT", "jsonl"), ("GORCHESTER_LOG_LEVEL", "info,debug")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SettingError, match=name):
            LogSettings.from_env()
        monkeypatch.delenv(name)


def test_configure_replaces_only_its_own_handler_and_takes_over_foreign_loggers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    uvicorn = logging.getLogger("uvicorn")
    foreign = logging.StreamHandler()
    uvicorn.addHandler(foreign)
    uvicorn.propagate = False
    monkeypatch.setenv("GORCHESTER_LOG_LEVEL", "warning")
    try:
        process_logs.configure("api", uncaught=False)
        process_logs.configure("agent", "node-1", uncaught=False)
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
        assert ours[0].formatter.node == "node-1"
        assert root.level == logging.WARNING
        assert foreign not in uvicorn.handlers and uvicorn.propagate
        assert logging.getLogger("uvicorn.access").disabled
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False


def test_a_line_written_outside_logging_is_in_the_format() -> None:
    text = process_logs.line("up", "starting: rq worker node-1", reason="a b")
    parsed = parse_text(text)
    assert (parsed["component"], parsed["level"], parsed["message"]) == ("up", "INFO", "starting: rq worker node-1")
    assert parsed["fields"] == {"reason": "a b"}
    assert parse_json(process_logs.line("up", "starting", log_format="json"))["component"] == "up"


def test_an_uncaught_exception_in_a_thread_and_a_warning_are_log_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # restored after the test
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setenv("GORCHESTER_LOG_FORMAT", "json")
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        process_logs.configure("scheduler")

        def fail() -> None:
            raise RuntimeError("in a thread\nsecond line")

        thread = threading.Thread(target=fail, name="worker-thread")
        thread.start()
        thread.join()
        warnings.warn_explicit("old\nway", DeprecationWarning, "x.py", 1)
    finally:
        logging.captureWarnings(False)
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
    written = [parse_json(line) for line in capsys.readouterr().err.splitlines()]
    [crash] = [entry for entry in written if entry["message"] == "uncaught exception"]
    assert crash["thread"] == "worker-thread" and "RuntimeError: in a thread\nsecond line" in crash["traceback"]
    assert [entry for entry in written if entry["level"] == "WARNING" and "old\nway" in entry["message"]]
