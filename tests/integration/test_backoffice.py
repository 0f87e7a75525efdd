"""The merchant owner's back office at /merchant: roles, CSRF, settings, staff, API keys,
webhooks, payouts and statements — every change audited, only the owner's own store."""
from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from accounts.models import AuditEntry, User
from accounts.service import create_user
from merchants.models import ApiKey, Store
from tests.conftest import make_merchant
from tests.integration.test_pos import (ADMIN_PW, OWNER_PW, app, form_token,  # noqa: F401
                                        sign_in_cashier, sign_in_with_email)


@pytest.fixture
def owners(app):
    """Two stores with an owner each, a cashier in ours, a city admin."""
    store_id, token = make_merchant(app, name="Haeundae Coffee")
    other_id, _ = make_merchant(app, name="Jagalchi Fish Stall")
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        create_user(s, role="owner", email="owner@cafe.kr", password=OWNER_PW, store_id=store_id)
        create_user(s, role="owner", email="owner@fish.kr", password=OWNER_PW, store_id=other_id)
        cashier = create_user(s, role="cashier", store_id=store_id, pin="2468", display_name="Minji")
        other_cashier = create_user(s, role="cashier", store_id=other_id, pin="8642",
                                    display_name="Other")
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
        other_key = s.exec(select(ApiKey).where(ApiKey.store_id == other_id)).one().id
        ids = {"cashier": cashier.id, "other_cashier": other_cashier.id}
    return {"store": store_id, "token": token, "other": other_id, "other_key": other_key, **ids}


@pytest.fixture
def owner(client, owners):
    sign_in_with_email(client, "owner@cafe.kr", OWNER_PW)
    return client


def token_of(client, path="/merchant/settings") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def audits(app, action: str) -> list[AuditEntry]:
    with app.extensions["busanpay"].db.read() as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == action)))


GETS = ["/merchant", "/merchant/settings", "/merchant/staff", "/merchant/api-keys",
        "/merchant/webhooks", "/merchant/payouts", "/merchant/statements/2026-11.csv",
        "/merchant/statements/2026-11-23.csv"]
POSTS = ["/merchant/settings", "/merchant/staff", "/merchant/staff/{cashier}/disable",
         "/merchant/staff/{cashier}/enable", "/merchant/api-keys", "/merchant/api-keys/KEY/revoke",
         "/merchant/webhooks", "/merchant/webhooks/HOOK/disable",
         "/merchant/webhooks/HOOK/deliveries/D/redeliver"]


def test_a_stranger_is_sent_to_the_email_login_from_every_back_office_route(client, owners):
    token = form_token(client, "/login")
    for path in GETS + POSTS:
        url = path.format(**owners)
        res = client.post(url, data={"csrf_token": token}) if path in POSTS else client.get(url)
        assert res.status_code == 302, url
        assert res.headers["Location"].startswith("/login"), url


@pytest.mark.parametrize("who", ["cashier", "city_admin"])
def test_people_without_the_owner_role_get_403_everywhere(client, owners, who):
    if who == "cashier":
        sign_in_cashier(client, owners["store"])
        token = form_token(client, "/pos/login")
    else:
        sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
        token = form_token(client, "/login")
    for path in GETS + POSTS:
        url = path.format(**owners)
        res = client.post(url, data={"csrf_token": token}) if path in POSTS else client.get(url)
        assert res.status_code == 403, url


def test_every_back_office_post_needs_the_csrf_token(owner, app, owners):
    for path in POSTS:
        res = owner.post(path.format(**owners), data={"speed_policy": "LowSpeed", "label": "x",
                                                       "permissions": ["btcpay.store.canviewinvoices"],
                                                       "name": "Jun", "pin": "2580", "pin_again": "2580"})
        assert res.status_code == 400, path
    with app.extensions["busanpay"].db.read() as s:
        assert s.get(Store, owners["store"]).speed_policy == "MediumSpeed"
        assert len(list(s.exec(select(User).where(User.store_id == owners["store"])))) == 2
        assert len(list(s.exec(select(ApiKey).where(ApiKey.store_id == owners["store"])))) == 1
        assert not s.get(User, owners["cashier"]).disabled


def test_an_owner_sees_only_their_own_store(owner, owners):
    for path in ("/merchant", "/merchant/staff", "/merchant/api-keys", "/merchant/payouts"):
        html = owner.get(path).get_data(as_text=True)
        assert "Jagalchi Fish Stall" not in html and owners["other"] not in html, path
        assert "Other" not in re.sub(r"<[^>]+>", " ", html).split(), path


def test_another_stores_cashier_key_and_webhook_are_not_found(owner, app, owners):
    token = token_of(owner)
    assert owner.post(f"/merchant/staff/{owners['other_cashier']}/disable",
                      data={"csrf_token": token}).status_code == 404
    assert owner.post(f"/merchant/api-keys/{owners['other_key']}/revoke",
                      data={"csrf_token": token}).status_code == 404
    from webhooks.rules import WebhookSpec
    from webhooks.worker import service_for

    hook, _ = service_for(app.extensions["busanpay"]).create(
        owners["other"], WebhookSpec(url="https://fish.example/hook"))
    assert owner.post(f"/merchant/webhooks/{hook.id}/delete",
                      data={"csrf_token": token}).status_code == 404
    with app.extensions["busanpay"].db.read() as s:
        assert not s.get(User, owners["other_cashier"]).disabled
        assert s.get(ApiKey, owners["other_key"]).revoked_at is None
    assert service_for(app.extensions["busanpay"]).list(owners["other"])


def test_settings_changes_are_validated_saved_and_audited_with_before_and_after(owner, app, owners):
    res = owner.post("/merchant/settings", data={
        "csrf_token": token_of(owner), "speed_policy": "HighSpeed", "payment_tolerance": "1.50",
        "zero_conf_limit_krw": "30,000", "default_language": "en"})
    assert res.status_code == 302
    with app.extensions["busanpay"].db.read() as s:
        store = s.get(Store, owners["store"])
    assert (store.speed_policy, str(store.payment_tolerance), store.zero_conf_limit_krw,
            store.default_language) == ("HighSpeed", "1.5", 30000, "en")
    [entry] = audits(app, "store.settings")
    assert json.loads(entry.details_json)["changes"] == {
        "speed_policy": ["MediumSpeed", "HighSpeed"], "payment_tolerance": ["0", "1.5"],
        "zero_conf_limit_krw": ["0", "30000"], "default_language": ["ko", "en"]}
    assert entry.store_id == owners["store"] and entry.actor_role == "owner"


@pytest.mark.parametrize("field, value, words", [
    ("speed_policy", "TurboSpeed", "speed policies"),
    ("payment_tolerance", "101", "from 0 to 100"),
    ("payment_tolerance", "-1", "from 0 to 100"),
    ("payment_tolerance", "0.125", "at most 2 decimal places"),
    ("payment_tolerance", "lots", "as a percentage"),
    ("zero_conf_limit_krw", "50001", "only up to ₩50,000"),
    ("zero_conf_limit_krw", "-5", "whole number of won"),
    ("zero_conf_limit_krw", "1000.5", "whole number of won"),
    ("default_language", "fr", "listed languages"),
])
def test_bad_settings_are_refused_readably_and_nothing_changes(owner, app, owners, field, value, words):
    data = {"csrf_token": token_of(owner), "speed_policy": "LowSpeed", "payment_tolerance": "2",
            "zero_conf_limit_krw": "1000", "default_language": "ko", field: value}
    res = owner.post("/merchant/settings?lang=en", data=data)
    assert res.status_code == 422 and words in res.get_data(as_text=True)
    with app.extensions["busanpay"].db.read() as s:
        assert s.get(Store, owners["store"]).speed_policy == "MediumSpeed"
    assert audits(app, "store.settings") == []


def test_an_owner_adds_a_cashier_who_can_then_sign_in_with_the_pin(owner, app, owners):
    res = owner.post("/merchant/staff", data={"csrf_token": token_of(owner), "name": "Jun",
                                              "pin": "2580", "pin_again": "2580"})
    assert res.status_code == 302
    [entry] = audits(app, "staff.create")
    assert "2580" not in entry.details_json and json.loads(entry.details_json)["name"] == "Jun"
    tablet = app.test_client()
    sign_in_cashier(tablet, owners["store"], "2580")
    assert tablet.get("/pos").status_code == 200


@pytest.mark.parametrize("pin, again, words", [
    ("12", "12", "4 to 8 digits"), ("12ab", "12ab", "4 to 8 digits"),
    ("1234", "1234", "less obvious"), ("7777", "7777", "less obvious"),
    ("2580", "2581", "differ"), ("2468", "2468", "has that PIN"),
])
def test_the_pin_rules_are_shown_and_enforced(owner, app, owners, pin, again, words):
    page = owner.get("/merchant/staff?lang=en").get_data(as_text=True)
    assert "4 to 8 digits" in page and "1234" in page
    res = owner.post("/merchant/staff?lang=en", data={"csrf_token": token_of(owner), "name": "Jun",
                                                      "pin": pin, "pin_again": again})
    assert res.status_code == 422 and words in res.get_data(as_text=True)
    assert audits(app, "staff.create") == []


def test_a_disabled_cashier_is_signed_out_and_cannot_sign_in_until_enabled(owner, app, owners):
    tablet = app.test_client()
    sign_in_cashier(tablet, owners["store"])
    res = owner.post(f"/merchant/staff/{owners['cashier']}/disable", data={"csrf_token": token_of(owner)})
    assert res.status_code == 302
    assert tablet.get("/pos").headers["Location"].startswith("/pos/login")
    refused = tablet.post("/pos/login", data={"store": owners["store"], "pin": "2468",
                                              "csrf_token": form_token(tablet, "/pos/login")})
    assert refused.status_code == 401
    owner.post(f"/merchant/staff/{owners['cashier']}/enable", data={"csrf_token": token_of(owner)})
    sign_in_cashier(tablet, owners["store"])
    assert [a.action for a in audits(app, "staff.disable") + audits(app, "staff.enable")] == \
        ["staff.disable", "staff.enable"]


def test_an_api_key_is_created_shown_once_works_and_is_revoked_through_the_back_office(owner, app, owners):
    res = owner.post("/merchant/api-keys", data={
        "csrf_token": token_of(owner), "label": "web shop",
        "permissions": ["btcpay.store.cancreateinvoice", "btcpay.store.canviewinvoices"]})
    assert res.status_code == 201 and res.headers["Cache-Control"] == "no-store"
    token = re.search(r"data-token>([0-9a-f]{64})<", res.get_data(as_text=True)).group(1)
    assert token not in owner.get("/merchant/api-keys").get_data(as_text=True)  # shown once
    api = app.test_client()
    listing = api.get(f"/api/v1/stores/{owners['store']}/invoices",
                      headers={"Authorization": f"token {token}"})
    assert listing.status_code == 200
    [created] = audits(app, "apikey.create")
    assert token not in created.details_json
    res = owner.post(f"/merchant/api-keys/{created.target}/revoke", data={"csrf_token": token_of(owner)})
    assert res.status_code == 302
    refused = api.get(f"/api/v1/stores/{owners['store']}/invoices",
                      headers={"Authorization": f"token {token}"})
    assert refused.status_code in (401, 403)
    [revoked] = audits(app, "apikey.revoke")
    assert revoked.target == created.target and revoked.store_id == owners["store"]


def test_a_key_needs_a_label_and_a_permission(owner, app, owners):
    res = owner.post("/merchant/api-keys?lang=en", data={"csrf_token": token_of(owner), "label": ""})
    html = res.get_data(as_text=True)
    assert res.status_code == 422 and "label of 1 to 120" in html and "at least one permission" in html
    assert audits(app, "apikey.create") == []


def test_webhooks_are_added_listed_with_their_delivery_log_and_changes_audited(owner, app, owners):
    res = owner.post("/merchant/webhooks", data={
        "csrf_token": token_of(owner), "url": "https://cafe.example/hook", "scope": "specific",
        "events": ["InvoiceSettled"], "automatic": "on"})
    assert res.status_code == 201
    html = res.get_data(as_text=True)
    assert re.search(r"data-secret>([^<]{16,})<", html)
    from webhooks.worker import service_for

    hooks = service_for(app.extensions["busanpay"])
    [hook] = hooks.list(owners["store"])
    assert hook.url == "https://cafe.example/hook" and json.loads(hook.events) == ["InvoiceSettled"]
    # An invoice settles: the fan-out puts a delivery in the log.
    store_invoice = app.test_client().post(
        f"/api/v1/stores/{owners['store']}/invoices", json={"amount": "5000", "currency": "KRW"},
        headers={"Authorization": f"token {owners['token']}"}).get_json()["id"]
    app.extensions["busanpay"].invoices.mark_status(owners["store"], store_invoice, "Settled")
    hooks.fan_out()
    page = owner.get("/merchant/webhooks?lang=en").get_data(as_text=True)
    assert "Delivery log" in page and "Settled" in page and "Send again" in page
    [delivery] = hooks.deliveries(owners["store"], hook.id, 10)
    res = owner.post(f"/merchant/webhooks/{hook.id}/deliveries/{delivery.id}/redeliver",
                     data={"csrf_token": token_of(owner)})
    assert res.status_code == 302 and len(hooks.deliveries(owners["store"], hook.id, 10)) == 2
    owner.post(f"/merchant/webhooks/{hook.id}/disable", data={"csrf_token": token_of(owner)})
    assert not hooks.get(owners["store"], hook.id).enabled
    owner.post(f"/merchant/webhooks/{hook.id}/delete", data={"csrf_token": token_of(owner)})
    assert hooks.list(owners["store"]) == []
    actions = [a.action for a in audits(app, "webhook.create") + audits(app, "webhook.redeliver")
               + audits(app, "webhook.disable") + audits(app, "webhook.delete")]
    assert actions == ["webhook.create", "webhook.redeliver", "webhook.disable", "webhook.delete"]


def test_a_webhook_url_must_be_http_or_https(owner, app, owners):
    res = owner.post("/merchant/webhooks?lang=en", data={"csrf_token": token_of(owner),
                                                         "url": "ftp://cafe.example", "scope": "everything"})
    assert res.status_code == 422 and "http or https" in res.get_data(as_text=True)


def test_the_statement_lists_settled_sales_by_seoul_day_and_downloads_as_csv(owner, app, owners, clock):
    api = app.test_client()
    invoice = api.post(f"/api/v1/stores/{owners['store']}/invoices",
                       json={"amount": "15000", "currency": "KRW"},
                       headers={"Authorization": f"token {owners['token']}"}).get_json()["id"]
    app.extensions["busanpay"].invoices.mark_status(owners["store"], invoice, "Settled")
    page = owner.get("/merchant/payouts?lang=en").get_data(as_text=True)
    assert "₩15,000" in page and "Payouts" in page
    csv_text = owner.get("/merchant/statements/2026-11.csv").get_data(as_text=True)
    assert "2026-11-23,1,1,15000,0" in csv_text  # 03:00 UTC is noon in Seoul
    ledger = owner.get("/merchant/statements/2026-11-23.csv")
    assert ledger.status_code == 200 and ledger.mimetype == "text/csv"
    assert ledger.get_data(as_text=True).startswith("time_kst,")
