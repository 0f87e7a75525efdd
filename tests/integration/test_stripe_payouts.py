"""Stripe payouts through the real stripe library over HTTP against a local Stripe double."""
from __future__ import annotations

import pytest
import stripe

from settlement.config import SettlementConfig
from settlement.models import Payout
from tests.fakes.stripe_server import StripeFake
from tests.integration.test_settlement_support import (balance_of, new_store, settled_invoice,
                                                       sgateway)  # noqa: F401

ACCOUNT = "acct_1BusanHaeundae01"


@pytest.fixture
def fake():
    with StripeFake() as server:
        yield server


@pytest.fixture
def stripe_gateway(sgateway, fake):
    def configure(**overrides):
        cfg = dict(payout_rail="stripe", min_payout_krw=1000, auto_settlement=False,
                   stripe_api_key=fake.api_key, stripe_api_base=fake.url,
                   stripe_webhook_secret=fake.webhook_secret, stripe_timeout=1.0,
                   stripe_max_retries=0)
        cfg.update(overrides)
        sgateway.extras["settlement_config"] = SettlementConfig(**cfg)
        sgateway.extras.pop("payout_rails", None)
        return sgateway

    configure()
    sgateway.extras["configure"] = configure
    return sgateway


def stripe_store(app, gateway, account=ACCOUNT, name="Haeundae Surf") -> str:
    from settlement.payouts import set_payout_account

    store = new_store(app, name=name)
    with gateway.db.write() as session:
        set_payout_account(session, store, stripe_account_id=account, rail="stripe")
    return store


def run(gateway, day="2026-11-23"):
    from datetime import date

    from settlement.daily import run_settlement

    return run_settlement(gateway, date.fromisoformat(day))


def payouts(gateway) -> list[Payout]:
    from sqlalchemy import select

    with gateway.db.read() as session:
        return list(session.execute(select(Payout).order_by(Payout.day)).scalars())


def ledger_ok(gateway) -> bool:
    from settlement.reconcile import check_ledger

    report = check_ledger(gateway)
    assert report["ok"], report["problems"]
    return True


def test_a_settlement_run_sends_one_connect_transfer_of_whole_won(app, stripe_gateway, fake, clock):
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store, 15_000)
    settled_invoice(stripe_gateway, store, 5_000)
    clock.advance(days=1)
    result = run(stripe_gateway)
    assert [(c["storeId"], c["amount"], c["currency"], c["rail"], c["status"])
            for c in result["created"]] == [(store, "19800", "KRW", "stripe", "sent")]
    [transfer] = fake.transfers.values()
    payout_id = result["created"][0]["payoutId"]
    assert transfer["amount"] == 19_800 and transfer["currency"] == "krw"
    assert transfer["destination"] == ACCOUNT and transfer["metadata"]["payout_id"] == payout_id
    assert ("POST", "/v1/transfers", payout_id) in fake.requests  # Idempotency-Key = payout id
    [payout] = payouts(stripe_gateway)
    assert payout.status == "sent" and payout.external_id == transfer["id"]
    assert balance_of(stripe_gateway, f"merchant_payable:{store}") == 0
    assert balance_of(stripe_gateway, "payouts_in_transit:krw") == -19_800
    assert run(stripe_gateway)["created"] == [] and len(fake.transfers) == 1
    assert ledger_ok(stripe_gateway)


def test_a_merchant_without_a_connected_account_goes_to_the_bank_file(app, stripe_gateway, fake, clock):
    store = new_store(app)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    [created] = run(stripe_gateway)["created"]
    assert created["rail"] == "bankfile" and fake.transfers == {}


@pytest.mark.parametrize("fault", ["500_after_create", "hang_after_create"])
def test_a_failure_after_stripe_created_the_transfer_never_pays_twice(app, stripe_gateway, fake,
                                                                     clock, fault):
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    fake.hang_seconds = 3.0
    fake.fail_next(fault)
    first = run(stripe_gateway)
    assert first["created"][0]["status"] == "created"  # we do not know it went through
    assert len(fake.transfers) == 1
    [payout] = payouts(stripe_gateway)
    assert payout.attempts == 1 and payout.last_error
    assert ledger_ok(stripe_gateway)
    second = run(stripe_gateway)  # the retry replays the first transfer
    assert second["created"] == [] and second["retried"][0]["status"] == "sent"
    assert len(fake.transfers) == 1
    [payout] = payouts(stripe_gateway)
    assert payout.status == "sent" and payout.external_id == next(iter(fake.transfers))
    assert ledger_ok(stripe_gateway)


def test_a_retry_after_stripe_forgot_the_idempotency_key_finds_the_first_transfer(
        app, stripe_gateway, fake, clock):
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    fake.fail_next("500_after_create")
    run(stripe_gateway)
    fake._idempotency.clear()  # Stripe keeps keys for 24 hours only
    [retried] = run(stripe_gateway)["retried"]
    assert retried["status"] == "sent" and len(fake.transfers) == 1
    assert retried["externalId"] == next(iter(fake.transfers))


def test_the_stripe_library_retrying_a_500_gets_the_first_transfer(app, stripe_gateway, fake, clock):
    stripe_gateway.extras["configure"](stripe_max_retries=2)
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    fake.fail_next("500_after_create")
    [created] = run(stripe_gateway)["created"]
    assert created["status"] == "sent" and len(fake.transfers) == 1


def test_the_double_refuses_one_idempotency_key_with_other_parameters(fake):
    client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})
    params = {"amount": 1000, "currency": "krw", "destination": ACCOUNT}
    first = client.v1.transfers.create(params, {"idempotency_key": "k1"})
    again = client.v1.transfers.create(params, {"idempotency_key": "k1"})
    assert first.id == again.id and len(fake.transfers) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.transfers.create({**params, "amount": 1001}, {"idempotency_key": "k1"})
    assert len(fake.transfers) == 1


def test_a_declined_transfer_is_left_for_a_person_and_moves_no_money(app, stripe_gateway, fake, clock):
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    fake.fail_next("decline")
    run(stripe_gateway)
    [payout] = payouts(stripe_gateway)
    assert payout.status == "created" and payout.needs_attention and fake.transfers == {}
    assert ledger_ok(stripe_gateway)


# -- webhooks ---------------------------------------------------------------------------

def paid_out(app, gateway, clock) -> tuple[str, Payout]:
    store = stripe_store(app, gateway)
    settled_invoice(gateway, store)
    clock.advance(days=1)
    run(gateway)
    [payout] = payouts(gateway)
    return store, payout


def test_a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(app, client, stripe_gateway,
                                                                      fake, clock):
    store, payout = paid_out(app, stripe_gateway, clock)
    obj = fake.payout_object(payout.amount_krw, status="paid")
    for kwargs in ({"secret": "whsec_wrong"}, {"timestamp": int(__import__("time").time()) - 301}):
        body, headers = fake.webhook("payout.paid", obj, account=ACCOUNT, **kwargs)
        res = client.post("/stripe/webhook", data=body, headers=headers)
        assert res.status_code == 400
    body, headers = fake.webhook("payout.paid", obj, account=ACCOUNT)
    headers["Stripe-Signature"] = "garbage"
    assert client.post("/stripe/webhook", data=body, headers=headers).status_code == 400
    assert payouts(stripe_gateway)[0].status == "sent"
    assert balance_of(stripe_gateway, "payouts_in_transit:krw") == -14_850


def test_payout_paid_confirms_the_payout_once(app, client, stripe_gateway, fake, clock):
    store, payout = paid_out(app, stripe_gateway, clock)
    event = fake.event("payout.paid", fake.payout_object(payout.amount_krw, status="paid"),
                       account=ACCOUNT)
    for _ in range(2):  # Stripe redelivers: applied once
        body, headers = fake.webhook("payout.paid", {}, event=event)
        res = client.post("/stripe/webhook", data=body, headers=headers)
        assert res.status_code == 200 and res.get_json().get("payouts") in ([payout.id], None)
    assert payouts(stripe_gateway)[0].status == "paid"
    assert balance_of(stripe_gateway, "payouts_in_transit:krw") == 0
    assert balance_of(stripe_gateway, "treasury:krw") == -14_850
    assert ledger_ok(stripe_gateway)


def test_payout_failed_reverses_the_transfer_and_returns_the_money(app, client, stripe_gateway,
                                                                   fake, clock):
    store, payout = paid_out(app, stripe_gateway, clock)
    body, headers = fake.webhook("payout.failed", fake.payout_object(
        payout.amount_krw, status="failed", failure_code="account_closed"), account=ACCOUNT)
    res = client.post("/stripe/webhook", data=body, headers=headers)
    assert res.status_code == 200, res.get_json()
    [failed] = payouts(stripe_gateway)
    assert failed.status == "failed" and failed.needs_attention
    transfer = fake.transfers[failed.external_id]
    assert transfer["reversed"] and transfer["amount_reversed"] == 14_850
    assert balance_of(stripe_gateway, f"merchant_payable:{store}") == -14_850
    assert balance_of(stripe_gateway, "payouts_in_transit:krw") == 0
    assert ledger_ok(stripe_gateway)
    # the next daily run pays it again (a new payout, a new transfer)
    clock.advance(days=1)
    [again] = run(stripe_gateway, "2026-11-24")["created"]
    assert again["amount"] == "14850" and len(fake.transfers) == 2
    assert ledger_ok(stripe_gateway)


def test_transfer_created_repairs_a_payout_whose_answer_was_lost(app, client, stripe_gateway,
                                                                fake, clock):
    store = stripe_store(app, stripe_gateway)
    settled_invoice(stripe_gateway, store)
    clock.advance(days=1)
    fake.fail_next("500_after_create")
    run(stripe_gateway)
    [transfer] = fake.transfers.values()
    body, headers = fake.webhook("transfer.created", transfer)
    assert client.post("/stripe/webhook", data=body, headers=headers).status_code == 200
    [payout] = payouts(stripe_gateway)
    assert payout.status == "sent" and payout.external_id == transfer["id"]
    assert run(stripe_gateway)["retried"] == [] and len(fake.transfers) == 1


def test_transfer_reversed_returns_the_money_to_the_merchant(app, client, stripe_gateway, fake, clock):
    store, payout = paid_out(app, stripe_gateway, clock)
    transfer = dict(fake.transfers[payout.external_id], reversed=True, amount_reversed=14_850)
    body, headers = fake.webhook("transfer.reversed", transfer)
    assert client.post("/stripe/webhook", data=body, headers=headers).status_code == 200
    assert payouts(stripe_gateway)[0].status == "returned"
    assert balance_of(stripe_gateway, f"merchant_payable:{store}") == -14_850
    assert ledger_ok(stripe_gateway)


def test_webhooks_arrive_over_real_http_too(app, stripe_gateway, fake, clock):
    import threading

    from werkzeug.serving import make_server

    store, payout = paid_out(app, stripe_gateway, clock)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = fake.deliver(f"http://127.0.0.1:{server.server_port}/stripe/webhook", "payout.paid",
                           fake.payout_object(payout.amount_krw, status="paid"), account=ACCOUNT)
        assert res.status_code == 200, res.text
    finally:
        server.shutdown()
    assert payouts(stripe_gateway)[0].status == "paid"
