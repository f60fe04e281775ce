"""argparse types for the numbers commands take: ASCII digits only, with the bounds named.

int() and float() read more than a user means: int() takes '١٢' (Arabic-Indic digits), ' 12 ' and
'1_2'; float() takes 'nan', 'inf' and '1e999'; and str.isdigit() passes '²', which int() refuses.
"""

from __future__ import annotations

import argparse
import re

WHOLE_NUMBER = re.compile(r"[0-9]+")
DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
MAX_DIGITS = 18  # beyond any count or number of seconds a command takes


def whole_number(text: str) -> int:
    """0, 1, 2, ..."""
    if not WHOLE_NUMBER.fullmatch(text) or len(text) > MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def positive(text: str) -> int:
    """1, 2, 3, ..."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def port(text: str) -> int:
    value = positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be a port from 1 to 65535")
    return value


def seconds(text: str) -> float:
    """A duration such as 30, 2.5 or .5: decimal digits, no sign, no exponent, more than 0."""
    if not DECIMAL.fullmatch(text) or len(text) > MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value
