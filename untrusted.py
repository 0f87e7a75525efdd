"""Strict, bounded decoding of what clients send: JSON bodies, whole numbers, decimals, days.

Python's own parsers are generous in ways that hurt a server: `json.loads` recurses until
RecursionError; `str.isdigit`, `int()` and `Decimal()` take superscript, full-width and
Arabic-Indic digits; `Decimal` takes NaN, sNaN and exponents whose arithmetic overflows; date
arithmetic overflows at the ends of the calendar; PostgreSQL text cannot hold NUL. Each
function here takes ASCII digits only, stays within bounds and raises `UntrustedInput` with a
message a client can act on. Pure: no Flask, no database.
"""
from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

MAX_JSON_DEPTH = 32  # Greenfield metadata nests a few levels; Python recurses ~1000
MAX_DECIMAL_EXPONENT = 30  # far beyond any price (21M BTC, ₩10¹⁵), far below Decimal's limits
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # days ± a month stay in range

_DIGITS = re.compile(r"[0-9]+")  # not \d, which is every script's digits
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:s?nan[0-9]*|inf|infinity)", re.IGNORECASE)
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
DAY_RULE = f"YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"
MONTH_RULE = f"YYYY-MM from {FIRST_DAY:%Y-%m} to {LAST_DAY:%Y-%m}"


class UntrustedInput(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def has_nul(text: str) -> bool:
    return "\x00" in text


def decode_json(raw: bytes, *, parse_float: Callable[[str], Any] = Decimal) -> Any:
    """A UTF-8 JSON body, numbers with a fraction or exponent (and NaN/Infinity, which the
    callers refuse per field) through `parse_float`. Refuses nesting deeper than
    MAX_JSON_DEPTH, and strings holding NUL or lone surrogates (no database stores them)."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_float=parse_float, parse_constant=parse_float)
    except RecursionError:
        raise UntrustedInput(_too_deep()) from None
    except UnicodeDecodeError:
        raise UntrustedInput("The body is not UTF-8 text") from None
    except ValueError as err:
        raise UntrustedInput(f"The body is not valid JSON: {err}") from None
    except ArithmeticError:  # Decimal refuses an exponent beyond its own limits
        raise UntrustedInput("The body is not valid JSON: a number is out of range") from None
    # Both walks are skipped for ordinary bodies: they need many brackets or an escape.
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    escaped = "\\u" in text
    if deep or escaped:
        _inspect(value, escaped)
    return value


def _too_deep() -> str:
    return f"The body is nested too deeply: at most {MAX_JSON_DEPTH} levels of objects and arrays"


def _inspect(value: Any, check_text: bool) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise UntrustedInput(_too_deep())
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict) and check_text:
                stack.extend((key, depth) for key in item)
        elif isinstance(item, str) and check_text:
            _check_text(item)


def _check_text(text: str) -> None:
    if has_nul(text):
        raise UntrustedInput("Text in the body must not contain NUL (U+0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UntrustedInput("Text in the body must not contain a lone surrogate "
                             "(\\ud800–\\udfff without its pair)") from None


def whole_number(raw: str, *, maximum: int, minimum: int = 0) -> int:
    """ASCII digits only (no sign, space or exponent), from `minimum` to `maximum`."""
    digits = raw.lstrip("0") or "0"  # int() refuses over 4,300 digits: bound the length first
    if not _DIGITS.fullmatch(raw) or len(digits) > len(str(maximum)) \
            or not minimum <= int(digits) <= maximum:
        raise UntrustedInput(f"must be a whole number from {minimum} to {maximum}")
    return int(digits)


def retry_after_seconds(header: str | None, *, cap: int) -> int | None:
    """An HTTP `Retry-After: <seconds>` from a server we call, at most `cap`; None when it is
    absent or not ASCII digits (`²` is isdigit() and then breaks int())."""
    text = (header or "").strip()
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return cap if len(digits) > len(str(cap)) else min(int(digits), cap)


def plain_decimal(raw: str) -> Decimal:
    """A decimal written in ASCII (`-12.5`, `1.5e4`), finite and within ±10^30 with at most
    30 decimal places; messages are predicates ("must be …") for the caller to prefix."""
    if _NOT_FINITE.fullmatch(raw):
        raise UntrustedInput("must be a finite number")
    if not raw.isascii():
        raise UntrustedInput("must be written with the ASCII digits 0-9")
    if not _DECIMAL.fullmatch(raw):
        raise UntrustedInput("is not a decimal number")
    try:
        value = Decimal(raw)
    except InvalidOperation:  # an exponent beyond Decimal's own limits
        tiny = re.search(r"[eE]-", raw) is not None
        raise UntrustedInput(f"has too many decimal places (at most {MAX_DECIMAL_EXPONENT})"
                             if tiny else "is too large") from None
    if value and value.adjusted() > MAX_DECIMAL_EXPONENT:
        raise UntrustedInput("is too large")
    if value.as_tuple().exponent < -MAX_DECIMAL_EXPONENT:
        raise UntrustedInput(f"has too many decimal places (at most {MAX_DECIMAL_EXPONENT})")
    return value


def _in_calendar(parts: tuple[str, ...], rule: str) -> date:
    try:
        day = date(*(int(p) for p in parts))
    except ValueError:
        raise UntrustedInput(rule) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise UntrustedInput(rule)
    return day


def calendar_day(raw: str) -> date:
    """YYYY-MM-DD within FIRST_DAY..LAST_DAY (not the other forms date.fromisoformat takes)."""
    match = _DAY.fullmatch(raw)
    if not match:
        raise UntrustedInput(DAY_RULE)
    return _in_calendar(match.groups(), DAY_RULE)


def calendar_month(raw: str) -> date:
    """YYYY-MM within FIRST_DAY..LAST_DAY, as the month's first day."""
    match = _MONTH.fullmatch(raw)
    if not match:
        raise UntrustedInput(MONTH_RULE)
    return _in_calendar((*match.groups(), "1"), MONTH_RULE)
