"""Refunds a shop opens through Greenfield (pull payments, invoice refunds) become the
gateway's refund claims: the viewLink is the payer's claim page, the treasury approves,
the merchant's won pays for it, and the ledger still checks."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlmodel import select

from merchants.service import CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, CAN_VIEW_INVOICES
from settlement.models import RefundClaim
from tests.conftest import auth, make_merchant
from tests.integration.test_accounts_login import csrf_token
from tests.integration.test_openapi import check_response
from tests.integration.test_payment_scenarios import DUE, demo_chain  # noqa: F401
from tests.integration.test_refund_pages import (EXTRA, REGTEST_ADDRESS, TREASURY, TXID, login,
                                                 open_claim, overpaid, payer, world)  # noqa: F401
from tests.integration.test_settlement_support import balance_of, post_all

RATE = Decimal(150_000_000)
PULL = "/api/v1/stores/{storeId}/pull-payments"


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


def api(world, doc, method, template, expect=200, token=None, **kwargs):
    url = template.replace("{storeId}", world.store_id)
    for name, value in kwargs.pop("path", {}).items():
        url = url.replace("{" + name + "}", value)
    res = world.client.open(url, method=method.upper(), headers=auth(token or world.token),
                            **kwargs)
    assert res.status_code == expect, (url, res.status_code, res.get_data()[:400])
    check_response(doc, template, method, res)
    return res.get_json()


def settled(world) -> dict:
    invoice = world.invoice(15000)
    world.pay(invoice["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(invoice["id"]) == ("Settled", "None")
    post_all(world.gateway)
    return invoice


def as_php_client(amount, currency, name="Refund of order 1001; damaged") -> dict:
    """The body BTCPay's PHP client sends for WooCommerce's refund button."""
    return {"name": name, "description": None, "amount": amount, "currency": currency,
            "period": None, "BOLT11Expiration": None, "autoApproveClaims": False,
            "startsAt": None, "expiresAt": None, "paymentMethods": ["BTC"],
            "payoutMethods": ["BTC"]}


def open_view_link(client, link: str) -> str:
    """What a browser does with the viewLink: the server never sees the part after '#'
    (key.js posts it); returns the claim page's path."""
    url, key = link.split("#key=")
    path = "/" + url.split("/", 3)[3]
    assert client.get(path).status_code == 200  # without the key: the page asks for it
    res = client.post(path + "/key", data={"csrf_token": csrf_token(client, "/login"),
                                           "key": key})
    assert res.status_code == 303 and res.headers["Location"] == path
    return path


def give_address(client, path: str) -> None:
    res = client.post(path, data={"csrf_token": csrf_token(client, path),
                                  "address": REGTEST_ADDRESS})
    assert res.status_code == 303, res.get_data(as_text=True)[:400]


def statuses(world) -> dict[str, tuple]:
    with world.gateway.db.read() as session:
        return {c.id: (c.status, c.invoice_id, c.merchant_funded, c.amount_sats)
                for c in session.exec(select(RefundClaim))}


def stored(pull: dict) -> dict:
    """The pull payment as a later GET shows it: the gateway kept no key to show."""
    return {**pull, "viewLink": pull["viewLink"].split("#", 1)[0]}


def test_a_shops_pull_payment_is_a_claim_the_payer_fills_and_the_treasury_pays(
        app, world, doc):  # noqa: F811
    settled(world)
    settled(world)  # the store holds ₩14,850 a sale: a ₩15,000 refund needs a second one
    payable = f"merchant_payable:{world.store_id}"
    before = balance_of(world.gateway, payable)
    pull = api(world, doc, "post", PULL, json=as_php_client("15000", "KRW"))
    assert pull["amount"] == "15000" and pull["currency"] == "KRW"
    assert pull["autoApproveClaims"] is False and pull["name"].startswith("Refund of order")
    # the merchant pays in won; the payer is owed the sats that buys, rounded down
    assert balance_of(world.gateway, payable) == before + 15000
    assert balance_of(world.gateway, "refunds_owed:btc") == -DUE
    with world.gateway.db.read() as session:
        [claim] = session.exec(select(RefundClaim)).all()
    assert claim.invoice_id is None and claim.merchant_funded
    assert re.fullmatch(rf"https?://[^/]+/refund/{claim.id}#key=[\w-]{{43}}", pull["viewLink"])
    tourist = payer(app)
    path = open_view_link(tourist, pull["viewLink"])
    page = tourist.get(path).get_data(as_text=True)
    assert "0.0001 BTC" in page and 'name="address"' in page
    assert api(world, doc, "get", "/api/v1/pull-payments/{pullPaymentId}/payouts",
               path={"pullPaymentId": pull["id"]}) == []
    give_address(tourist, path)
    [payout] = api(world, doc, "get", "/api/v1/pull-payments/{pullPaymentId}/payouts",
                   path={"pullPaymentId": pull["id"]})
    assert (payout["state"], payout["destination"], payout["payoutAmount"]) == \
        ("AwaitingApproval", REGTEST_ADDRESS, "0.0001")
    treasurer = login(app, *TREASURY)
    token = csrf_token(treasurer, "/city/refunds")
    queue = treasurer.get("/city/refunds").get_data(as_text=True)
    assert f'id="claim-{payout["id"]}"' in queue and "paid for by the merchant" in queue
    assert treasurer.post(f"/city/refunds/{payout['id']}/approve",
                          data={"csrf_token": token}).status_code == 303
    assert treasurer.post(f"/city/refunds/{payout['id']}/sent",
                          data={"csrf_token": token, "txid": TXID}).status_code == 303
    [payout] = api(world, doc, "get", "/api/v1/pull-payments/{pullPaymentId}/payouts",
                   path={"pullPaymentId": pull["id"]})
    assert payout["state"] == "Completed" and payout["paymentProof"]["transactionId"] == TXID
    assert api(world, doc, "get", "/api/v1/pull-payments/{pullPaymentId}",
               path={"pullPaymentId": pull["id"]}) == stored(pull)
    assert api(world, doc, "get", PULL) == [stored(pull)]
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    from settlement.reconcile import check_ledger

    assert check_ledger(world.gateway)["ok"]


@pytest.mark.parametrize("body,sats,krw", [
    ({"refundVariant": "RateThen"}, DUE, 15000),
    ({"refundVariant": "currentrate", "subtractPercentage": "10"}, DUE * 9 // 10, 13500),
    ({"refundVariant": "Fiat"}, DUE, 15000),
    ({"refundVariant": "Custom", "customAmount": "0.00005", "customCurrency": "BTC"},
     5000, 7500),
    ({"refundVariant": "Custom", "customAmount": "5000", "customCurrency": "krw"},
     3333, 5000),
])
def test_invoice_refund_variants_set_the_amount(world, doc, body, sats, krw):  # noqa: F811
    settled(world)  # another sale: the store's balance pays the refund (₩14,850 a sale)
    invoice = settled(world)
    payable = f"merchant_payable:{world.store_id}"
    before = balance_of(world.gateway, payable)
    pull = api(world, doc, "post", "/api/v1/invoices/{invoiceId}/refund",
               path={"invoiceId": invoice["id"]}, json={"name": "refund", **body,
                                                        "payoutMethods": ["BTC-CHAIN"]})
    with world.gateway.db.read() as session:
        claim = session.query(RefundClaim).filter_by(invoice_id=invoice["id"]).one()
    assert claim.amount_sats == sats and claim.status == "open"
    assert balance_of(world.gateway, payable) == before + krw
    from settlement.reconcile import check_ledger

    assert check_ledger(world.gateway)["ok"]
    assert claim.merchant_funded
    assert re.fullmatch(rf"https?://[^/]+/refund/{claim.id}#key=[\w-]{{43}}", pull["viewLink"])


def test_an_overpayment_refund_costs_the_merchant_nothing(world, doc):  # noqa: F811
    invoice_id = overpaid(world)
    payable = f"merchant_payable:{world.store_id}"
    before = balance_of(world.gateway, payable)
    pull = api(world, doc, "post", "/api/v1/stores/{storeId}/invoices/{invoiceId}/refund",
               path={"invoiceId": invoice_id}, json={"refundVariant": "OverpaidAmount"})
    assert pull["currency"] == "BTC" and pull["amount"] == "0.000025"
    assert balance_of(world.gateway, payable) == before


def test_refunds_that_cannot_be_are_refused_and_change_nothing(app, world, doc):  # noqa: F811
    invoice = settled(world)
    unpaid = world.invoice(1000)
    refund = "/api/v1/invoices/{invoiceId}/refund"
    payable = f"merchant_payable:{world.store_id}"
    before = balance_of(world.gateway, payable)
    for invoice_id, body, path in (
            (unpaid["id"], {"refundVariant": "RateThen"}, "invoiceId"),
            (invoice["id"], {"refundVariant": "Sideways"}, "refundVariant"),
            (invoice["id"], {"refundVariant": "OverpaidAmount"}, "refundVariant"),
            (invoice["id"], {"refundVariant": "Custom", "customAmount": "20000",
                             "customCurrency": "KRW"}, "amount"),
            (invoice["id"], {"refundVariant": "Custom", "customAmount": "10",
                             "customCurrency": "USD"}, "customCurrency")):
        errors = api(world, doc, "post", refund, 422, path={"invoiceId": invoice_id}, json=body)
        assert errors[0]["path"] == path, errors
    errors = api(world, doc, "post", PULL, 422, json=as_php_client("12.50", "USD"))
    assert "KRW" in errors[0]["message"] and "round" in errors[0]["message"]
    errors = api(world, doc, "post", PULL, 422, json={**as_php_client("1000", "KRW"),
                                                      "autoApproveClaims": True})
    assert errors[0]["path"] == "autoApproveClaims"
    assert balance_of(world.gateway, payable) == before
    api(world, doc, "post", refund, 200, path={"invoiceId": invoice["id"]},
        json={"refundVariant": "Custom", "customAmount": "10000", "customCurrency": "KRW"})
    errors = api(world, doc, "post", refund, 422, path={"invoiceId": invoice["id"]},
                 json={"refundVariant": "RateThen"})  # 10,000 + 15,000 won > the price
    assert errors[0]["path"] == "amount"
    errors = api(world, doc, "post", refund, 422, path={"invoiceId": invoice["id"]},
                 json={"refundVariant": "Custom", "customAmount": "1000",
                       "customCurrency": "KRW"})  # one open claim per invoice
    assert errors[0]["path"] == "invoiceId"
    assert balance_of(world.gateway, payable) == before + 10000


def test_refund_permissions_and_other_stores(app, world, doc):  # noqa: F811
    invoice = settled(world)
    other_store, other = make_merchant(app, name="Jagalchi Fish")
    refund = "/api/v1/invoices/{invoiceId}/refund"
    res = api(world, doc, "post", refund, 404, token=other, path={"invoiceId": invoice["id"]},
              json={"refundVariant": "RateThen"})
    assert res["code"] == "invoice-not-found"
    _, viewer = make_merchant(app, name="Viewer", permissions=[CAN_VIEW_INVOICES])
    res = world.client.post(f"/api/v1/stores/{world.store_id}/pull-payments", headers=auth(viewer),
                            json=as_php_client("1000", "KRW"))
    assert res.status_code == 404  # another store's id
    pull = api(world, doc, "post", PULL, json=as_php_client("1000", "KRW"))
    res = api(world, doc, "get", "/api/v1/pull-payments/{pullPaymentId}", 404, token=other,
              path={"pullPaymentId": pull["id"]})
    assert res["code"] == "pullpayment-not-found"
    _, creator_only = make_merchant(app, name="Creator", permissions=[
        CAN_CREATE_NONAPPROVED_PULL_PAYMENTS])
    res = world.client.post(f"/api/v1/invoices/{invoice['id']}/refund",
                            headers=auth(creator_only), json={"refundVariant": "RateThen"})
    assert res.status_code == 404  # not its store's invoice
    assert other_store != world.store_id


def test_refunds_without_an_invoice_stand_apart_and_are_approved_one_by_one(app, world, doc):  # noqa: F811
    """Invoice-less claims share no invoice: approving one rejects none of the others."""
    settled(world)
    links = [api(world, doc, "post", PULL, json=as_php_client(won, "KRW"))["viewLink"]
             for won in ("3000", "4500")]
    for link in links:
        tourist = payer(app)
        give_address(tourist, open_view_link(tourist, link))
    first, second = (link.split("/refund/")[1].split("#")[0] for link in links)
    assert {s[0] for s in statuses(world).values()} == {"submitted"}
    treasurer = login(app, *TREASURY)
    token = csrf_token(treasurer, "/city/refunds")
    queue = treasurer.get("/city/refunds").get_data(as_text=True)
    assert f'id="claim-{first}"' in queue and f'id="claim-{second}"' in queue
    assert "claims on this invoice" not in queue and "/invoice/None/credit" not in queue
    for claim_id in (first, second):
        assert treasurer.post(f"/city/refunds/{claim_id}/approve",
                              data={"csrf_token": token}).status_code == 303
        assert statuses(world)[claim_id][0] == "approved"
    assert {s[0] for s in statuses(world).values()} == {"approved"}
    for claim_id, txid in ((first, TXID), (second, TXID[::-1])):
        assert treasurer.post(f"/city/refunds/{claim_id}/sent",
                              data={"csrf_token": token, "txid": txid}).status_code == 303
    assert {s[0] for s in statuses(world).values()} == {"sent"}
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    from settlement.reconcile import check_ledger

    assert check_ledger(world.gateway)["ok"]


def test_a_merchant_refund_and_an_overpayment_claim_on_one_invoice_do_not_compete(
        app, world, doc):  # noqa: F811
    """The merchant-funded sats are that refund's own: a claim from the checkout page is
    offered only the overpayment, and approving either leaves the other standing."""
    invoice_id = overpaid(world)
    settled(world)  # another sale: the store's balance pays the refund (₩14,850 a sale)
    pull = api(world, doc, "post", "/api/v1/invoices/{invoiceId}/refund",
               path={"invoiceId": invoice_id}, json={"refundVariant": "RateThen"})
    customer = payer(app)
    give_address(customer, open_view_link(customer, pull["viewLink"]))
    stranger = payer(app)
    claim_path = open_claim(stranger, invoice_id)
    give_address(stranger, claim_path)
    funded = pull["viewLink"].split("/refund/")[1].split("#")[0]
    rival = claim_path.rsplit("/", 1)[1]
    assert statuses(world) == {funded: ("submitted", invoice_id, True, DUE),
                               rival: ("submitted", invoice_id, False, EXTRA)}
    treasurer = login(app, *TREASURY)
    token = csrf_token(treasurer, "/city/refunds")
    queue = treasurer.get("/city/refunds").get_data(as_text=True)
    assert "claims on this invoice" not in queue  # one rival only: nothing to choose
    for claim_id in (rival, funded):
        assert treasurer.post(f"/city/refunds/{claim_id}/approve",
                              data={"csrf_token": token}).status_code == 303
    assert {s[0] for s in statuses(world).values()} == {"approved"}
    for claim_id, txid in ((rival, TXID), (funded, TXID[::-1])):
        assert treasurer.post(f"/city/refunds/{claim_id}/sent",
                              data={"csrf_token": token, "txid": txid}).status_code == 303
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    from settlement.reconcile import check_ledger

    assert check_ledger(world.gateway)["ok"]
