"""The ledger's pure core: entries balance per currency before anything touches a database."""
from __future__ import annotations

import pytest

from settlement.ledger import Entry, LedgerError, Line, UnbalancedEntry, account_kind, entry_from_amounts


def test_a_balanced_entry_in_two_currencies_is_accepted():
    entry = Entry("k", "test", [Line("treasury:btc", "BTC", 10_000), Line("conversion:btc", "BTC", -10_000),
                                Line("conversion:krw", "KRW", 15_000),
                                Line("merchant_payable:s1", "KRW", -14_850),
                                Line("city_fees:krw", "KRW", -150)])
    assert entry.totals() == {"BTC": 0, "KRW": 0}


def test_an_entry_that_balances_overall_but_not_per_currency_is_refused():
    with pytest.raises(UnbalancedEntry):
        Entry("k", "test", [Line("treasury:btc", "BTC", 100), Line("merchant_payable:s", "KRW", -100)])


def test_an_entry_off_by_one_won_is_refused():
    with pytest.raises(UnbalancedEntry):
        Entry("k", "test", [Line("a:krw", "KRW", 15_000), Line("b:krw", "KRW", -14_999)])


@pytest.mark.parametrize("amount", [1.0, "1", True])
def test_amounts_that_are_not_integers_are_refused(amount):
    with pytest.raises(LedgerError):
        Entry("k", "test", [Line("a:krw", "KRW", amount), Line("b:krw", "KRW", -1)])


def test_zero_lines_unknown_currencies_and_empty_entries_are_refused():
    with pytest.raises(LedgerError):
        Entry("k", "test", [Line("a:krw", "KRW", 0)])
    with pytest.raises(LedgerError):
        Entry("k", "test", [Line("a:usd", "USD", 1), Line("b:usd", "USD", -1)])
    with pytest.raises(LedgerError):
        Entry("k", "test", [])
    with pytest.raises(LedgerError):
        Entry("", "test", [Line("a:krw", "KRW", 1), Line("b:krw", "KRW", -1)])


def test_one_account_cannot_carry_two_currencies_in_an_entry():
    with pytest.raises(LedgerError):
        Entry("k", "test", [Line("x", "KRW", 1), Line("y:krw", "KRW", -1), Line("x", "BTC", 1),
                            Line("z:btc", "BTC", -1)])


def test_an_entry_from_amounts_drops_zeroes_and_is_none_when_nothing_is_left():
    assert entry_from_amounts("k", "t", {("a:krw", "KRW"): 0}) is None
    entry = entry_from_amounts("k", "t", {("a:krw", "KRW"): 5, ("b:krw", "KRW"): -5, ("c:krw", "KRW"): 0})
    assert [l.account for l in entry.lines] == ["a:krw", "b:krw"]


def test_account_codes_name_their_kind_and_store():
    assert account_kind("merchant_payable:ABC") == ("merchant_payable", "ABC")
    assert account_kind("city_fees:krw") == ("city_fees:krw", None)
    assert account_kind("treasury:btc") == ("treasury:btc", None)
