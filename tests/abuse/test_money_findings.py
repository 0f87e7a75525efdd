"""Issue 9, findings 1–3, as an attacker tries them: a merchant's own API key against the
real HTTP API, the settlement and ledger CLI, the demo chain and the watcher in between;
on SQLite and PostgreSQL. Each test failed on the code the abuse review ran against."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from payments.models import Invoice
from settlement.ledger import balance
from tests.conftest import auth
from tests.integration.test_payment_scenarios import DUE, demo_chain, make_world  # noqa: F401


def cli(app, *args) -> tuple[int, dict | str]:
    res = app.test_cli_runner().invoke(args=list(args))
    try:
        return res.exit_code, json.loads(res.output)
    except ValueError:
        return res.exit_code, res.output


def payable(gateway, store_id) -> int:
    """Won the city owes the merchant (credited, not yet paid out)."""
    with gateway.db.read() as session:
        return -balance(session, f"merchant_payable:{store_id}")


def settle_today(app, clock) -> dict:
    """The posting job and the daily settlement for today, as the operator runs them."""
    clock.advance(minutes=1)  # the day's credits lie before the run's cut-off
    assert cli(app, "settlement", "post")[0] == 0
    day = (clock() + timedelta(hours=9)).date().isoformat()  # Asia/Seoul
    code, report = cli(app, "settlement", "run", "--date", day)
    assert code == 0, report
    return report


def ledger_ok(app) -> dict:
    code, report = cli(app, "ledger", "check", "--strict")
    assert code == 0, report
    return report


@pytest.fixture
def shop(app, client, gateway, clock, demo_chain):  # noqa: F811
    return make_world(app, client, gateway, clock, demo_chain)


def create(shop, body: dict):
    return shop.client.post(f"/api/v1/stores/{shop.store_id}/invoices", json=body,
                            headers=auth(shop.token))


# -- finding 1: marking an unpaid invoice Settled credited the merchant ---------------------

def test_marking_an_unpaid_invoice_settled_credits_nothing_and_settlement_pays_nothing(
        shop, app, gateway, clock):
    big = create(shop, {"amount": "99000000", "currency": "KRW"}).get_json()
    res = shop.client.post(f"/api/v1/stores/{shop.store_id}/invoices/{big['id']}/status",
                           json={"status": "Settled"}, headers=auth(shop.token))
    assert res.status_code == 200
    assert (res.get_json()["status"], res.get_json()["additionalStatus"]) == ("Settled", "Marked")
    # an honest sale in the same store, paid on the chain, so the run has something to pay
    honest = shop.invoice(15_000)
    shop.pay(honest["id"], DUE)
    shop.run()
    shop.chain.mine()
    shop.run()
    assert shop.status(honest["id"]) == ("Settled", "None")
    report = settle_today(app, clock)
    (payout,) = report["created"]
    assert payout["amount"] == "14850"  # ₩15,000 less the 1 % fee; nothing for the mark
    assert payable(gateway, shop.store_id) == 0
    ledger_ok(app)
    # the shop still sees its mark: the Greenfield status is the merchant's to set
    assert shop.status(big["id"]) == ("Settled", "Marked")


def test_a_paid_invoice_marked_invalid_stays_credited_what_the_chain_received(
        shop, app, gateway, clock):
    inv = shop.invoice(15_000)
    shop.pay(inv["id"], DUE)
    shop.run()  # Processing
    res = shop.client.post(f"/api/v1/stores/{shop.store_id}/invoices/{inv['id']}/status",
                           json={"status": "invalid"}, headers=auth(shop.token))
    assert res.status_code == 200
    shop.chain.mine()
    shop.run()  # the chain settles it; the shop keeps seeing its mark
    assert shop.status(inv["id"]) == ("Invalid", "Marked")
    assert shop.row(inv["id"]).chain_status == "Settled"
    settle_today(app, clock)
    assert payable(gateway, shop.store_id) == 0  # paid out: ₩14,850 went in the payout
    report = ledger_ok(app)
    balances = {r["account"]: r["balance"] for r in report["trialBalance"]}
    assert balances["city_fees:krw"] == "-150" and balances["conversion:krw"] == "15000"


def test_an_expired_partly_paid_invoice_marked_settled_leaves_the_sats_owed_to_the_payer(
        shop, app, gateway, clock):
    inv = shop.invoice(15_000)
    shop.pay(inv["id"], 4_000)
    shop.run()
    shop.chain.mine()
    shop.run()
    shop.client.post(f"/api/v1/stores/{shop.store_id}/invoices/{inv['id']}/status",
                     json={"status": "Settled"}, headers=auth(shop.token))
    clock.advance(minutes=20)  # past expiry: the chain says Expired/PaidPartial
    shop.run()
    assert shop.row(inv["id"]).chain_status == "Expired"
    settle_today(app, clock)
    assert payable(gateway, shop.store_id) == 0
    with gateway.db.read() as session:
        assert balance(session, "refunds_owed:btc") == -4_000
    ledger_ok(app)


# -- finding 2: a 100 % tolerance turned 1,000 sats into a ₩99M credit ----------------------

def test_a_tolerance_above_the_citys_maximum_is_refused_with_422(shop, gateway):
    res = create(shop, {"amount": "99000000", "checkout": {"paymentTolerance": 100}})
    assert res.status_code == 422
    assert [e["path"] for e in res.get_json()] == ["checkout.paymentTolerance"]
    assert "at most 5" in res.get_json()[0]["message"]
    with gateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(Invoice)).scalar_one() == 0
    assert create(shop, {"amount": "15000", "checkout": {"paymentTolerance": 5}}).status_code == 200


def test_a_short_payment_within_tolerance_settles_but_credits_only_what_came(
        shop, app, gateway, clock):
    inv = create(shop, {"amount": "15000", "checkout": {"paymentTolerance": 5}}).get_json()
    shop.pay(inv["id"], 9_500)  # 95 %: ₩14,250 received
    shop.run()
    shop.chain.mine()
    shop.run()
    assert shop.status(inv["id"]) == ("Settled", "None")
    clock.advance(minutes=1)
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 14_250 - 143  # fee on ₩14,250: 142.5 → 143
    ledger_ok(app)


def test_a_store_default_tolerance_above_the_maximum_is_refused_readably_in_the_back_office(
        app, client, gateway):
    from accounts.service import create_user
    from backoffice import init_backoffice
    from merchants.models import Store
    from tests.conftest import make_merchant
    from tests.integration.test_pos import OWNER_PW, form_token, sign_in_with_email

    init_backoffice(app)
    store_id, _token = make_merchant(app, name="Seomyeon Books")
    with gateway.db.write() as session:
        create_user(session, role="owner", email="owner@books.kr", password=OWNER_PW,
                    store_id=store_id)
    sign_in_with_email(client, "owner@books.kr", OWNER_PW)
    res = client.post("/merchant/settings?lang=en", data={
        "csrf_token": form_token(client, "/merchant/settings"), "speed_policy": "LowSpeed",
        "payment_tolerance": "100", "zero_conf_limit_krw": "0", "default_language": "ko"})
    assert res.status_code == 422
    assert "at most 5 %" in res.get_data(as_text=True)
    with gateway.db.read() as session:
        assert session.get(Store, store_id).payment_tolerance == 0


# -- finding 3: BTC- and SATS-priced invoices skipped the won limit --------------------------

@pytest.mark.parametrize("body", [{"amount": "20000000", "currency": "BTC"},
                                  {"amount": "1", "currency": "BTC"},  # ₩150M at the test rate
                                  {"amount": "100000000000", "currency": "SATS"}])
def test_an_invoice_priced_in_bitcoin_is_held_to_the_won_limit(shop, gateway, body):
    res = create(shop, body)
    assert res.status_code == 422
    assert [e["path"] for e in res.get_json()] == ["amount"]
    with gateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(Invoice)).scalar_one() == 0


def test_a_bitcoin_priced_invoice_under_the_won_limit_is_created(shop):
    res = create(shop, {"amount": "0.5", "currency": "BTC"})  # ₩75,000,000
    assert res.status_code == 200 and res.get_json()["amount"] == "0.5"
