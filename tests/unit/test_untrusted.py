"""untrusted: the strict decoders every client input goes through."""
from __future__ import annotations

import json
import unicodedata
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from untrusted import (MAX_JSON_DEPTH, UntrustedInput, calendar_day, calendar_month, decode_json,
                       plain_decimal, retry_after_seconds, whole_number)

# Every decimal digit Unicode knows, except ASCII 0-9: int(), Decimal() and \d accept them.
FOREIGN_DIGITS = [chr(c) for c in range(0x80, 0x30000)
                  if unicodedata.category(chr(c)) == "Nd" or unicodedata.digit(chr(c), None) is not None]


@given(st.text(alphabet=st.sampled_from(FOREIGN_DIGITS + list("0123456789")), min_size=1, max_size=8)
       .filter(lambda t: not t.isascii()))
def test_no_digit_from_another_script_is_a_number_anywhere(text):
    for parse in (lambda t: whole_number(t, maximum=10**12), plain_decimal, calendar_day,
                  calendar_month):
        with pytest.raises(UntrustedInput):
            parse(text)
    assert retry_after_seconds(text, cap=60) is None


@given(st.integers(min_value=0, max_value=10**9))
def test_ascii_whole_numbers_up_to_the_maximum_are_read_exactly(n):
    assert whole_number(str(n), maximum=10**9) == n
    assert whole_number("000" + str(n), maximum=10**9) == n
    with pytest.raises(UntrustedInput):
        whole_number(str(n + 10**9 + 1), maximum=10**9)


def test_a_whole_number_has_no_sign_space_exponent_or_endless_digits():
    for text in ("", "-1", "+1", " 1", "1 ", "1e3", "1.0", "1_0", "0x1", "9" * 5000, "0" * 5000 + "x"):
        with pytest.raises(UntrustedInput):
            whole_number(text, maximum=10**6)
    assert whole_number("0" * 5000 + "7", maximum=10) == 7  # int() alone refuses 4,300+ digits


@pytest.mark.parametrize("text,message", [
    ("NaN", "finite"), ("sNaN", "finite"), ("-snan12", "finite"), ("Infinity", "finite"),
    ("-inf", "finite"), ("1e999999999", "too large"), ("1e99999999999999999999999", "too large"),
    ("1e-999999999", "decimal places"), ("1e-99999999999999999999999", "decimal places"),
    ("9" * 32, "too large"), ("0." + "0" * 30 + "1", "decimal places"), ("1,5", "not a decimal"),
    ("+1", "not a decimal"), ("1 000", "not a decimal"), ("١", "ASCII"),
])
def test_decimals_that_trap_or_overflow_are_refused_with_the_reason(text, message):
    with pytest.raises(UntrustedInput) as err:
        plain_decimal(text)
    assert message in err.value.message


@given(st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=8,
                   allow_nan=False, allow_infinity=False))
def test_plain_decimals_within_bounds_are_exact(value):
    assert plain_decimal(str(value)) == value
    assert plain_decimal(format(value, "f")) == value


def test_json_nested_to_the_limit_is_read_and_one_more_level_is_refused():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert decode_json(at_limit.encode()) is not None
    for too_deep in ("[" + at_limit + "]", '{"a": ' * 40 + "1" + "}" * 40,
                     "[" * 100_000 + "]" * 100_000):
        with pytest.raises(UntrustedInput) as err:
            decode_json(too_deep.encode())
        assert "nested" in err.value.message


@pytest.mark.parametrize("body", [b'"a\\u0000b"', b'{"\\u0000": 1}', b'["\\ud800"]', b'{"k": "\\udc00x"}',
                                  b"\xff\xfe{}", b'{"a": 1e99999999999999999999999}'])
def test_json_with_nul_surrogates_bad_utf8_or_unreadable_numbers_is_refused(body):
    with pytest.raises(UntrustedInput):
        decode_json(body)


def test_json_keeps_exact_decimals_and_escaped_text_that_is_fine():
    assert decode_json(b'{"a": 0.1, "b": "\\u00e9\\ud83d\\ude00", "c": "\\\\u0000"}') == {
        "a": Decimal("0.1"), "b": "é😀", "c": "\\u0000"}
    assert decode_json(b"[NaN]", parse_float=float)[0] != decode_json(b"[NaN]", parse_float=float)[0]
    assert json.dumps(decode_json(b"[1.5]", parse_float=float)) == "[1.5]"


def test_days_and_months_stay_within_the_calendar_the_code_can_compute_with():
    assert calendar_day("2026-11-23") == date(2026, 11, 23)
    assert calendar_month("2026-11") == date(2026, 11, 1)
    for text in ("0001-01-01", "9999-12-31", "1999-12-31", "3000-01-01", "2026-02-30", "20261123",
                 "2026-W47-1", "2026-11-23T00:00", "2026-1-1"):
        with pytest.raises(UntrustedInput):
            calendar_day(text)
    for text in ("9999-12", "0001-01", "2026-13", "2026-00", "2026-1", "2026-11-01"):
        with pytest.raises(UntrustedInput):
            calendar_month(text)


def test_a_retry_after_is_capped_and_anything_but_seconds_is_ignored():
    assert retry_after_seconds("30", cap=3600) == 30
    assert retry_after_seconds("9" * 5000, cap=3600) == 3600
    assert retry_after_seconds(" 7 ", cap=3600) == 7
    for header in (None, "", "²", "-1", "Wed, 21 Oct 2026 07:28:00 GMT", "1.5"):
        assert retry_after_seconds(header, cap=3600) is None
