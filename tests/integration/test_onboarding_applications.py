"""/apply, the city's review at /city/applications, /city/merchants/new and owner
invitations at /invite/<token>: bad input creates nothing, approval creates the store."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from accounts.models import AuditEntry, User
from accounts.service import create_user
from merchants.models import Store
from onboarding.models import Invitation, MerchantApplication
from tests.integration.test_pos import ADMIN_PW, form_token, sign_in_with_email

GOOD = {"name_ko": "자갈치 횟집", "name_en": "Jagalchi Sashimi", "brn": "123-45-67891",
        "district": "jung-gu", "category": "food", "address": "부산 중구 자갈치해안로 52",
        "contact_name": "김민수", "email": "owner@jagalchi.kr", "phone": "051-245-1234",
        "monthly_volume": "3,000,000", "settlement_mode": "krw", "xpub": ""}
TESTNET_TPUB = ("tpubDC5FSnBiZDMmhiuCmWAYsLwgLYrrT9rAqvTySfuCCrgsWz8wxMXUS9Tb9iVMvcRbvFcAHGkMD5Kx"
                "8koh4GquNGNTfohfk7pgjhaPCdXpoba")
MAINNET_XPUB = ("xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMz"
                "G3DSSSSoekkudhUd9yLb6qx39T9nMdj")


def count(app, model) -> int:
    with app.extensions["busanpay"].db.read() as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def apply(client, **changes):
    client.set_cookie("lang", "en")
    data = {**GOOD, **changes, "csrf_token": form_token(client, "/apply")}
    return client.post("/apply", data=data)


@pytest.fixture
def admin(app, client):
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
    return client


def test_a_good_application_creates_only_an_application_and_a_confirmation(app, client):
    res = apply(client)
    assert res.status_code == 303 and res.headers["Location"].endswith("/apply/received")
    page = client.get("/apply/received").get_data(as_text=True)
    assert "Application received" in page
    with app.extensions["busanpay"].db.read() as s:
        [row] = s.execute(select(MerchantApplication)).scalars().all()
    assert (row.brn, row.monthly_volume_krw, row.status, row.flags) == ("1234567891", 3_000_000, "pending", "")
    assert row.id[:8] in page
    assert count(app, Store) == 0 and count(app, User) == 0


@pytest.mark.parametrize("changes, field, message", [
    ({"brn": "123-45-67890"}, "brn", "not a valid business registration number"),
    ({"brn": ""}, "brn", "This field is required"),
    ({"name_ko": "x" * 5000}, "name_ko", "at most 120 characters"),
    ({"address": "y" * 5000}, "address", "at most 300 characters"),
    ({"name_en": "<script>alert(1)</script>"}, "name_en", "no &lt; or &gt;"),
    ({"contact_name": "Kim\x07Minsu"}, "contact_name", "no control characters"),
    ({"district": "gotham"}, "district", "Choose one of the options"),
    ({"category": "casino"}, "category", "Choose one of the options"),
    ({"email": "not-an-email"}, "email", "Enter an email address"),
    ({"phone": "call me"}, "phone", "Enter a phone number"),
    ({"monthly_volume": "-5"}, "monthly_volume", "whole number of won"),
    ({"monthly_volume": "1e9"}, "monthly_volume", "whole number of won"),
    ({"settlement_mode": "eth"}, "settlement_mode", "Choose one of the options"),
    ({"settlement_mode": "btc"}, "xpub", "extended public key"),
    ({"settlement_mode": "btc", "xpub": MAINNET_XPUB}, "xpub", "cannot be used"),
    ({"settlement_mode": "btc", "xpub": "tpubGARBAGE"}, "xpub", "cannot be used"),
])
def test_bad_input_on_every_field_gets_a_readable_message_and_creates_nothing(
        app, client, changes, field, message):
    res = apply(client, **changes)
    assert res.status_code == 422
    html = res.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    assert error and message in error.group(1), html[:3000]
    assert "<script>alert(1)" not in html
    assert count(app, MerchantApplication) == 0


def test_a_body_over_the_server_limit_gets_a_readable_page_and_creates_nothing(app, client):
    res = apply(client, address="y" * 100_000)
    assert res.status_code == 413
    assert "far too long" in res.get_data(as_text=True)
    assert count(app, MerchantApplication) == 0


def test_a_btc_application_checks_the_key_against_the_network(app, client):
    assert app.extensions["busanpay"].settings.network == "regtest"
    res = apply(client, settlement_mode="btc", xpub=TESTNET_TPUB)
    assert res.status_code == 303
    with app.extensions["busanpay"].db.read() as s:
        assert s.execute(select(MerchantApplication.xpub)).scalar_one() == TESTNET_TPUB


def test_a_duplicate_number_is_refused_and_flagged_to_the_reviewer(app, client):
    assert apply(client).status_code == 303
    res = apply(client, email="someone@else.kr", brn="1234567891")
    assert res.status_code == 422
    assert "already under review or approved" in res.get_data(as_text=True)
    with app.extensions["busanpay"].db.read() as s:
        [row] = s.execute(select(MerchantApplication)).scalars().all()
        refused = s.execute(select(AuditEntry).where(
            AuditEntry.action == "application.duplicate_refused")).scalars().all()
    assert row.flags == "duplicate-attempt" and len(refused) == 1


def test_applications_are_rate_limited_per_client(app, client):
    app.config["APPLY_RATE_LIMIT"] = "2 per hour"
    assert apply(client).status_code == 303
    assert apply(client, brn="101-82-00046").status_code == 303
    assert apply(client, brn="220-81-00016").status_code == 429
    assert count(app, MerchantApplication) == 2


def test_without_a_csrf_token_nothing_is_recorded(app, client):
    res = client.post("/apply", data=GOOD)
    assert res.status_code == 400
    assert count(app, MerchantApplication) == 0


def pending_id(app) -> str:
    with app.extensions["busanpay"].db.read() as s:
        return s.execute(select(MerchantApplication.id)).scalar_one()


def test_the_admin_approves_and_gets_a_one_time_invitation_the_owner_uses(app, admin, clock):
    apply(admin)
    sign_in_with_email(admin, "admin@busan.go.kr", ADMIN_PW)
    app_id = pending_id(app)
    queue = admin.get("/city/applications").get_data(as_text=True)
    assert "자갈치 횟집" in queue
    detail = admin.get(f"/city/applications/{app_id}").get_data(as_text=True)
    assert "123-45-67891" in detail
    res = admin.post(f"/city/applications/{app_id}/approve",
                     data={"csrf_token": form_token(admin, f"/city/applications/{app_id}")})
    assert res.status_code == 200
    link = re.search(r'id="invitation-link">([^<]+)<', res.get_data(as_text=True)).group(1)
    token = link.rsplit("/", 1)[1]
    with app.extensions["busanpay"].db.read() as s:
        store = s.execute(select(Store)).scalar_one()
        invitation = s.execute(select(Invitation)).scalar_one()
        application = s.get(MerchantApplication, app_id)
    assert (store.name, store.district, store.category, store.settlement_mode) == \
        ("자갈치 횟집", "jung-gu", "food", "krw")
    assert application.status == "approved" and application.store_id == store.id
    assert invitation.token_hash != token and token not in invitation.token_hash
    admin.post("/logout", data={"csrf_token": form_token(admin, "/city/applications")})

    owner = app.test_client()
    owner.set_cookie("lang", "en")
    res = owner.get(f"/invite/{token}")
    assert res.status_code == 303 and res.headers["Location"].endswith("/invite")
    page = owner.get("/invite").get_data(as_text=True)
    assert "owner@jagalchi.kr" in page
    csrf = form_token(owner, "/invite")
    res = owner.post("/invite", data={"csrf_token": csrf, "password": "short",
                                      "password_again": "short"})
    assert res.status_code == 422 and "stronger password" in res.get_data(as_text=True)
    res = owner.post("/invite", data={"csrf_token": csrf, "password": "gulls over the fish market",
                                      "password_again": "gulls over the fish market"})
    assert res.status_code == 303 and res.headers["Location"] == "/merchant"
    assert owner.get("/merchant").status_code == 200
    with app.extensions["busanpay"].db.read() as s:
        user = s.execute(select(User).where(User.email == "owner@jagalchi.kr")).scalar_one()
    assert (user.role, user.store_id) == ("owner", store.id)
    again = app.test_client()
    again.set_cookie("lang", "en")
    res = again.get(f"/invite/{token}")
    assert res.status_code == 410 and "already used" in res.get_data(as_text=True)


def test_an_expired_or_unknown_link_says_so(app, admin, clock):
    from accounts.service import Actor
    from merchants.service import create_store
    from onboarding.invitations import create_invitation

    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        store = create_store(s, name="Haeundae Surf")
        token = create_invitation(s, Actor("x", "city_admin"), store.id, "surf@example.kr",
                                  now=clock()).token
    clock.advance(days=7, seconds=1)
    admin.set_cookie("lang", "en")
    res = admin.get(f"/invite/{token}")
    assert res.status_code == 410 and "expired" in res.get_data(as_text=True)
    res = admin.get("/invite/not-a-real-token")
    assert res.status_code == 410 and "not valid" in res.get_data(as_text=True)


def test_a_rejection_needs_a_reason_and_is_audited(app, admin):
    apply(admin)
    sign_in_with_email(admin, "admin@busan.go.kr", ADMIN_PW)
    app_id = pending_id(app)
    csrf = form_token(admin, f"/city/applications/{app_id}")
    res = admin.post(f"/city/applications/{app_id}/reject", data={"csrf_token": csrf})
    assert res.status_code == 422
    res = admin.post(f"/city/applications/{app_id}/reject",
                     data={"csrf_token": csrf, "reason": "not a registered business"})
    assert res.status_code == 303
    with app.extensions["busanpay"].db.read() as s:
        application = s.get(MerchantApplication, app_id)
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "application.rejected")).scalar_one()
    assert (application.status, application.decision_reason) == ("rejected", "not a registered business")
    assert "not a registered business" in entry.details_json
    assert count(app, Store) == 0
    # a new application with a rejected number is accepted, flagged for the reviewer
    admin.post("/logout", data={"csrf_token": csrf})
    assert apply(admin).status_code == 303
    with app.extensions["busanpay"].db.read() as s:
        flags = s.execute(select(MerchantApplication.flags).where(
            MerchantApplication.status == "pending")).scalar_one()
    assert flags == "previously-rejected"


def test_only_a_city_admin_decides(app, client):
    apply(client)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="city_auditor", email="auditor@busan.go.kr", password=ADMIN_PW)
    sign_in_with_email(client, "auditor@busan.go.kr", ADMIN_PW)
    app_id = pending_id(app)
    assert client.get(f"/city/applications/{app_id}").status_code == 200
    res = client.post(f"/city/applications/{app_id}/approve",
                      data={"csrf_token": form_token(client, "/city/applications")})
    assert res.status_code == 403
    assert count(app, Store) == 0


def test_the_admin_creates_a_merchant_directly_with_an_invitation(app, admin):
    sign_in_with_email(admin, "admin@busan.go.kr", ADMIN_PW)
    csrf = form_token(admin, "/city/merchants/new")
    res = admin.post("/city/merchants/new", data={"csrf_token": csrf, "name": "<b>x</b>",
                                                  "district": "mars", "category": "food",
                                                  "email": "nope", "settlement_mode": "krw"})
    assert res.status_code == 422 and count(app, Store) == 0
    res = admin.post("/city/merchants/new", data={
        "csrf_token": csrf, "name": "Gwangalli Beach Stand", "district": "suyeong-gu",
        "category": "food", "email": "stand@gwangalli.kr", "settlement_mode": "krw"})
    assert res.status_code == 200
    assert re.search(r'id="invitation-link">[^<]+/invite/[A-Za-z0-9_-]{40,}<', res.get_data(as_text=True))
    with app.extensions["busanpay"].db.read() as s:
        store = s.execute(select(Store)).scalar_one()
        invitation = s.execute(select(Invitation)).scalar_one()
    assert store.district == "suyeong-gu" and invitation.store_id == store.id
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
