"""Posting rules: fees rounded half up, and the entries each invoice outcome makes."""
from __future__ import annotations

from decimal import Decimal

import pytest

from settlement import rules
from settlement.rules import InvoiceFacts, city_fee, invoice_entry, invoice_position

RATE = Decimal("150000000")


def facts(**changes) -> InvoiceFacts:
    base = dict(invoice_id="inv1", store_id="s1", settlement_mode="krw", status="Settled",
                additional_status="None", incident=None, amount_krw=15_000, due_sats=10_000,
                paid_sats=10_000, rate=RATE, fee_bps=100)
    base.update(changes)
    return InvoiceFacts(**base)


def lines(entry) -> dict:
    return {(l.account, l.currency): l.amount for l in entry.lines}


@pytest.mark.parametrize("price,bps,fee", [
    (15_000, 100, 150),   # the worked example
    (50, 100, 1),         # 0.5 won rounds up
    (49, 100, 0),         # 0.49 won rounds down
    (150, 100, 2),        # 1.5 rounds up
    (250, 100, 3),        # 2.5 rounds up (half up, not to even)
    (1_005, 50, 5),       # 5.025 rounds down
    (1_010, 50, 5),       # 5.05 → 5
    (1_100, 50, 6),       # 5.5 → 6
    (0, 100, 0),
    (99_999_999, 10_000, 99_999_999),
    (12_345, 0, 0),
])
def test_the_city_fee_is_price_times_bps_over_ten_thousand_rounded_half_up(price, bps, fee):
    assert city_fee(price, bps) == fee


def test_fee_inputs_that_are_not_whole_won_or_sane_bps_are_refused():
    with pytest.raises(ValueError):
        city_fee(-1, 100)
    with pytest.raises(ValueError):
        city_fee(100, 10_001)
    with pytest.raises(ValueError):
        city_fee(Decimal("100"), 100)


def test_a_settled_invoice_credits_the_merchant_the_price_less_the_fee():
    entry = invoice_entry(facts(), {}, seq=0)
    assert entry.business_key == "invoice:inv1:settled" and entry.kind == "invoice_settled"
    assert lines(entry) == {
        ("treasury:btc", "BTC"): 10_000, ("conversion:btc", "BTC"): -10_000,
        ("conversion:krw", "KRW"): 15_000, ("merchant_payable:s1", "KRW"): -14_850,
        ("city_fees:krw", "KRW"): -150}


def test_posting_the_same_facts_again_makes_no_entry():
    posted = invoice_position(facts())
    assert invoice_entry(facts(), posted, seq=1) is None


def test_an_overpayment_is_owed_to_the_payer_not_the_merchant():
    entry = invoice_entry(facts(paid_sats=12_500, additional_status="PaidOver"), {}, seq=0)
    got = lines(entry)
    assert got[("treasury:btc", "BTC")] == 12_500
    assert got[("conversion:btc", "BTC")] == -10_000
    assert got[("refunds_owed:btc", "BTC")] == -2_500
    assert got[("merchant_payable:s1", "KRW")] == -14_850


def test_an_extra_payment_after_settlement_adds_only_what_is_owed_to_the_payer():
    posted = invoice_position(facts())
    entry = invoice_entry(facts(paid_sats=11_000, additional_status="PaidOver"), posted, seq=1)
    assert entry.business_key == "invoice:inv1:adj:1" and entry.kind == "invoice_adjustment"
    assert lines(entry) == {("treasury:btc", "BTC"): 1_000, ("refunds_owed:btc", "BTC"): -1_000}


def test_an_underpayment_within_tolerance_credits_only_the_value_received_less_its_fee():
    # 9,900 sats at 150,000,000 won/BTC are worth ₩14,850 (not the ₩15,000 price); the fee
    # is on what is credited: 148.5 → 149 (half up).
    got = lines(invoice_entry(facts(paid_sats=9_900), {}, seq=0))
    assert got == {("treasury:btc", "BTC"): 9_900, ("conversion:btc", "BTC"): -9_900,
                   ("conversion:krw", "KRW"): 14_850, ("merchant_payable:s1", "KRW"): -14_701,
                   ("city_fees:krw", "KRW"): -149}


def test_the_credited_value_rounds_down_so_it_never_exceeds_what_was_received():
    # 9,999 sats are worth ₩14,998.5: the merchant is credited ₩14,998, never ₩14,999.
    f = facts(paid_sats=9_999)
    assert f.credited_krw == 14_998 and f.fee_krw == 150
    assert lines(invoice_entry(f, {}, seq=0))[("merchant_payable:s1", "KRW")] == -14_848


def test_a_full_payment_of_a_price_rounded_up_to_whole_sats_is_capped_at_the_price():
    # ₩15,001 needs 10,001 sats (rounded up), worth ₩15,001.5: the merchant gets the price.
    f = facts(amount_krw=15_001, due_sats=10_001, paid_sats=10_001)
    assert f.credited_krw == 15_001


@pytest.mark.parametrize("status,additional", [("Expired", "PaidLate"), ("Expired", "PaidPartial")])
def test_money_on_an_unsettled_invoice_is_owed_to_the_payer(status, additional):
    entry = invoice_entry(facts(status=status, additional_status=additional, paid_sats=4_000), {}, seq=0)
    assert entry.business_key == "invoice:inv1:owed" and entry.kind == "invoice_payer_owed"
    assert lines(entry) == {("treasury:btc", "BTC"): 4_000, ("refunds_owed:btc", "BTC"): -4_000}


def test_an_unpaid_invoice_marked_settled_credits_nothing():
    assert invoice_entry(facts(additional_status="Marked", chain_status="New", paid_sats=0),
                         {}, seq=0) is None
    # marked before the chain status was kept: treated as New until the watcher decides
    assert invoice_entry(facts(additional_status="Marked", paid_sats=0), {}, seq=0) is None


def test_a_mark_never_moves_money_the_chain_status_does():
    settled = invoice_position(facts())
    # a chain-settled invoice marked Invalid by its merchant stays credited
    assert invoice_position(facts(status="Invalid", additional_status="Marked",
                                  chain_status="Settled")) == settled
    # an expired partly paid invoice marked Settled: the sats stay owed to the payer
    entry = invoice_entry(facts(additional_status="Marked", chain_status="Expired",
                                paid_sats=4_000), {}, seq=0)
    assert lines(entry) == {("treasury:btc", "BTC"): 4_000, ("refunds_owed:btc", "BTC"): -4_000}
    # a marked Processing invoice that the chain then settles is credited what came
    assert invoice_position(facts(additional_status="Marked", chain_status="Settled")) == settled


def test_an_invoice_invalid_because_never_confirmed_posts_nothing():
    assert invoice_entry(facts(status="Invalid", paid_sats=10_000), {}, seq=0) is None
    assert invoice_entry(facts(status="Processing"), {}, seq=0) is None
    assert invoice_entry(facts(status="Expired", paid_sats=0), {}, seq=0) is None


def test_a_deep_reorg_reverses_the_credit_in_a_flagged_entry():
    posted = invoice_position(facts())
    entry = invoice_entry(facts(incident="deep-reorg", paid_sats=0), posted, seq=1)
    assert entry.kind == "invoice_reversal" and "incident" in entry.flags
    assert lines(entry) == {
        ("treasury:btc", "BTC"): -10_000, ("conversion:btc", "BTC"): 10_000,
        ("conversion:krw", "KRW"): -15_000, ("merchant_payable:s1", "KRW"): 14_850,
        ("city_fees:krw", "KRW"): 150}


def test_sats_still_there_after_a_reorg_incident_are_held_for_the_payer():
    posted = invoice_position(facts())
    entry = invoice_entry(facts(incident="deep-reorg", paid_sats=4_000), posted, seq=1)
    got = lines(entry)
    assert got[("treasury:btc", "BTC")] == -6_000 and got[("refunds_owed:btc", "BTC")] == -4_000
    assert got[("merchant_payable:s1", "KRW")] == 14_850


def test_a_btc_direct_store_gets_no_conversion_only_a_fee_receivable():
    entry = invoice_entry(facts(settlement_mode="btc"), {}, seq=0)
    assert entry.kind == "invoice_settled"
    assert lines(entry) == {("fee_receivable:s1", "KRW"): 150, ("city_fees:krw", "KRW"): -150}
    assert "10000 sats to the store's own wallet" in entry.memo


def test_a_top_up_is_worth_the_sats_paid_at_the_locked_rate_rounded_down():
    f = facts(amount_krw=None, due_sats=0, paid_sats=3, rate=Decimal("150000000"))
    assert f.price_krw is None and f.credited_krw == 4  # 4.5 won → 4
    got = lines(invoice_entry(f, {}, seq=0))
    assert got[("conversion:btc", "BTC")] == -3 and ("refunds_owed:btc", "BTC") not in got
    assert got[("merchant_payable:s1", "KRW")] == -4


def test_a_marked_invoice_entry_is_flagged_and_its_memo_names_the_chain_status():
    entry = invoice_entry(facts(status="Invalid", additional_status="Marked",
                                chain_status="Settled"), {}, seq=0)
    assert "marked" in entry.flags and "chain status Settled" in entry.memo
    assert lines(entry)[("merchant_payable:s1", "KRW")] == -14_850


def test_a_lost_zero_conf_payment_stays_credited_and_the_city_carries_the_loss():
    posted = invoice_position(facts(settled_sats=10_000))
    entry = invoice_entry(facts(settled_sats=10_000, paid_sats=0, incident="zero-conf-loss"),
                          posted, seq=1)
    assert "incident" in entry.flags and "city-loss" in entry.flags
    assert lines(entry) == {("treasury:btc", "BTC"): -10_000, ("conversion:btc", "BTC"): 10_000,
                            ("conversion:krw", "KRW"): -15_000, ("city_loss:krw", "KRW"): 15_000}
    # part of it still there: the city carries only the shortfall
    part = invoice_position(facts(settled_sats=10_000, paid_sats=4_000,
                                  incident="zero-conf-loss"))
    assert part[("conversion:krw", "KRW")] == 6_000 and part[("city_loss:krw", "KRW")] == 9_000
    assert part[("merchant_payable:s1", "KRW")] == -14_850


def test_a_zero_conf_loss_found_before_the_first_posting_still_credits_what_settled():
    got = invoice_position(facts(settled_sats=10_000, paid_sats=0, incident="zero-conf-loss"))
    assert got == {("city_loss:krw", "KRW"): 15_000, ("merchant_payable:s1", "KRW"): -14_850,
                   ("city_fees:krw", "KRW"): -150}


def test_a_btc_direct_store_has_no_city_loss():
    got = invoice_position(facts(settlement_mode="btc", settled_sats=10_000, paid_sats=0,
                                 incident="zero-conf-loss"))
    assert got == {}


def test_an_offchain_credit_needs_two_different_people():
    entry = rules.offchain_credit_entry("c1", "s1", "inv1", 5_000, proposed_by="u1",
                                        approved_by="u2", reason="cash for the rest")
    assert entry.kind == "offchain_credited" and entry.business_key == "offchain:c1"
    assert lines(entry) == {("city_offchain:krw", "KRW"): 5_000,
                            ("merchant_payable:s1", "KRW"): -5_000}
    with pytest.raises(ValueError):
        rules.offchain_credit_entry("c2", "s1", "inv1", 5_000, proposed_by="u1",
                                    approved_by="u1", reason="alone")
    with pytest.raises(ValueError):
        rules.offchain_credit_entry("c3", "s1", "inv1", 0, proposed_by="u1",
                                    approved_by="u2", reason="nothing")


def test_conversion_books_the_difference_from_the_locked_value_as_fx():
    entry = rules.conversion_entry("c1", 10_000, 15_040, 15_000, Decimal("150400000"),
                                   venue="partner")
    assert lines(entry) == {("conversion:btc", "BTC"): 10_000,
                            ("venue_btc:partner", "BTC"): -10_000,
                            ("exchange:krw", "KRW"): 15_040, ("conversion:krw", "KRW"): -15_000,
                            ("fx:krw", "KRW"): -40}
    loss = rules.conversion_entry("c2", 10_000, 14_900, 15_000, Decimal("149000000"),
                                  venue="partner")
    assert lines(loss)[("fx:krw", "KRW")] == 100


def test_a_deposit_moves_treasury_btc_to_the_venue_and_a_return_moves_it_back():
    deposit = rules.venue_deposit_entry("c1", "partner", 10_000)
    assert deposit.business_key == "venue_deposit:c1"
    assert lines(deposit) == {("venue_btc:partner", "BTC"): 10_000,
                              ("treasury:btc", "BTC"): -10_000}
    back = rules.venue_return_entry("c1", "partner", 4_000, "refused")
    assert back.business_key == "venue_return:c1"
    assert lines(back) == {("treasury:btc", "BTC"): 4_000, ("venue_btc:partner", "BTC"): -4_000}
    assert rules.venue_return_entry("c2", "partner", 0, "all sold") is None
    from settlement.ledger import account_kind
    assert account_kind("venue_btc:partner") == ("venue_btc", None)  # not a store's account


def test_the_locked_share_of_a_partial_sale_is_proportional_and_rounded_half_up():
    assert rules.locked_share(1, 3, 10) == 3     # 3.33
    assert rules.locked_share(1, 2, 5) == 3      # 2.5 → 3
    assert rules.locked_share(3, 3, 10) == 10    # the whole pool takes all of it
    assert rules.locked_share(5, 0, 10) == 0


def test_payout_entries_move_money_through_in_transit():
    init = rules.payout_initiated_entry("p1", "s1", 14_850, "2026-11-23")
    assert lines(init) == {("merchant_payable:s1", "KRW"): 14_850,
                           ("payouts_in_transit:krw", "KRW"): -14_850}
    paid = rules.payout_paid_entry("p1", "s1", 14_850)
    assert lines(paid) == {("payouts_in_transit:krw", "KRW"): 14_850, ("treasury:krw", "KRW"): -14_850}
    back = rules.payout_returned_entry("p1", "s1", 14_850, after_paid=False)
    assert lines(back) == {("payouts_in_transit:krw", "KRW"): 14_850,
                           ("merchant_payable:s1", "KRW"): -14_850}
    with pytest.raises(ValueError):
        rules.payout_initiated_entry("p2", "s1", 0, "2026-11-23")


def test_a_person_crediting_an_overpayment_pays_the_merchant_less_the_fee():
    entry = rules.overpayment_credit_entry(facts(), 2_500, "d1")
    assert lines(entry) == {("refunds_owed:btc", "BTC"): 2_500, ("conversion:btc", "BTC"): -2_500,
                            ("conversion:krw", "KRW"): 3_750, ("merchant_payable:s1", "KRW"): -3_712,
                            ("city_fees:krw", "KRW"): -38}
