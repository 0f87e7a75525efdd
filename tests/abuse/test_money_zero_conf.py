"""The city's own 0-conf risk: a payment accepted at 0 confirmations under the city's limit
and then double-spent stays credited to the merchant; the shortfall is posted to the city
loss account, audited, and `ledger check` accepts it. A payment that needed confirmations
and was reorganised away is reversed in a flagged entry instead. SQLite and PostgreSQL."""
from __future__ import annotations

from sqlmodel import select

from accounts.models import AuditEntry
from settlement.ledger import balance
from tests.abuse.test_money_findings import cli, ledger_ok, payable
from tests.integration.test_payment_scenarios import DUE, demo_chain, make_world  # noqa: F401


def balance_of(gateway, code):
    with gateway.db.read() as session:
        return balance(session, code)


def test_a_double_spent_zero_conf_payment_stays_credited_and_the_city_books_the_loss(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    shop = make_world(app, client, gateway, clock, demo_chain, speed="HighSpeed", limit=50_000)
    inv = shop.invoice(15_000)
    txid = shop.pay(inv["id"], DUE)
    shop.run()
    assert shop.status(inv["id"]) == ("Settled", "None")  # at 0 confirmations
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 14_850
    demo_chain.double_spend(txid)
    shop.run()
    demo_chain.mine()
    shop.run()
    row = shop.row(inv["id"])
    assert (row.status, row.incident, row.paid_sats, row.settled_sats) == \
        ("Settled", "zero-conf-loss", 0, DUE)
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 14_850  # the merchant keeps its credit
    assert balance_of(gateway, "city_loss:krw") == 15_000
    assert balance_of(gateway, "treasury:btc") == 0 and balance_of(gateway, "conversion:krw") == 0
    with gateway.db.read() as session:
        (entry,) = session.exec(select(AuditEntry).where(
            AuditEntry.action == "ledger.city_loss")).all()
    assert entry.target == inv["id"] and '"cityLossKrw": "15000"' in entry.details_json
    clock.advance(minutes=10)
    ledger_ok(app)


def test_a_confirmed_payment_reorganised_away_reverses_the_credit_in_a_flagged_entry(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    shop = make_world(app, client, gateway, clock, demo_chain)  # MediumSpeed: 1 confirmation
    inv = shop.invoice(15_000)
    shop.pay(inv["id"], DUE)
    shop.run()
    demo_chain.mine()
    shop.run()
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 14_850
    demo_chain.reorg(1, drop=True)
    shop.run()
    assert shop.row(inv["id"]).incident == "deep-reorg"
    assert cli(app, "settlement", "post")[0] == 0
    assert payable(gateway, shop.store_id) == 0
    assert balance_of(gateway, "city_loss:krw") == 0
    clock.advance(minutes=10)
    ledger_ok(app)
