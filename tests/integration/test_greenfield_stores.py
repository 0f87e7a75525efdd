"""The Greenfield setup calls a shop plugin makes: api-keys/current, stores, store payment
methods, server info and health. Real responses are checked against our OpenAPI document
and our schemas against BTCPay's reference files."""
from __future__ import annotations

import pytest

from merchants.service import (CAN_CREATE_INVOICE, CAN_MODIFY_STORE, CAN_VIEW_INVOICES,
                               CAN_VIEW_STORE)
from tests.conftest import auth, make_merchant
from tests.integration.greenfield_reference import assert_matches_reference
from tests.integration.test_openapi import check_response
from tests.integration.test_payment_scenarios import World, demo_chain  # noqa: F401

PLUGIN_PERMISSIONS = [CAN_VIEW_INVOICES, CAN_CREATE_INVOICE, CAN_VIEW_STORE,
                      "btcpay.store.canmodifyinvoices",
                      "btcpay.store.cancreatenonapprovedpullpayments",
                      "btcpay.store.webhooks.canmodifywebhooks"]


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


def call(client, doc, method, template, token=None, expect=200, **params):
    url = template.format(**params.pop("path", {}))
    res = client.open(url, method=method.upper(), headers=auth(token) if token else {},
                      query_string=params.pop("query", None))
    assert res.status_code == expect, (method, url, res.status_code, res.get_data()[:300])
    path = template.replace("{storeId}", "{storeId}")
    check_response(doc, path, method, res)
    return res


def test_the_current_key_lists_exactly_its_granted_permissions_scoped_to_its_store(app, client, doc):
    store_id, token = make_merchant(app, permissions=PLUGIN_PERMISSIONS)
    body = call(client, doc, "get", "/api/v1/api-keys/current", token).get_json()
    assert body["apiKey"] == token
    assert sorted(body["permissions"]) == sorted(f"{p}:{store_id}" for p in PLUGIN_PERMISSIONS)
    # an umbrella permission is listed as granted, not expanded (plugins compare the list)
    _, owner_token = make_merchant(app, name="Owner key", permissions=[CAN_MODIFY_STORE])
    assert [p.split(":")[0] for p in call(client, doc, "get", "/api/v1/api-keys/current",
                                          owner_token).get_json()["permissions"]] == \
        [CAN_MODIFY_STORE]


def test_a_key_revokes_itself_and_then_stops_working(app, client, doc):
    _, token = make_merchant(app, permissions=[CAN_VIEW_INVOICES])
    call(client, doc, "delete", "/api/v1/api-keys/current", token)
    res = call(client, doc, "get", "/api/v1/api-keys/current", token, expect=401)
    assert res.get_json()["code"] == "unauthenticated"
    call(client, doc, "get", "/api/v1/api-keys/current", None, expect=401)


def test_stores_show_the_keys_store_with_its_real_settings(app, client, doc):
    from decimal import Decimal

    store_id, token = make_merchant(app, name="Haeundae Coffee", speed_policy="LowSpeed",
                                    payment_tolerance=Decimal("1.5"), default_language="en",
                                    permissions=[CAN_VIEW_STORE])
    make_merchant(app, name="Someone else")
    [store] = call(client, doc, "get", "/api/v1/stores", token).get_json()
    assert store["id"] == store_id and store["name"] == "Haeundae Coffee"
    assert store["defaultCurrency"] == "KRW" and store["speedPolicy"] == "LowSpeed"
    assert store["paymentTolerance"] == 1.5 and store["defaultLang"] == "en"
    assert store["invoiceExpiration"] == 15 * 60 and store["monitoringExpiration"] == 24 * 3600
    one = call(client, doc, "get", "/api/v1/stores/{storeId}", token,
               path={"storeId": store_id}).get_json()
    assert one == store


def test_another_stores_id_is_404_and_a_missing_permission_403(app, client, doc):
    store_id, token = make_merchant(app, permissions=[CAN_VIEW_STORE])
    other_id, _ = make_merchant(app, name="Jagalchi Fish")
    for template in ("/api/v1/stores/{storeId}", "/api/v1/stores/{storeId}/payment-methods"):
        res = call(client, doc, "get", template, token, expect=404, path={"storeId": other_id})
        assert res.get_json()["code"] == "store-not-found"
    _, invoices_only = make_merchant(app, name="Invoices only", permissions=[CAN_VIEW_INVOICES])
    for template in ("/api/v1/stores", "/api/v1/stores/{storeId}"):
        res = client.get(template.format(storeId=store_id), headers=auth(invoices_only))
        assert res.status_code in (403, 404)
    res = call(client, doc, "get", "/api/v1/stores", invoices_only, expect=403)
    assert res.get_json()["code"] == "missing-permission"
    res = call(client, doc, "get", "/api/v1/stores/{storeId}/payment-methods", token, expect=403,
               path={"storeId": store_id}, query={"includeConfig": "true"})
    assert CAN_MODIFY_STORE in res.get_json()["message"]


def test_store_payment_methods_offer_on_chain_bitcoin_and_never_the_treasury_key(app, client, doc):
    store_id, token = make_merchant(app, permissions=[CAN_MODIFY_STORE])
    template = "/api/v1/stores/{storeId}/payment-methods"
    method, *_ = call(client, doc, "get", template, token, path={"storeId": store_id}).get_json()
    assert method == {"enabled": True, "paymentMethodId": "BTC-CHAIN", "paymentMethod": "BTC"}
    method, *_ = call(client, doc, "get", template, token, path={"storeId": store_id},
                      query={"includeConfig": "true", "onlyEnabled": "true"}).get_json()
    assert method["config"]["derivationScheme"] is None
    treasury = app.extensions["busanpay"].settings.treasury_xpub
    assert treasury not in client.get(template.format(storeId=store_id) + "?includeConfig=true",
                                      headers=auth(token)).get_data(as_text=True)
    assert call(client, doc, "get", template, token, path={"storeId": store_id},
                query={"onlyEnabled": "false"}).get_json() == []
    call(client, doc, "get", template, token, path={"storeId": store_id},
         query={"onlyEnabled": "maybe"}, expect=422)


def test_server_info_and_health_follow_the_watcher(app, client, gateway, clock, demo_chain, doc):  # noqa: F811
    _, token = make_merchant(app, permissions=[CAN_VIEW_INVOICES])
    info = call(client, doc, "get", "/api/v1/server/info", token).get_json()
    assert info["fullySynched"] is False  # the watcher has not run yet
    assert call(client, doc, "get", "/api/v1/health").get_json() == {"synchronized": False}
    world = World(app, client, gateway, clock, demo_chain)
    world.run()
    info = call(client, doc, "get", "/api/v1/server/info", token).get_json()
    assert info["fullySynched"] is True and info["supportedPaymentMethods"] == [
        "BTC-CHAIN", *(["BTC-LN"] if gateway.lightning else [])]
    assert tuple(int(p) for p in info["version"].split(".")) >= (1, 7, 6)
    assert info["syncStatus"][0]["syncHeight"] == info["syncStatus"][0]["chainHeight"]
    assert call(client, doc, "get", "/api/v1/health").get_json() == {"synchronized": True}
    demo_chain.mine(2)  # the backend moved on; the watcher has not seen it
    from chain.models import ChainWatcherState

    with gateway.db.write() as session:  # as a failing pass records it
        state = session.get(ChainWatcherState, 1)
        state.failures, state.last_error = 1, "connection refused"
        session.add(state)
    assert call(client, doc, "get", "/api/v1/health").get_json() == {"synchronized": False}
    assert call(client, doc, "get", "/api/v1/server/info", token).get_json()[
        "fullySynched"] is False
    call(client, doc, "get", "/api/v1/server/info", None, expect=401)


@pytest.mark.parametrize("ours,file,theirs", [
    ("StoreData", "swagger.stores.json", "StoreData"),
    ("ApiKeyData", "swagger.api-keys.json", "ApiKeyData"),
    ("ServerInfo", "swagger.serverinfo.json", "ApplicationServerInfoData"),
    ("Health", "swagger.health.json", "ApplicationHealthData"),
    ("StorePaymentMethod", "swagger.stores-payment-methods.json", "GenericPaymentMethodData"),
    ("Invoice", "swagger.invoices.json", "InvoiceData"),
    ("InvoiceCheckout", "swagger.invoices.json", "CheckoutOptions"),
    ("PaymentMethod", "swagger.invoices.json", "InvoicePaymentMethodDataModel"),
    ("WebhookData", "swagger.webhooks.json", "WebhookDataBase"),
    ("PullPaymentData", "swagger.pull-payments.json", "PullPaymentData"),
    ("PayoutData", "swagger.pull-payments.json", "PayoutData"),
    ("RefundInvoiceRequest", "swagger.invoices.json", "RefundInvoiceRequest"),
    ("CreateInvoiceRequest", "swagger.invoices.json", "CreateInvoiceRequest"),
    ("WebhookDataRequest", "swagger.webhooks.json", "WebhookDataCreate"),
])
def test_the_documents_agree_with_the_greenfield_reference(doc, ours, file, theirs):
    # Deliberate: whole minutes only (a fractional number of minutes is a 422).
    assert_matches_reference(doc, ours, file, theirs, deliberate=(
        "checkout.expirationMinutes", "checkout.monitoringMinutes"))
