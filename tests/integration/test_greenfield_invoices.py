"""Smaller Greenfield differences on invoices and webhooks: textSearch, includePaymentMethods,
paidAmount, checkout.lazyPaymentMethods, the /api/v1/webhooks/{webhookId} path form and the
answer to a USD or EUR price."""
from __future__ import annotations

import pytest

from tests.conftest import auth, make_merchant
from tests.integration.test_openapi import Api, check_response
from tests.integration.test_payment_scenarios import DUE, World, demo_chain  # noqa: F401

STORE = "/api/v1/stores/{storeId}/invoices"
INVOICE = "/api/v1/invoices/{invoiceId}"


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


@pytest.fixture
def api(client, doc, merchant):
    return Api(client, doc, *merchant)


def test_text_search_finds_invoices_by_what_a_shop_knows(api):
    plugin = {"orderId": "1001", "orderNumber": "WC-1001", "buyerEmail": "Tourist@Mail.example",
              "itemDesc": "100% cotton_shirt"}
    wanted = api("post", STORE, json={"amount": "15000", "metadata": plugin}, expect=200).get_json()
    api("post", STORE, json={"amount": "9000", "metadata": {"orderId": "1002",
                                                             "buyerEmail": "other@mail.example"}},
        expect=200)
    for term in ("tourist@mail.example", "WC-1001", "1001", wanted["id"], "100%", "cotton_"):
        found = api("get", STORE, query_string={"textSearch": term}, expect=200).get_json()
        assert [i["id"] for i in found] == [wanted["id"]], term
    assert api("get", STORE, query_string={"textSearch": "nobody"}, expect=200).get_json() == []
    assert api("get", STORE, query_string={"textSearch": "%"}, expect=200).get_json() \
        and len(api("get", STORE, query_string={"textSearch": "_"}, expect=200).get_json()) == 1
    assert len(api("get", STORE, query_string={"textSearch": ""}, expect=200).get_json()) == 2


def test_paid_amount_payment_methods_and_lazy_payment_methods(app, client, gateway, clock,
                                                              demo_chain, doc):  # noqa: F811
    world = World(app, client, gateway, clock, demo_chain)
    world.run()
    api = Api(client, doc, world.store_id, world.token)
    invoice = api("post", STORE, json={"amount": 15000, "metadata": {"orderId": "A"}},
                  expect=200).get_json()
    assert invoice["paidAmount"] == "0" and invoice["checkout"]["lazyPaymentMethods"] is False
    assert "paymentMethods" not in invoice
    world.pay(invoice["id"], DUE // 2)  # half of 15,000 won at the locked rate
    world.run()
    got = api("get", INVOICE, invoice["id"], query_string={"includePaymentMethods": "true"},
              expect=200).get_json()
    assert got["paidAmount"] == "7500"
    method, *lightning = got["paymentMethods"]  # BTC-LN beside it while Lightning is on
    assert [m["paymentMethodId"] for m in lightning] == (["BTC-LN"] if gateway.lightning else [])
    assert method["paymentMethodId"] == "BTC-CHAIN" and len(method["payments"]) == 1
    assert method == client.get(f"/api/v1/invoices/{invoice['id']}/payment-methods",
                                headers=auth(world.token)).get_json()[0]
    [listed] = api("get", STORE, query_string={"includePaymentMethods": "true"},
                   expect=200).get_json()
    assert listed["paymentMethods"] == got["paymentMethods"]
    btc = api("post", STORE, json={"amount": "0.001", "currency": "BTC"}, expect=200).get_json()
    world.pay(btc["id"], 40_000)
    world.run()
    assert api("get", INVOICE, btc["id"], expect=200).get_json()["paidAmount"] == "0.0004"


@pytest.mark.parametrize("currency", ["USD", "eur"])
def test_a_usd_or_eur_price_is_refused_with_what_to_do(api, currency):
    res = api("post", STORE, json={"amount": "12.50", "currency": currency}, expect=422)
    [problem] = [p for p in res.get_json() if p["path"] == "currency"]
    assert "KRW" in problem["message"] and "round" in problem["message"]
    res = api("post", STORE, json={"amount": "12000.5", "currency": "KRW"}, expect=422)
    assert "round" in res.get_json()[0]["message"]


def test_webhooks_answer_on_the_short_path_form_too(app, client, doc, merchant):
    store_id, token = merchant
    created = client.post(f"/api/v1/stores/{store_id}/webhooks", headers=auth(token),
                          json={"url": "https://shop.example/hook"}).get_json()
    hook = created["id"]

    def call(method, path, expect, **kw):
        res = client.open(path.replace("{webhookId}", hook), method=method.upper(),
                          headers=auth(kw.pop("token", token)), **kw)
        assert res.status_code == expect, (path, res.get_data()[:200])
        check_response(doc, path, method, res)
        return res

    assert call("get", "/api/v1/webhooks/{webhookId}", 200).get_json()["url"] == \
        "https://shop.example/hook"
    call("put", "/api/v1/webhooks/{webhookId}", 200,
         json={"url": "https://shop.example/hook2", "enabled": False})
    assert client.get(f"/api/v1/stores/{store_id}/webhooks/{hook}",
                      headers=auth(token)).get_json()["enabled"] is False
    assert call("get", "/api/v1/webhooks/{webhookId}/deliveries", 200).get_json() == []
    _, other = make_merchant(app, name="Jagalchi Fish")
    res = call("get", "/api/v1/webhooks/{webhookId}", 404, token=other)
    assert res.get_json()["code"] == "webhook-not-found"
    call("delete", "/api/v1/webhooks/{webhookId}", 404, token=other)
    call("delete", "/api/v1/webhooks/{webhookId}", 200)
    call("get", "/api/v1/webhooks/{webhookId}", 404)



def test_only_the_store_website_may_frame_the_checkout_and_the_modal_script_is_served(
        app, client, api):
    from merchants.models import Store

    invoice_id = api("post", STORE, json={"amount": 1000}, expect=200).get_json()["id"]
    csp = client.get(f"/i/{invoice_id}").headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    gateway = app.extensions["busanpay"]
    for website, expected in (("https://shop.example", "frame-ancestors https://shop.example"),
                              ("https://shop.example; script-src *", "frame-ancestors 'none'")):
        with gateway.db.write() as session:
            store = session.get(Store, api.store_id)
            store.website = website
            session.add(store)
        page = client.get(f"/i/{invoice_id}")
        assert expected in page.headers["Content-Security-Policy"]
        assert ("modal/frame.js" in page.get_data(as_text=True)) == (expected.endswith("example"))
    script = client.get("/modal/btcpay.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"showInvoice" in script.data and b"onModalReceiveMessage" in script.data
