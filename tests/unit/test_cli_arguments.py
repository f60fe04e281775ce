"""The argparse types for numbers: ASCII digits only (no '²', '١٢', ' 12', '1_2', 'nan', '1e999')."""

from __future__ import annotations

import argparse

import pytest

from cli.arguments import port, positive, seconds, whole_number
from cli.logs import is_task_id
from cli.main import build_parser


@pytest.mark.parametrize("text", ["²", "١٢", " 12", "12 ", "1_2", "+1", "-1", "1.0", "", "0x10", "9" * 19])
def test_whole_number_refuses_what_is_not_ascii_digits(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a whole number"):
        whole_number(text)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("7", 7), ("007", 7), ("10000", 10000)])
def test_whole_number_accepted(text: str, value: int) -> None:
    assert whole_number(text) == value


def test_positive_refuses_zero() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1"):
        positive("0")


@pytest.mark.parametrize("text", ["0", "65536"])
def test_port_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "1e3", "-1", "²", "1_0", " 1", ""])
def test_seconds_refuses_what_is_not_a_plain_decimal(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number of seconds"):
        seconds(text)


@pytest.mark.parametrize("text", ["0", "0.0", ".0"])
def test_seconds_must_be_more_than_zero(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be more than 0"):
        seconds(text)


@pytest.mark.parametrize(("text", "value"), [("30", 30.0), ("2.5", 2.5), (".5", 0.5), ("1.", 1.0)])
def test_seconds_accepted(text: str, value: float) -> None:
    assert seconds(text) == value


@pytest.mark.parametrize(
    "argv",
    [
        ["scale", "web", "²"],
        ["logs", "web", "--tail", "²"],
        ["events", "--limit", "١٠"],
        ["up", "-f", "c.yaml", "--nodes", "٢"],
        ["apply", "-f", "c.yaml", "--timeout", "nan"],
        ["down", "--timeout", "inf"],
    ],
    ids=["scale", "logs-tail", "events-limit", "up-nodes", "apply-timeout", "down-timeout"],
)
def test_commands_refuse_non_ascii_numbers(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "is not a" in capsys.readouterr().err


@pytest.mark.parametrize(("target", "expected"), [("web.1", True), ("web.²", False), ("web", False), (".1", False)])
def test_task_ids_have_ascii_slots(target: str, expected: bool) -> None:
    assert is_task_id(target) is expected
