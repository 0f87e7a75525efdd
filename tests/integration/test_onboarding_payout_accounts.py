"""Payout accounts with four eyes: an entered destination is pending until a different
treasury operator approves it, and settlement pays only the approved account."""
from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from sqlalchemy import select

from accounts.models import AuditEntry
from accounts.service import Actor, create_user
from onboarding import payout_accounts as pa
from settlement.models import MerchantPayoutAccount, Payout
from tests.integration.test_pos import ADMIN_PW, OWNER_PW, form_token, sign_in_with_email
from tests.integration.test_settlement_support import new_store, settled_invoice, sgateway  # noqa: F401

DAY = date(2026, 11, 23)
TREASURY_PW = "treasury pass 12"


@pytest.fixture
def people(app):
    store = new_store(app, name="Jagalchi Fish", payout_account=False)
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        owner = create_user(s, role="owner", email="owner@fish.kr", password=OWNER_PW, store_id=store)
        t1 = create_user(s, role="treasury", email="t1@busan.go.kr", password=TREASURY_PW)
        t2 = create_user(s, role="treasury", email="t2@busan.go.kr", password=TREASURY_PW)
        admin = create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
        ids = {k: Actor(u.id, u.role) for k, u in
               (("owner", owner), ("t1", t1), ("t2", t2), ("admin", admin))}
    return {"store": store, **ids}


def enter(gateway, actor, store, **fields):
    fields = {"bank_name": "BNK Busan Bank", "bank_account": "101-2020-3030",
              "account_holder": "Jagalchi Fish", **fields}
    with gateway.db.write() as s:
        return pa.request_change(s, actor, store, now=gateway.clock(), **fields).id


def decide(gateway, actor, change_id, approve=True):
    with gateway.db.write() as s:
        if approve:
            return pa.approve_change(s, actor, change_id, gateway.clock())
        return pa.reject_change(s, actor, change_id, gateway.clock(), "holder unknown to the bank")


def approved(gateway, store):
    with gateway.db.read() as s:
        return s.get(MerchantPayoutAccount, store)


def test_the_person_who_entered_a_change_cannot_approve_it(app, people):
    gateway = app.extensions["busanpay"]
    change = enter(gateway, people["t1"], people["store"])
    with pytest.raises(pa.DecisionRefused) as refused:
        decide(gateway, people["t1"], change)
    assert refused.value.code == "same-person"
    with pytest.raises(pa.DecisionRefused) as refused:
        decide(gateway, people["admin"], change)  # a different person, but not treasury
    assert refused.value.code == "role"
    assert approved(gateway, people["store"]) is None
    decide(gateway, people["t2"], change)
    assert approved(gateway, people["store"]).bank_account == "101-2020-3030"
    with pytest.raises(pa.DecisionRefused) as refused:
        decide(gateway, people["t2"], change)  # decided once
    assert refused.value.code == "not-pending"


def test_a_pending_change_is_never_paid_and_the_approved_one_is_paid_next(app, sgateway, people,
                                                                         clock):
    gateway, store = sgateway, people["store"]
    decide(gateway, people["t1"], enter(gateway, people["owner"], store))
    new = enter(gateway, people["owner"], store, bank_account="999-8888-7777",
                bank_name="Fraud Bank")
    settled_invoice(gateway, store, 15_000)
    clock.advance(days=1)
    from settlement.daily import run_settlement

    [first] = run_settlement(gateway, DAY)["created"]
    with gateway.db.read() as s:
        assert s.get(Payout, first["payoutId"]).destination == "101-2020-3030"
    path = gateway.extras["payout_rails"]["bankfile"].path_for(DAY)
    [row] = list(csv.DictReader(io.StringIO(path.read_text())))
    assert (row["bank_name"], row["bank_account"]) == ("BNK Busan Bank", "101-2020-3030")
    decide(gateway, people["t2"], new)
    settled_invoice(gateway, store, 20_000)
    clock.advance(days=1)
    [second] = run_settlement(gateway, date(2026, 11, 24))["created"]
    with gateway.db.read() as s:
        assert s.get(Payout, second["payoutId"]).destination == "999-8888-7777"
    assert second["amount"] == "19800"


def test_a_holder_other_than_the_business_needs_an_explanation_and_is_flagged(app, people):
    gateway = app.extensions["busanpay"]
    with pytest.raises(pa.ChangeRefused) as refused:
        enter(gateway, people["owner"], people["store"], account_holder="Kim Minsu")
    assert [(p.field, p.code) for p in refused.value.problems] == [("explanation", "required")]
    change = enter(gateway, people["owner"], people["store"], account_holder="Kim Minsu",
                   explanation="sole proprietor: the owner's own account")
    with gateway.db.read() as s:
        [(row, _store)] = pa.pending_changes(s)
    assert row.id == change and not row.holder_matches
    assert row.holder_explanation.startswith("sole proprietor")
    # company forms and spacing do not count as a difference
    assert pa.holder_matches("(주) 자갈치 수산", ["자갈치수산"])
    assert pa.holder_matches("JAGALCHI FISH Co., Ltd.", ["Jagalchi Fish"])


@pytest.mark.parametrize("fields, problem", [
    ({"bank_account": "12ab"}, ("bank_account", "format")),
    ({"bank_name": ""}, ("bank_name", "length")),
    ({"bank_name": "", "bank_account": "", "account_holder": ""}, ("bank_account", "required")),
    ({"stripe_account_id": "acc_123"}, ("stripe_account_id", "format")),
])
def test_bad_destinations_are_refused_and_nothing_is_recorded(app, people, fields, problem):
    gateway = app.extensions["busanpay"]
    with pytest.raises(pa.ChangeRefused) as refused:
        enter(gateway, people["owner"], people["store"], **fields)
    assert problem in [(p.field, p.code) for p in refused.value.problems]
    with gateway.db.read() as s:
        assert pa.pending_changes(s) == []


def test_a_newer_entry_supersedes_the_pending_one(app, people):
    gateway = app.extensions["busanpay"]
    first = enter(gateway, people["owner"], people["store"])
    second = enter(gateway, people["owner"], people["store"], bank_account="555-6666-7777")
    with gateway.db.read() as s:
        assert [c.id for c, _ in pa.pending_changes(s)] == [second]
    with pytest.raises(pa.DecisionRefused):
        decide(gateway, people["t1"], first)


def test_the_owner_enters_on_the_web_sees_it_pending_and_a_treasury_operator_approves(
        app, client, people):
    gateway = app.extensions["busanpay"]
    sign_in_with_email(client, "owner@fish.kr", OWNER_PW)
    token = form_token(client, "/merchant/payout-account")
    res = client.post("/merchant/payout-account", data={
        "csrf_token": token, "bank_name": "BNK Busan Bank", "bank_account": "101-2020-3030",
        "account_holder": "Kim Minsu"})
    assert res.status_code == 422
    assert "differs from your business name" in res.get_data(as_text=True)
    res = client.post("/merchant/payout-account", data={
        "csrf_token": token, "bank_name": "BNK Busan Bank", "bank_account": "101-2020-3030",
        "account_holder": "Jagalchi Fish"})
    assert res.status_code == 302
    page = client.get("/merchant/payout-account").get_data(as_text=True)
    assert "Pending city approval" in page and "No approved payout account yet" in page
    assert client.get("/city/payout-accounts").status_code == 403
    client.post("/logout", data={"csrf_token": token})

    sign_in_with_email(client, "t1@busan.go.kr", TREASURY_PW)
    queue = client.get("/city/payout-accounts").get_data(as_text=True)
    assert "101-2020-3030" in queue and "Jagalchi Fish" in queue
    with gateway.db.read() as s:
        [(change, _)] = pa.pending_changes(s)
    res = client.post(f"/city/payout-accounts/{change.id}/approve",
                      data={"csrf_token": form_token(client, "/city/payout-accounts")})
    assert res.status_code == 303
    assert approved(gateway, people["store"]).account_holder == "Jagalchi Fish"
    with gateway.db.read() as s:
        actions = [a.action for a in s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()]
    assert "payout_account.requested" in actions and "payout_account.approved" in actions


def test_without_a_csrf_token_nothing_is_recorded(app, client, people):
    sign_in_with_email(client, "owner@fish.kr", OWNER_PW)
    res = client.post("/merchant/payout-account", data={
        "bank_name": "BNK", "bank_account": "101-2020-3030", "account_holder": "Jagalchi Fish"})
    assert res.status_code == 400
    with app.extensions["busanpay"].db.read() as s:
        assert pa.pending_changes(s) == []


def test_the_cli_enters_a_pending_change_that_only_another_person_can_approve(app, people):
    runner = app.test_cli_runner()
    gateway = app.extensions["busanpay"]
    res = runner.invoke(args=["settlement", "account", "--store", people["store"],
                              "--by", "t1@busan.go.kr", "--bank-name", "BNK Busan Bank",
                              "--bank-account", "101-2020-3030", "--holder", "Jagalchi Fish"])
    assert res.exit_code == 0, res.output
    change = json.loads(res.output)
    assert change["status"] == "pending" and approved(gateway, people["store"]) is None
    res = runner.invoke(args=["settlement", "account-approve", change["changeId"],
                              "--by", "t1@busan.go.kr"])
    assert res.exit_code != 0 and "same-person" in res.output
    assert approved(gateway, people["store"]) is None
    res = runner.invoke(args=["settlement", "account-approve", change["changeId"],
                              "--by", "t2@busan.go.kr"])
    assert res.exit_code == 0, res.output
    assert approved(gateway, people["store"]).bank_account == "101-2020-3030"
