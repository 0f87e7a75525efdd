"""The 사업자등록번호 check digit (weights 1,3,7,1,3,7,1,3,5 and the ×5 carry)."""
from __future__ import annotations

import pytest

from onboarding.brn import check_digit, display_brn, normalize_brn


def test_the_check_digit_follows_the_weights_and_the_carry_of_the_ninth_digit():
    # 1·1+2·3+3·7+4·1+5·3+6·7+7·1+8·3+9·5 = 165, carry 9·5//10 = 4 → 169 → check 1
    assert check_digit("123456789") == 1
    # 1·1+0·3+1·7+8·1+2·3+0·7+0·1+0·3+4·5 = 42, carry 2 → 44 → check 6
    assert check_digit("101820004") == 6
    # all zeros: sum 0 → check 0
    assert check_digit("000000000") == 0
    # 2·1+2·3+0+8·1+1·3+0+0+0+1·5 = 24, carry 0 → check 6
    assert check_digit("220810001") == 6


@pytest.mark.parametrize("text, digits", [
    ("1234567891", "1234567891"),
    ("123-45-67891", "1234567891"),
    (" 101-82-00046 ", "1018200046"),
    ("2208100016", "2208100016"),
])
def test_valid_numbers_are_accepted_with_or_without_hyphens(text, digits):
    assert normalize_brn(text) == digits


@pytest.mark.parametrize("text", [
    "1234567890",      # check digit should be 1
    "123-45-67892",
    "1018200047",
    "123456789",       # nine digits
    "12345678911",     # eleven
    "12-345-67891",    # hyphens in the wrong places
    "12345a7891",
    "",
    "<script>1234567891</script>",
])
def test_wrong_check_digits_and_malformed_numbers_are_refused(text):
    assert normalize_brn(text) is None


def test_a_number_is_shown_in_the_usual_three_two_five_groups():
    assert display_brn("1234567891") == "123-45-67891"
