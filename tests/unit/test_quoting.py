from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from payments.quoting import QuoteError, parse_price, sats_due

rates = st.decimals(min_value=Decimal("1000000"), max_value=Decimal("10000000000"),
                    places=4, allow_nan=False, allow_infinity=False)
wons = st.integers(min_value=1, max_value=100_000_000)


@given(wons, rates)
def test_sats_due_never_under_collects_and_is_never_more_than_one_sat_over(won, rate):
    sats = sats_due(won, rate)
    assert Decimal(sats) * rate >= Decimal(won) * 100_000_000
    assert Decimal(sats - 1) * rate < Decimal(won) * 100_000_000


def test_fifteen_thousand_won_at_150_million_is_ten_thousand_sats():
    assert sats_due(15_000, Decimal("150000000")) == 10_000


def test_a_price_that_does_not_divide_evenly_rounds_up_by_one_sat():
    assert sats_due(1, Decimal("150000000")) == 1  # 0.666… sat
    assert sats_due(15_001, Decimal("150000000")) == 10_001  # 10000.666…


def test_a_rate_of_zero_or_a_float_is_refused():
    with pytest.raises(ValueError):
        sats_due(1000, Decimal("0"))
    with pytest.raises(ValueError):
        sats_due(1000, 150000000.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount,path,fragment", [
    ("12.5", "amount", "whole won"),
    ("-1", "amount", "negative"),
    ("0", "amount", "greater than zero"),
    ("1e12", "amount", "limit"),
    ("abc", "amount", "not a decimal"),
    (True, "amount", "decimal string"),
    (12.5, "amount", "decimal string"),
    ("NaN", "amount", "finite"),
    (None, "amount", "required"),
])
def test_bad_won_amounts_are_refused_with_the_field_named(amount, path, fragment):
    with pytest.raises(QuoteError) as err:
        parse_price(amount, "KRW", max_krw=100_000_000)
    assert err.value.path == path
    assert fragment in err.value.message


def test_unknown_currency_is_refused():
    with pytest.raises(QuoteError) as err:
        parse_price("100", "USD", max_krw=10**8)
    assert err.value.path == "currency"


def test_btc_and_sats_prices_become_whole_satoshis():
    assert parse_price("0.0015", "btc", max_krw=1).amount_sats == 150_000
    assert parse_price(150000, "SATS", max_krw=1).amount_sats == 150_000
    with pytest.raises(QuoteError):
        parse_price("0.000000001", "BTC", max_krw=1)
    with pytest.raises(QuoteError):
        parse_price("1.5", "SATS", max_krw=1)


def test_won_accepts_strings_numbers_and_trailing_zero_decimals():
    assert parse_price("15000", "KRW", max_krw=10**8).amount_krw == 15000
    assert parse_price(15000, None, max_krw=10**8).amount_krw == 15000
    assert parse_price("15000.00", "KRW", max_krw=10**8).amount_krw == 15000
