"""The treasury's off-chain credit: one person proposes, a different one approves, only
then the ledger credits the merchant (`city_offchain:krw`), audited; `ledger check`
accepts it as backing. Through the dashboard (roles, CSRF) and the CLI, on SQLite and
PostgreSQL. Also: the city loss account on the dashboard."""
from __future__ import annotations

import json

import pytest
from sqlmodel import select

from accounts.models import AuditEntry
from settlement.models import OffchainCredit
from tests.integration.test_dashboard import ADMIN, AUDITOR, OWNER, TREASURY, city, login  # noqa: F401
from tests.integration.test_pos import form_token as csrf_token
from tests.integration.test_settlement_support import (balance_of, post_all, settled_invoice,
                                                       sgateway)  # noqa: F401

pytestmark = pytest.mark.usefixtures("sgateway")


@pytest.fixture
def short(app, city, sgateway):  # noqa: F811
    """A ₩15,000 invoice settled within tolerance with 9,500 sats (₩14,250 received)."""
    invoice = settled_invoice(sgateway, city["cafe"], 15_000, paid_sats=9_500)
    post_all(sgateway)
    assert balance_of(sgateway, f"merchant_payable:{city['cafe']}") == -(14_250 - 143)
    return invoice


def propose(client, store, invoice, amount="750", reason="the rest paid in cash at the counter"):
    return client.post("/city/money/credits", data={
        "csrf_token": csrf_token(client, "/city/money/"), "store_id": store,
        "invoice_id": invoice, "amount_krw": amount, "reason": reason})


def decide(client, credit_id, decision="approve"):
    return client.post(f"/city/money/credits/{credit_id}/{decision}",
                       data={"csrf_token": csrf_token(client, "/city/money/")})


def credits(sgateway) -> list[OffchainCredit]:
    with sgateway.db.read() as s:
        return list(s.exec(select(OffchainCredit)))


def actions(sgateway) -> list[str]:
    with sgateway.db.read() as s:
        return [a.action for a in s.exec(select(AuditEntry).where(
            AuditEntry.action.like("treasury.%")).order_by(AuditEntry.id))]


def test_a_second_person_must_approve_before_the_merchant_is_credited(
        app, client, city, short, sgateway):  # noqa: F811
    login(client, *TREASURY)
    assert propose(client, city["cafe"], short).status_code == 302
    (credit,) = credits(sgateway)
    assert credit.status == "proposed"
    assert balance_of(sgateway, f"merchant_payable:{city['cafe']}") == -14_107  # not yet
    page = client.get("/city/money/").get_data(as_text=True)
    assert "You proposed it: another person decides." in page
    decide(client, credit.id)  # the proposer tries to approve it alone
    assert credits(sgateway)[0].status == "proposed"
    assert balance_of(sgateway, f"merchant_payable:{city['cafe']}") == -14_107
    client.post("/logout", data={"csrf_token": csrf_token(client, "/city/money/")})
    login(client, *ADMIN)
    assert decide(client, credit.id).status_code == 302
    assert credits(sgateway)[0].status == "approved"
    assert balance_of(sgateway, f"merchant_payable:{city['cafe']}") == -(14_107 + 750)
    assert balance_of(sgateway, "city_offchain:krw") == 750
    assert actions(sgateway) == ["treasury.offchain_credit.proposed",
                                 "treasury.offchain_credit.approved"]
    assert decide(client, credit.id).status_code == 302  # twice: posts once
    assert balance_of(sgateway, "city_offchain:krw") == 750
    res = app.test_cli_runner().invoke(args=["ledger", "check", "--strict"])
    assert res.exit_code == 0, res.output
    assert "Approved and credited" in client.get("/city/money/").get_data(as_text=True)


def test_auditors_and_owners_cannot_propose_and_forms_need_csrf(
        app, client, city, short, sgateway):  # noqa: F811
    login(client, *AUDITOR)
    assert client.get("/city/money/").status_code == 200
    assert propose(client, city["cafe"], short).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/city/money/")})
    login(client, *TREASURY)
    res = client.post("/city/money/credits", data={"store_id": city["cafe"], "invoice_id": short,
                                                   "amount_krw": "750", "reason": "no token"})
    assert res.status_code == 400
    assert credits(sgateway) == []


def test_a_credit_beyond_what_the_price_still_lacks_is_refused(app, client, city, short,
                                                               sgateway):  # noqa: F811
    login(client, *TREASURY)
    res = propose(client, city["cafe"], short, amount="99000000")
    assert res.status_code == 302
    assert "at most ₩893" in client.get("/city/money/").get_data(as_text=True)
    assert credits(sgateway) == []


def test_the_cli_needs_two_different_people_with_a_city_money_role(app, city, short,
                                                                   sgateway):  # noqa: F811
    runner = app.test_cli_runner()
    owner = runner.invoke(args=["treasury", "propose-credit", "--store", city["cafe"],
                                "--invoice", short, "--krw", "500", "--reason", "cash",
                                "--by", OWNER[0]])
    assert owner.exit_code != 0 and "treasury operator or a city admin" in owner.output
    res = runner.invoke(args=["treasury", "propose-credit", "--store", city["cafe"],
                              "--invoice", short, "--krw", "500", "--reason", "cash",
                              "--by", TREASURY[0]])
    assert res.exit_code == 0, res.output
    credit_id = json.loads(res.output)["creditId"]
    alone = runner.invoke(args=["treasury", "approve-credit", credit_id, "--by", TREASURY[0]])
    assert alone.exit_code != 0 and "a second person must decide" in alone.output
    ok = runner.invoke(args=["treasury", "approve-credit", credit_id, "--by", ADMIN[0]])
    assert ok.exit_code == 0 and json.loads(ok.output)["status"] == "approved"
    assert balance_of(sgateway, f"merchant_payable:{city['cafe']}") == -(14_107 + 500)


def test_the_city_loss_account_is_shown_on_the_dashboard(app, client, city, sgateway):  # noqa: F811
    from settlement.posting_job import sweep
    from tests.integration.test_settlement_support import set_invoice

    lost = settled_invoice(sgateway, city["cafe"], 15_000)
    post_all(sgateway)
    set_invoice(sgateway, lost, status="Settled", paid_sats=0, incident="zero-conf-loss", event="")
    sweep(sgateway)
    login(client, *AUDITOR)
    page = client.get("/city/money/").get_data(as_text=True)
    assert lost in page and "₩15,000" in page
    assert "₩15,000" in client.get("/city/exposure").get_data(as_text=True)
