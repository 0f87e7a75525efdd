"""The merged money path attacked once more (branch `moneyreview`): a merchant's own API key,
the demo chain, the watcher, the posting job and `ledger check`, on SQLite and PostgreSQL.
Each test failed on the code the review ran against."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from dashboard.models import CitySetting
from dashboard.queries import EXPOSURE_CAP_SETTING
from dashboard.rollup import facts, sums, verify
from settlement.ledger import balance
from tests.abuse.test_money_findings import cli, ledger_ok, payable
from tests.conftest import auth
from tests.integration.test_payment_scenarios import DUE, demo_chain, make_world  # noqa: F401


def set_exposure_cap(gateway, krw: int) -> None:
    with gateway.db.write() as session:
        session.add(CitySetting(name=EXPOSURE_CAP_SETTING, value=krw, updated_by="test"))


def city_loss(gateway) -> int:
    with gateway.db.read() as session:
        return balance(session, "city_loss:krw")


# -- a merchant farming the city's 0-conf risk --------------------------------------------

def test_a_merchant_cannot_make_the_city_lose_more_than_its_open_0_conf_exposure_cap(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    """Its own HighSpeed invoices, each under the per-invoice limit, paid by transactions it
    then double-spends: past the city's exposure cap an invoice waits for a confirmation."""
    shop = make_world(app, client, gateway, clock, demo_chain, speed="HighSpeed", limit=50_000)
    set_exposure_cap(gateway, 30_000)
    invoices = [shop.invoice(15_000) for _ in range(3)]
    txids = [shop.pay(inv["id"], DUE) for inv in invoices]
    shop.run()
    assert [shop.status(inv["id"])[0] for inv in invoices] == \
        ["Settled", "Settled", "Processing"]  # the third would pass the cap at 0-conf
    assert shop.row(invoices[2]["id"]).zero_conf_limit_krw == 0
    assert cli(app, "settlement", "post")[0] == 0
    for txid in txids:
        demo_chain.double_spend(txid)
    shop.run()
    demo_chain.mine()
    shop.run()
    assert cli(app, "settlement", "post")[0] == 0
    assert city_loss(gateway) == 30_000  # the cap, not 45,000
    assert payable(gateway, shop.store_id) == 2 * 14_850
    clock.advance(minutes=10)
    ledger_ok(app)


def test_confirmed_0_conf_payments_free_the_cap_again(app, client, gateway, clock,
                                                      demo_chain):  # noqa: F811
    shop = make_world(app, client, gateway, clock, demo_chain, speed="HighSpeed", limit=50_000)
    set_exposure_cap(gateway, 15_000)
    first = shop.invoice(15_000)
    shop.pay(first["id"], DUE)
    shop.run()
    assert shop.row(shop.invoice(15_000)["id"]).zero_conf_limit_krw == 0  # cap taken
    demo_chain.mine()
    shop.run()
    assert shop.status(first["id"])[0] == "Settled"
    # the other (capped) invoice is still open and unpaid: it may never be 0-conf, so it
    # does not count; the confirmed one no longer counts either
    assert shop.row(shop.invoice(15_000)["id"]).zero_conf_limit_krw == 50_000


# -- the city's settled volume follows the money, not a merchant's mark ---------------------

def city_figures(gateway) -> dict:
    with gateway.db.read() as session:
        row = session.execute(select(*sums(facts()))).one()
    return dict(row._mapping)


def test_an_unpaid_invoice_marked_settled_is_no_settled_volume_on_the_city_dashboard(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    shop = make_world(app, client, gateway, clock, demo_chain)
    marked = shop.invoice(99_000)
    res = shop.client.post(f"/api/v1/stores/{shop.store_id}/invoices/{marked['id']}/status",
                           json={"status": "Settled"}, headers=auth(shop.token))
    assert res.status_code == 200
    paid = shop.invoice(15_000)
    shop.pay(paid["id"], DUE)
    shop.run()
    demo_chain.mine()
    shop.run()
    figures = city_figures(gateway)
    assert (figures["settled_n"], figures["settled_krw"], figures["settled_sats"]) == \
        (1, 15_000, DUE)  # the paid sale only; the mark is counted as a mark
    assert (figures["new_n"], figures["marked_n"]) == (1, 1)
    clock.advance(minutes=20)  # the marked one expires on the chain
    shop.run()
    figures = city_figures(gateway)
    assert (figures["settled_krw"], figures["expired_n"]) == (15_000, 1)
    with gateway.db.write() as session:
        assert verify(session) == []


# -- the off-chain credit, approved after the chain paid the invoice -----------------------

def test_an_offchain_credit_approved_after_the_chain_paid_the_invoice_is_refused(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    """Proposed while the invoice was unpaid; the payer then pays on the chain. Approving
    the proposal afterwards would credit the merchant ₩29,850 for a ₩15,000 sale."""
    from accounts.service import Actor
    from settlement import offchain

    shop = make_world(app, client, gateway, clock, demo_chain)
    inv = shop.invoice(15_000)
    with gateway.db.write() as session:
        credit_id = offchain.propose(
            session, Actor("u-treasury", "treasury"), store_id=shop.store_id,
            invoice_id=inv["id"], amount_krw=15_000, reason="paid in cash", moment=clock()).id
    shop.pay(inv["id"], DUE)
    shop.run()
    demo_chain.mine()
    shop.run()
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 14_850
    with pytest.raises(offchain.CreditRefused, match="at most ₩150"):
        with gateway.db.write() as session:
            offchain.decide(session, Actor("u-admin", "city_admin"), credit_id, approve=True,
                            moment=clock())
    assert payable(gateway, shop.store_id) == 14_850
    with gateway.db.write() as session:  # rejecting it stays possible
        assert offchain.decide(session, Actor("u-admin", "city_admin"), credit_id,
                               approve=False, moment=clock()).status == "rejected"
    clock.advance(minutes=10)
    ledger_ok(app)
