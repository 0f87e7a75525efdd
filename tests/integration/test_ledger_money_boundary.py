"""`ledger check` proves the money boundary: every won credited to a merchant is backed by
sats received at the locked rate, a city 0-conf loss entry, or an approved off-chain
credit; no payout exceeds the merchant's backed credits. Entries that break it are
written straight into the ledger tables (as a bug or a hand edit would), on SQLite and
PostgreSQL."""
from __future__ import annotations

import json

import pytest

from settlement.ledger import Entry, Line, post
from tests.integration.test_settlement_support import (create_invoice, new_store, post_all,
                                                       set_invoice, settled_invoice,
                                                       sgateway)  # noqa: F401

pytestmark = pytest.mark.usefixtures("sgateway")


def check(app) -> tuple[int, dict]:
    res = app.test_cli_runner().invoke(args=["ledger", "check"])
    return res.exit_code, json.loads(res.output)


def write(gateway, *entries: Entry) -> None:
    with gateway.db.write() as session:
        for entry in entries:
            assert post(session, entry)


def problems_for(report, invoice_id) -> set[str]:
    return {p["problem"] for p in report["problems"] if p.get("invoiceId") == invoice_id}


def test_a_credit_beyond_the_sats_received_fails_the_check_naming_the_invoice(app, sgateway, clock):
    store = new_store(app)
    invoice = create_invoice(sgateway, store, 99_000_000)
    set_invoice(sgateway, invoice, status="Expired", additional="PaidPartial", paid_sats=1_000)
    post_all(sgateway)
    assert check(app)[0] == 0
    # a ₩99M credit for 1,000 sats, balanced against the city's won
    write(sgateway, Entry("forged:1", "manual_credit", (
        Line(f"merchant_payable:{store}", "KRW", -98_010_000),
        Line("treasury:krw", "KRW", 98_010_000)), store_id=store, invoice_id=invoice))
    code, report = check(app)
    assert code == 1
    assert "merchant credit exceeds what was received" in problems_for(report, invoice)


def test_won_recognised_beyond_the_value_of_the_sats_fails_the_check(app, sgateway):
    store = new_store(app)
    invoice = settled_invoice(sgateway, store, 15_000, paid_sats=9_500)  # worth ₩14,250
    post_all(sgateway)
    assert check(app)[0] == 0
    write(sgateway, Entry("forged:2", "invoice_adjustment", (
        Line("conversion:krw", "KRW", 750), Line(f"merchant_payable:{store}", "KRW", -750)),
        store_id=store, invoice_id=invoice))
    code, report = check(app)
    assert code == 1
    assert "won recognised beyond the value of the sats received" in problems_for(report, invoice)


def test_a_merchant_credit_with_no_invoice_behind_it_fails_the_check(app, sgateway):
    store = new_store(app)
    write(sgateway, Entry("forged:3", "manual_credit", (
        Line(f"merchant_payable:{store}", "KRW", -5_000), Line("treasury:krw", "KRW", 5_000)),
        store_id=store))
    code, report = check(app)
    assert code == 1
    assert any(p["problem"] == "merchant credit with no invoice behind it"
               and p["storeId"] == store for p in report["problems"])


def test_a_payout_beyond_the_backed_credits_fails_the_check(app, sgateway, clock):
    from settlement.daily import run_settlement

    store = new_store(app)
    invoice = settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    clock.advance(days=1)
    run_settlement(sgateway)
    assert check(app)[0] == 0
    # the merchant's credit is quietly cut after it was paid out (no incident)
    write(sgateway, Entry("forged:4", "invoice_adjustment", (
        Line("conversion:krw", "KRW", -15_000), Line(f"merchant_payable:{store}", "KRW", 14_850),
        Line("city_fees:krw", "KRW", 150)), store_id=store, invoice_id=invoice))
    code, report = check(app)
    assert code == 1
    assert any(p["problem"] == "payouts exceed the merchant's backed credits"
               and p["storeId"] == store for p in report["problems"])


def test_a_credit_paid_out_before_a_deep_reorg_took_it_back_is_the_flagged_incident_not_a_failure(
        app, sgateway, clock):
    from settlement.daily import run_settlement
    from settlement.posting_job import sweep

    store = new_store(app)
    invoice = settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    clock.advance(days=1)
    run_settlement(sgateway)
    set_invoice(sgateway, invoice, status="Settled", paid_sats=0, incident="deep-reorg", event="")
    sweep(sgateway)
    clock.advance(minutes=10)
    code, report = check(app)
    assert code == 0, report["problems"]


def test_a_city_loss_entry_needs_a_zero_conf_incident(app, sgateway, clock):
    from settlement.posting_job import sweep

    store = new_store(app)
    lost = settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    set_invoice(sgateway, lost, status="Settled", paid_sats=0, incident="zero-conf-loss",
                event="")
    sweep(sgateway)
    clock.advance(minutes=10)
    assert check(app)[0] == 0
    other = settled_invoice(sgateway, store, 15_000, paid_sats=5_000)
    post_all(sgateway)
    write(sgateway, Entry("forged:5", "invoice_adjustment", (
        Line("city_loss:krw", "KRW", 7_000), Line(f"merchant_payable:{store}", "KRW", -7_000)),
        store_id=store, invoice_id=other))
    clock.advance(minutes=10)
    code, report = check(app)
    assert code == 1
    assert "a city loss entry without a 0-conf incident" in problems_for(report, other)
    assert not problems_for(report, lost)


def test_an_offchain_credit_needs_an_approved_treasury_decision(app, sgateway, clock):
    from settlement.rules import offchain_credit_entry

    store = new_store(app)
    invoice = create_invoice(sgateway, store, 15_000)
    write(sgateway, offchain_credit_entry("nobody-approved", store, invoice, 15_000,
                                          proposed_by="u1", approved_by="u2", reason="cash"))
    code, report = check(app)
    assert code == 1
    assert "off-chain credit without an approved treasury decision" in problems_for(report, invoice)


def test_an_overpayment_a_person_credited_then_lost_in_a_deep_reorg_is_an_incident_not_a_failure(
        app, sgateway, clock):
    from settlement.posting_job import sweep
    from settlement.refunds import credit_to_merchant

    store = new_store(app)
    invoice = settled_invoice(sgateway, store, 15_000, paid_sats=12_000, additional="PaidOver")
    post_all(sgateway)
    with sgateway.db.write() as session:
        credit_to_merchant(session, invoice, 2_000, "treasury", clock(), 100)
    set_invoice(sgateway, invoice, status="Settled", paid_sats=0, incident="deep-reorg", event="")
    sweep(sgateway)
    clock.advance(minutes=10)
    code, report = check(app)
    assert code == 0, report["problems"]
    (incident,) = report["incidents"]
    assert incident["invoiceId"] == invoice and incident["incident"] == "deep-reorg"
