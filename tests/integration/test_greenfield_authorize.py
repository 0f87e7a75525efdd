"""`/api-keys/authorize`: a shop asks, the signed-in owner approves, the key goes back to the
shop by an auto-submitting form, exactly as BTCPay's flow (and its WooCommerce plugin)
expects it."""
from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from accounts.models import AuditEntry
from accounts.service import create_user
from merchants.models import ApiKey, Store
from tests.conftest import auth, make_merchant

OWNER = ("owner@haeundae.example", "owner pass phrase 1")
PLUGIN_ASKS = ["btcpay.store.canviewinvoices", "btcpay.store.cancreateinvoice",
               "btcpay.store.canviewstoresettings", "btcpay.store.canmodifyinvoices",
               "btcpay.store.cancreatenonapprovedpullpayments",
               "btcpay.store.webhooks.canmodifywebhooks"]
SHOP = "https://shop.example/?btcpay-settings-callback"


def authorize_url(permissions=PLUGIN_ASKS, redirect=SHOP, **extra) -> str:
    query = [("permissions", p) for p in permissions] + [
        ("applicationName", "WooCommerce"), ("strict", "true"), ("selectiveStores", "true")]
    if redirect is not None:
        query.append(("redirect", redirect))
    query += list(extra.items())
    return "/api-keys/authorize?" + urlencode(query)


def form_csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def signed_in(app, email=OWNER[0], password=OWNER[1]):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    res = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert res.status_code == 302, res.get_data(as_text=True)[:300]
    return client


@pytest.fixture
def owner_store(app):
    store_id, _ = make_merchant(app, name="Haeundae Coffee")
    with app.extensions["busanpay"].db.write() as session:
        create_user(session, role="owner", email=OWNER[0], password=OWNER[1], store_id=store_id,
                    display_name="Kim")
    return store_id


def hidden_fields(page: str) -> list[tuple[str, str]]:
    return [(html.unescape(n), html.unescape(v)) for n, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)]


def approve(client, url, **form):
    page = client.get(url).get_data(as_text=True)
    store_id = re.search(r'name="store_id" value="([^"]+)"', page).group(1)
    data = {"csrf_token": form_csrf(page), "store_id": store_id, "decision": "approve",
            "allow_frame": "1", **form}
    return client.post(url, data=data)


def test_a_stranger_is_sent_to_sign_in_and_comes_back_to_the_request(app, client, owner_store):
    url = authorize_url()
    res = client.get(url)
    assert res.status_code == 302 and "/login" in res.headers["Location"]
    owner = signed_in(app)
    page = owner.get(url)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "shop.example" in text and "WooCommerce" in text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_approving_creates_the_asked_key_and_posts_it_back_to_the_shop(app, owner_store):
    owner = signed_in(app)
    res = approve(owner, authorize_url())
    assert res.status_code == 200
    page = res.get_data(as_text=True)
    assert 'action="https://shop.example/?btcpay-settings-callback"' in page
    assert "form-action https://shop.example" in res.headers["Content-Security-Policy"]
    fields = hidden_fields(page)
    token = dict(fields)["apiKey"]
    assert sorted(v for n, v in fields if n == "permissions[]") == \
        sorted(f"{p}:{owner_store}" for p in PLUGIN_ASKS)
    gateway = app.extensions["busanpay"]
    with gateway.db.read() as session:
        [key] = session.exec(select(ApiKey).where(ApiKey.store_id == owner_store,
                                                  ApiKey.label == "WooCommerce")).all()
        assert sorted(key.permission_set) == sorted(PLUGIN_ASKS)
        assert dict(fields)["userId"]
        assert session.get(Store, owner_store).website == "https://shop.example"
        actions = {a.action for a in session.exec(select(AuditEntry))}
    assert {"apikey.create", "apikey.authorize", "store.settings"} <= actions
    # the key works as the plugin then checks it
    current = app.test_client().get("/api/v1/api-keys/current", headers=auth(token)).get_json()
    assert sorted(current["permissions"]) == sorted(v for n, v in fields if n == "permissions[]")


def test_declining_or_a_missing_csrf_token_creates_nothing(app, owner_store):
    owner = signed_in(app)
    url = authorize_url()
    page = owner.get(url).get_data(as_text=True)
    res = owner.post(url, data={"csrf_token": form_csrf(page), "store_id": owner_store,
                                "decision": "decline"})
    assert res.status_code == 200 and "No key was created" in res.get_data(as_text=True)
    assert owner.post(url, data={"store_id": owner_store, "decision": "approve"}).status_code == 400
    with app.extensions["busanpay"].db.read() as session:
        assert session.exec(select(ApiKey).where(ApiKey.store_id == owner_store)).all() \
            and all(k.label != "WooCommerce" for k in session.exec(select(ApiKey)))


@pytest.mark.parametrize("redirect", ["javascript:alert(1)", "ftp://shop.example/",
                                      "//shop.example/cb", "https://bank.example@evil.example/",
                                      "data:text/html,hi"])
def test_a_return_address_that_is_not_http_is_refused(app, owner_store, redirect):
    owner = signed_in(app)
    url = authorize_url(redirect=redirect)
    res = owner.get(url)
    assert res.status_code == 422 and "http or https" in res.get_data(as_text=True)
    assert owner.post(url, data={"csrf_token": form_csrf(
        owner.get(authorize_url()).get_data(as_text=True)), "store_id": owner_store,
        "decision": "approve"}).status_code == 422


def test_unknown_permissions_refuse_a_strict_request_and_are_left_out_otherwise(app, owner_store):
    owner = signed_in(app)
    asks = PLUGIN_ASKS + ["btcpay.server.canmodifyserversettings"]
    res = owner.get(authorize_url(permissions=asks))
    assert res.status_code == 422 and "canmodifyserversettings" in res.get_data(as_text=True)
    res = approve(owner, authorize_url(permissions=asks, strict="false"))
    granted = [v for n, v in hidden_fields(res.get_data(as_text=True)) if n == "permissions[]"]
    assert len(granted) == len(PLUGIN_ASKS) and not any("server" in p for p in granted)


def test_only_an_owner_may_approve_and_only_for_their_own_store(app, owner_store):
    other_store, _ = make_merchant(app, name="Jagalchi Fish")
    with app.extensions["busanpay"].db.write() as session:
        create_user(session, role="city_admin", email="admin@busan.example",
                    password="city admin pass 1")
    admin = signed_in(app, "admin@busan.example", "city admin pass 1")
    assert admin.get(authorize_url()).status_code == 403
    owner = signed_in(app)
    url = authorize_url()
    res = approve(owner, url, store_id=other_store)
    assert res.status_code == 403
    with app.extensions["busanpay"].db.read() as session:
        assert session.exec(select(ApiKey).where(ApiKey.store_id == other_store,
                                                 ApiKey.label == "WooCommerce")).all() == []


def test_without_a_return_address_the_key_is_shown_once(app, owner_store):
    owner = signed_in(app)
    res = approve(owner, authorize_url(redirect=None))
    page = res.get_data(as_text=True)
    assert res.status_code == 200 and "shown only once" in page
    token = re.search(r'<code class="token" translate="no">([^<]+)</code>', page).group(1)
    assert app.test_client().get("/api/v1/stores", headers=auth(token)).status_code == 200
