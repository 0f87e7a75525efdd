"""`flask demo seed`: the demo city, its consistency, and that the logins it prints work."""
from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from tests.integration.test_dashboard import login, login_cashier, with_dashboard

SMALL = 600  # invoices: enough for every state, quick on PostgreSQL too


@pytest.fixture
def seeded(app):
    import demo_data

    with_dashboard(app)
    return demo_data.seed(app.extensions["busanpay"], invoices=SMALL, rng_seed=11)


def test_the_seed_prints_the_logins_it_made_in_the_documented_shape(seeded):
    for role in ("cityAdmin", "cityAuditor", "treasury"):
        assert set(seeded[role]) == {"email", "password"}
        assert len(seeded[role]["password"]) >= 12
    assert set(seeded["merchantOwner"]) == {"email", "password", "storeId"}
    assert set(seeded["cashier"]) == {"storeCode", "storeId", "pin"}
    assert seeded["cashier"]["pin"].isdigit() and len(seeded["cashier"]["pin"]) == 6
    assert seeded["merchantOwner"]["storeId"] == seeded["cashier"]["storeId"] == \
        seeded["stores"][0]["storeId"]
    assert len(seeded["stores"]) >= 36
    assert {"storeId", "name", "district", "category", "ownerEmail", "apiKey"} <= set(seeded["stores"][0])
    json.dumps(seeded, ensure_ascii=False)  # printable as JSON


def test_every_login_the_seed_prints_actually_works(app, seeded):
    for role in ("cityAdmin", "cityAuditor", "treasury"):
        client = app.test_client()
        login(client, seeded[role]["email"], seeded[role]["password"])
        page = client.get("/city")
        assert page.status_code == 200, role
        assert seeded["stores"][0]["name"].split(" · ")[1] in page.get_data(as_text=True) or \
            "Top merchants" in page.get_data(as_text=True)
    owner = app.test_client()
    res = owner.post("/login", data={"email": seeded["merchantOwner"]["email"],
                                     "password": seeded["merchantOwner"]["password"],
                                     "csrf_token": _token(owner)})
    assert res.status_code == 302 and res.headers["Location"].endswith("/merchant")
    assert owner.get("/city").status_code == 403
    cashier = app.test_client()
    login_cashier(cashier, seeded["cashier"]["storeCode"].lower(), seeded["cashier"]["pin"])


def _token(client):
    from tests.integration.test_accounts_login import csrf_token

    return csrf_token(client, "/login")


def test_the_demo_city_has_every_district_staff_and_invoices_in_every_state(app, seeded):
    from accounts.models import User
    from merchants.districts import CATEGORIES, DISTRICTS
    from merchants.models import Store
    from payments.models import Invoice

    with app.extensions["busanpay"].db.read() as s:
        stores = list(s.scalars(select(Store)))
        staff = defaultdict(set)
        for role, store_id in s.execute(select(User.role, User.store_id)):
            staff[store_id].add(role)
        states = set(s.execute(select(Invoice.status, Invoice.additional_status)).all())
        incidents = s.scalar(select(func.count()).where(Invoice.incident.is_not(None)))
        city_roles = {r for r, sid in s.execute(select(User.role, User.store_id)) if sid is None}
    assert {st.district for st in stores} == set(DISTRICTS)
    assert {st.category for st in stores} == set(CATEGORIES)
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in st.name) for st in stores), "Korean names"
    assert all(staff[st.id] == {"owner", "cashier"} for st in stores)
    assert city_roles == {"city_admin", "city_auditor", "treasury"}
    statuses = {st for st, _ in states}
    assert statuses == {"New", "Processing", "Settled", "Expired", "Invalid"}
    extras = {add for _, add in states}
    assert {"PaidPartial", "PaidOver", "PaidLate", "Marked", "None"} <= extras
    assert incidents >= 1


def test_seeded_invoices_are_consistent_with_their_keys_rates_and_payments(app, seeded):
    from dashboard.rollup import verify
    from payments.models import ExtendedKeyRecord, Invoice, Payment
    from payments.quoting import sats_due

    gateway = app.extensions["busanpay"]
    with gateway.db.read() as s:
        invoices = list(s.scalars(select(Invoice).order_by(Invoice.key_index)))
        record = s.get(ExtendedKeyRecord, invoices[0].key_id)
        key = gateway.invoices.keys.get(s, record.id)
        counted = defaultdict(int)
        for p in s.scalars(select(Payment)):
            if p.state == "seen":
                counted[p.invoice_id] += p.value_sats
        assert verify(s) == []
    assert [i.key_index for i in invoices] == list(range(len(invoices)))
    assert record.next_index == len(invoices)
    for inv in invoices:
        assert inv.address == key.address(inv.key_index)
        assert inv.due_sats == sats_due(inv.amount_krw, inv.rate)
        assert inv.paid_sats == counted[inv.id], inv.id
        assert inv.created_at <= gateway.clock()
    assert SMALL * 0.8 < len(invoices) < SMALL * 1.3


def test_the_seed_fills_the_ledger_payouts_and_refunds_when_settlement_is_installed(app, seeded):
    if not seeded["settlement"].get("available"):
        pytest.skip(seeded["settlement"]["reason"])
    from settlement.ledger import trial_balance, unbalanced_entries

    with app.extensions["busanpay"].db.read() as s:
        balances = defaultdict(int)
        for row in trial_balance(s):
            balances[row["currency"]] += row["balance"]
        assert unbalanced_entries(s) == []
    assert dict(balances) == {"BTC": 0, "KRW": 0}
    payouts = seeded["settlement"]["payouts"]
    assert payouts.get("paid", 0) > 0 and payouts.get("failed", 0) >= 1
    assert seeded["settlement"]["conversions"] >= 20
    assert {"open", "submitted", "approved"} <= set(seeded["settlement"]["refundClaims"])


def test_if_empty_does_nothing_once_stores_exist_and_each_seed_makes_new_secrets(app, seeded):
    import demo_data

    gateway = app.extensions["busanpay"]
    again = demo_data.seed(gateway, if_empty=True)
    assert again["seeded"] is False and "stores exist" in again["reason"]
    second = demo_data.seed(gateway, invoices=50)
    assert second["cityAdmin"]["password"] != seeded["cityAdmin"]["password"]
    assert second["cityAdmin"]["email"] != seeded["cityAdmin"]["email"]
    assert second["cashier"]["pin"] != seeded["cashier"]["pin"] or \
        second["cashier"]["storeId"] != seeded["cashier"]["storeId"]


def test_the_cli_seeds_a_month_of_5000_invoices_within_ten_seconds_of_cpu(app, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("the 10 s budget is for the embedded SQLite default")
    runner = app.test_cli_runner()
    started = time.process_time()
    result = runner.invoke(args=["demo", "seed", "--if-empty"])
    cpu = time.process_time() - started
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["seeded"] is True
    assert 4_500 <= sum(printed["invoices"].values()) <= 5_600
    assert cpu < 10, f"seeding took {cpu:.1f} s of CPU"
    again = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert json.loads(again.output)["seeded"] is False


def test_the_demo_has_pending_applications_and_a_pending_payout_account_change(app, seeded):
    from onboarding.models import MerchantApplication, PayoutAccountChange
    from onboarding.payout_accounts import pending_changes

    assert seeded["onboarding"]["pendingApplications"] == 3
    with app.extensions["busanpay"].db.read() as s:
        statuses = s.execute(select(MerchantApplication.status)).scalars().all()
        [(change, store)] = pending_changes(s)
        assert s.get(PayoutAccountChange, seeded["onboarding"]["pendingPayoutChange"]) is not None
    assert statuses == ["pending"] * 3
    assert store.id == seeded["merchantOwner"]["storeId"] and not change.holder_matches
    client = app.test_client()
    login(client, seeded["treasury"]["email"], seeded["treasury"]["password"])
    assert "112-2024-0615-01" in client.get("/city/payout-accounts").get_data(as_text=True)


def test_the_demo_city_has_lightning_sales_whose_sats_sit_in_the_nodes_account(app, seeded):
    if not seeded["settlement"].get("available"):
        pytest.skip(seeded["settlement"]["reason"])
    from payments.models import METHOD_LIGHTNING, Invoice, Payment
    from settlement.ledger import balance
    from settlement.reconcile import check_ledger
    from settlement.rules import TREASURY_LN

    gateway = app.extensions["busanpay"]
    with gateway.db.read() as s:
        ln = s.execute(select(Payment.invoice_id, Payment.value_sats, Payment.block_height,
                              Payment.address)
                       .where(Payment.method == METHOD_LIGHTNING)).all()
        assert ln, "no Lightning sale in the demo city"
        assert {(p.block_height, p.address) for p in ln} == {(None, "lightning")}
        statuses = {s.get(Invoice, p.invoice_id).status for p in ln}
        received = s.execute(select(func.sum(Payment.value_sats)).where(
            Payment.method == METHOD_LIGHTNING, Payment.state == "seen")).scalar_one()
        node = balance(s, TREASURY_LN)
    assert statuses == {"Settled"}
    assert 0 <= node <= received  # received, less what conversions deposited at the venue
    report = check_ledger(gateway)
    assert report["problems"] == [], report["problems"]
