"""The city suspends and closes merchants: no new invoices (POS and API) with a clear
refusal, open invoices still watched, the balance still paid, keys revoked on close."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from accounts.models import AuditEntry, User
from accounts.service import Actor, create_user
from merchants.models import ApiKey
from onboarding.lifecycle import StandingRefused, set_standing
from tests.conftest import auth
from tests.integration.test_pos import (ADMIN_PW, CASHIER_PIN, OWNER_PW, form_token,
                                        sign_in_cashier, sign_in_with_email)
from tests.integration.test_settlement_support import (create_invoice, set_invoice,  # noqa: F401
                                                       settled_invoice, sgateway)


@pytest.fixture
def shop(app):
    from tests.conftest import make_merchant

    store, token = make_merchant(app, name="Haeundae Coffee")
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email="owner@cafe.kr", password=OWNER_PW, store_id=store)
        create_user(s, role="cashier", store_id=store, pin=CASHIER_PIN, display_name="Minji")
        admin = create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
        admin_actor = Actor(admin.id, admin.role)
    return {"store": store, "token": token, "admin": admin_actor}


def standing(app, shop, wanted, reason="unpaid licence fee"):
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        set_standing(s, shop["admin"], shop["store"], wanted, reason=reason, now=gateway.clock())


def test_a_suspended_store_refuses_pos_and_api_invoices_with_a_clear_message(app, client, shop):
    open_invoice = client.post(f"/api/v1/stores/{shop['store']}/invoices",
                               json={"amount": "15000", "currency": "KRW"}, headers=auth(shop["token"]))
    assert open_invoice.status_code == 200
    standing(app, shop, "suspended")
    res = client.post(f"/api/v1/stores/{shop['store']}/invoices",
                      json={"amount": "15000", "currency": "KRW"}, headers=auth(shop["token"]))
    assert res.status_code == 403
    assert res.get_json() == {"code": "store-suspended",
                              "message": "The city has suspended this store: it cannot create new invoices"}
    csrf = sign_in_cashier(client, shop["store"])
    res = client.post("/pos/charge", json={"amount": "15000"}, headers={"X-CSRFToken": csrf})
    assert res.status_code == 403
    assert "suspended this store" in res.get_json()["message"]
    # the invoice made before is still there to be paid and watched
    res = client.get(f"/api/v1/stores/{shop['store']}/invoices/{open_invoice.get_json()['id']}",
                     headers=auth(shop["token"]))
    assert res.status_code == 200 and res.get_json()["status"] == "New"
    standing(app, shop, "active", reason="")
    res = client.post("/pos/charge", json={"amount": "15000"}, headers={"X-CSRFToken": csrf})
    assert res.status_code == 201


def test_the_owner_sees_why(app, client, shop):
    standing(app, shop, "suspended", reason="licence expired on 1 Dec")
    sign_in_with_email(client, "owner@cafe.kr", OWNER_PW)
    page = client.get("/merchant").get_data(as_text=True)
    assert "suspended this store" in page and "licence expired on 1 Dec" in page


def test_a_suspended_merchants_balance_is_still_paid_out(app, sgateway, shop, clock):
    from settlement.daily import run_settlement

    settled_invoice(sgateway, shop["store"], 15_000)
    standing(app, shop, "suspended")
    clock.advance(days=1)
    [payout] = run_settlement(sgateway, date(2026, 11, 23))["created"]
    assert payout["storeId"] == shop["store"] and payout["amount"] == "14850"


def test_closing_revokes_keys_disables_cashiers_and_is_final(app, client, shop):
    standing(app, shop, "closed", reason="business closed")
    gateway = app.extensions["busanpay"]
    with gateway.db.read() as s:
        keys = s.execute(select(ApiKey).where(ApiKey.store_id == shop["store"])).scalars().all()
        cashiers = s.execute(select(User).where(User.role == "cashier")).scalars().all()
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "merchant.closed")).scalar_one()
    assert keys and all(k.revoked_at is not None for k in keys)
    assert cashiers and all(c.disabled for c in cashiers)
    assert '"keys_revoked": 1' in entry.details_json
    res = client.post(f"/api/v1/stores/{shop['store']}/invoices",
                      json={"amount": "15000", "currency": "KRW"}, headers=auth(shop["token"]))
    assert res.status_code == 401
    with pytest.raises(StandingRefused):
        standing(app, shop, "active", reason="")


def test_suspending_needs_a_reason_and_only_a_city_admin_may(app, client, shop):
    with pytest.raises(StandingRefused) as refused:
        standing(app, shop, "suspended", reason="  ")
    assert refused.value.code == "reason"
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="treasury", email="t@busan.go.kr", password=ADMIN_PW)
    sign_in_with_email(client, "t@busan.go.kr", ADMIN_PW)
    url = f"/city/merchants/{shop['store']}/standing"
    assert client.get(url).status_code == 200
    res = client.post(url, data={"csrf_token": form_token(client, url), "standing": "suspended",
                                 "reason": "x"})
    assert res.status_code == 403
    client.post("/logout", data={"csrf_token": form_token(client, url)})
    sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
    res = client.post(url, data={"csrf_token": form_token(client, url), "standing": "suspended",
                                 "reason": "licence expired"})
    assert res.status_code == 303
    assert "Suspended" in client.get(url).get_data(as_text=True)
