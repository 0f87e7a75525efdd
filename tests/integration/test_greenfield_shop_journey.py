"""The whole journey of a WooCommerce shop, over real HTTP, the way BTCPay's plugin (and its
PHP client) makes each call: the owner approves the shop on /api-keys/authorize, the key is
posted back to the shop, the plugin checks the key, the server and the store's payment
methods, registers its webhook, creates an invoice for an order, the tourist pays on the
demo chain, the shop receives signed deliveries that verify, and a refund through
pull-payments leads the payer to the claim page."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from accounts.service import create_user
from tests.conftest import make_merchant
from tests.e2e.conftest import live_server
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.test_payment_scenarios import DUE, demo_chain  # noqa: F401
from tests.integration.test_settlement_support import post_all

OWNER = ("owner@haeundae.example", "owner pass phrase 1")
# What GreenfieldApiAuthorization in the WooCommerce plugin asks for and then checks.
REQUIRED = {"btcpay.store.canviewinvoices", "btcpay.store.cancreateinvoice",
            "btcpay.store.canviewstoresettings", "btcpay.store.canmodifyinvoices"}
OPTIONAL = {"btcpay.store.cancreatenonapprovedpullpayments",
            "btcpay.store.webhooks.canmodifywebhooks"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "webhook_allow_private": True}  # the shop listens on 127.0.0.1


@pytest.fixture
def shop_world(app, gateway, demo_chain):  # noqa: F811
    from chain.watcher import Watcher
    from settlement.install import install
    from webhooks import init_webhooks

    install(app)
    init_webhooks(app)
    gateway.extras["chain_backend"] = demo_chain
    store_id, _ = make_merchant(app, name="Haeundae Coffee")
    with gateway.db.write() as session:
        create_user(session, role="owner", email=OWNER[0], password=OWNER[1], store_id=store_id)
    watcher = Watcher(gateway, demo_chain)
    watcher.run_once()
    with live_server(app, "journey") as base, WebhookReceiver(path="/") as shop:
        yield base, shop, watcher, store_id


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def owner_approves(base: str, callback: str) -> tuple[str, list[tuple[str, str]]]:
    """The owner's browser: sign in, open the plugin's authorize URL, approve, and submit
    the auto-posting form to the shop. Returns the form's action and fields."""
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en"
    query = urlencode([("permissions", p) for p in sorted(REQUIRED | OPTIONAL)]
                      + [("applicationName", "WooCommerce"), ("strict", "true"),
                         ("selectiveStores", "true"), ("redirect", callback)])
    url = f"{base}/api-keys/authorize?{query}"
    page = browser.get(url)  # not signed in: sent to the back-office login, then back
    assert page.url.startswith(f"{base}/login")
    page = browser.post(page.url, data={"email": OWNER[0], "password": OWNER[1],
                                        "csrf_token": csrf_of(page.text)})
    assert page.url == url and "127.0.0.1" in page.text
    store_id = re.search(r'name="store_id" value="([^"]+)"', page.text).group(1)
    done = browser.post(url, data={"csrf_token": csrf_of(page.text), "store_id": store_id,
                                   "decision": "approve", "allow_frame": "1"})
    assert done.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)" id="authorize-return"',
                       done.text).group(1).replace("&amp;", "&")
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', done.text)
    return action, fields


def test_a_woocommerce_shop_from_setup_to_refund(app, gateway, shop_world):
    base, shop, watcher, store_id = shop_world
    callback = shop.url + "?btcpay-settings-callback"

    # 1. authorize: the owner approves, the browser posts the key back to the shop
    action, fields = owner_approves(base, callback)
    assert action == callback
    assert requests.post(action, data=fields).status_code == 200
    posted = dict(parse_qsl(shop.wait_for(1)[0].body.decode()))
    permissions = [v for k, v in parse_qsl(shop.requests[0].body.decode()) if k == "permissions[]"]
    api_key = posted["apiKey"]
    assert posted["userId"]

    # the plugin's checks: one store, exactly the required permissions (+ optional ones)
    store_ids = {p.split(":")[1] for p in permissions}
    assert store_ids == {store_id}
    assert {p.split(":")[0] for p in permissions} - OPTIONAL == REQUIRED
    api = requests.Session()
    api.headers["Authorization"] = f"token {api_key}"
    url = f"{base}/api/v1"

    # 2. the calls the settings page makes
    assert [s["id"] for s in api.get(f"{url}/stores").json()] == [store_id]
    current = api.get(f"{url}/api-keys/current").json()
    assert sorted(current["permissions"]) == sorted(permissions)
    info = api.get(f"{url}/server/info").json()
    assert tuple(map(int, info["version"].split("."))) >= (1, 7, 6) and info["fullySynched"]
    methods = api.get(f"{url}/stores/{store_id}/payment-methods").json()
    gateways = [m["paymentMethod"].replace("-", "_") for m in methods if m["enabled"]]
    assert gateways == ["BTC"]
    hook = api.post(f"{url}/stores/{store_id}/webhooks", json={
        "url": shop.url, "enabled": True, "automaticRedelivery": True,
        "authorizedEvents": {"everything": True}, "secret": None}).json()
    shop.secret = hook["secret"]

    # 3. an order: the invoice as the plugin creates it
    invoice = api.post(f"{url}/stores/{store_id}/invoices", json={
        "amount": "15000", "currency": "KRW",
        "metadata": {"orderId": "1001", "orderNumber": "1001",
                     "buyerEmail": "tourist@mail.example", "redirectURL": shop.url + "/thanks",
                     "orderUrl": "https://shop.example/wp-admin/post.php?post=1001",
                     "taxIncluded": "0", "posData": {"WooCommerce": {"Order ID": 1001}}},
        "checkout": {"redirectURL": shop.url + "/thanks", "paymentMethods": gateways,
                     "speedPolicy": "MediumSpeed"}}).json()
    assert invoice["status"] == "New" and invoice["checkoutLink"].startswith(base)
    checkout = requests.get(invoice["checkoutLink"])
    assert f"frame-ancestors {shop.url.rstrip('/')}" in checkout.headers["Content-Security-Policy"]

    # 4. the tourist pays; the watcher sees it; the shop gets signed deliveries
    from chain.runtime import backend_for
    from webhooks.worker import service_for

    chain = backend_for(gateway)
    chain.pay(invoice_address(gateway, invoice["id"]), DUE)
    watcher.run_once()
    chain.mine()
    watcher.run_once()
    deliveries = service_for(gateway)
    while deliveries.run_once():
        pass
    hooks = [r for r in shop.requests[1:]]
    types = [r.json["type"] for r in hooks]
    assert {"InvoiceCreated", "InvoiceReceivedPayment", "InvoiceProcessing",
            "InvoiceSettled"} <= set(types), types
    assert all(r.signature_ok for r in hooks)
    assert all(r.json["invoiceId"] == invoice["id"] and r.json["metadata"]["orderId"] == "1001"
               for r in hooks)
    paid = api.get(f"{url}/stores/{store_id}/invoices/{invoice['id']}").json()
    assert (paid["status"], paid["paidAmount"]) == ("Settled", "15000")
    [method] = api.get(f"{url}/stores/{store_id}/invoices/{invoice['id']}/payment-methods").json()
    assert method["paymentMethodPaid"] == "0.0001" and len(method["payments"]) == 1

    # 5. a refund from the order page: a pull payment; the payer's claim page. The store
    # holds ₩14,850 (the price less the 1 % fee): a refund is paid from that, never more.
    post_all(gateway)
    refund = api.post(f"{url}/stores/{store_id}/pull-payments", json={
        "name": "Refund of order 1001; damaged", "description": None, "amount": "14850",
        "currency": "KRW", "period": None, "BOLT11Expiration": None,
        "autoApproveClaims": False, "startsAt": None, "expiresAt": None,
        "paymentMethods": gateways, "payoutMethods": gateways})
    assert refund.status_code == 200, refund.text
    # the customer's browser: the key after '#' never reaches the server; key.js posts it
    link, key = refund.json()["viewLink"].split("#key=")
    customer = requests.Session()
    customer.headers["Accept-Language"] = "en"
    ask = customer.get(link)
    assert ask.status_code == 200 and 'name="key"' in ask.text
    claim_page = customer.post(link + "/key", data={"csrf_token": csrf_of(ask.text), "key": key})
    assert claim_page.status_code == 200 and claim_page.url == link
    assert "0.000099 BTC" in claim_page.text and 'name="address"' in claim_page.text
    later = api.get(f"{url}/pull-payments/{refund.json()['id']}").json()
    assert later == {**refund.json(), "viewLink": link}  # the key is shown once


def invoice_address(gateway, invoice_id: str) -> str:
    from payments.models import Invoice

    with gateway.db.read() as session:
        return session.get(Invoice, invoice_id).address
