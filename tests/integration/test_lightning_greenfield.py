"""Greenfield with Lightning on: BTC-LN beside BTC-CHAIN in an invoice's payment methods,
in server/info and in the store's payment methods, and webhook bodies that name the method.
Every answer is checked against our OpenAPI document; on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlmodel import select

from merchants.models import Store
from merchants.service import CAN_MODIFY_STORE, CAN_VIEW_INVOICES, CAN_VIEW_STORE
from payments.models import InvoiceEvent
from tests.conftest import make_merchant
from tests.integration.test_greenfield_stores import call, doc  # noqa: F401
from tests.integration.test_lightning_core import World, demo_chain  # noqa: F401

METHODS = "/api/v1/stores/{storeId}/invoices/{invoiceId}/payment-methods"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "lightning": "demo"}


@pytest.fixture
def world(app, client, gateway, clock, demo_chain):  # noqa: F811
    w = World(app, client, gateway, clock, demo_chain)
    w.watcher.run_once()
    return w


def methods(world, doc, invoice_id) -> dict[str, dict]:  # noqa: F811
    body = call(world.client, doc, "get", METHODS, world.token,
                path={"storeId": world.store_id, "invoiceId": invoice_id}).get_json()
    return {m["paymentMethodId"]: m for m in body}


def btc(sats: int) -> str:
    from payments.bip21 import format_btc

    return format_btc(sats)


def test_an_invoice_with_lightning_lists_btc_ln_with_its_bolt11_beside_btc_chain(world, doc):  # noqa: F811
    invoice = world.invoice(5000)
    row, offer = world.row(invoice["id"]), world.offer(invoice["id"])
    found = methods(world, doc, invoice["id"])
    assert list(found) == ["BTC-CHAIN", "BTC-LN"]
    ln = found["BTC-LN"]
    assert ln["destination"] == offer.bolt11 and ln["paymentLink"] == f"lightning:{offer.bolt11}"
    assert ln["activated"] is True and ln["payments"] == []
    assert ln["rate"] == found["BTC-CHAIN"]["rate"] == format(row.rate, "f")
    assert ln["amount"] == ln["due"] == btc(row.due_sats)
    assert (ln["totalPaid"], ln["paymentMethodPaid"], ln["paymentMethodFee"]) == ("0", "0", "0")
    assert ln["additionalData"]["paymentHash"] == offer.payment_hash
    assert ln["additionalData"]["expirationTime"] <= int(row.expires_at.timestamp())
    assert ln["additionalData"]["unavailable"] is None
    listed = call(world.client, doc, "get", "/api/v1/stores/{storeId}/invoices", world.token,
                  path={"storeId": world.store_id},
                  query={"includePaymentMethods": "true"}).get_json()
    assert [m["paymentMethodId"] for m in listed[0]["paymentMethods"]] == ["BTC-CHAIN", "BTC-LN"]
    assert listed[0]["paymentMethods"][1]["destination"] == offer.bolt11


def test_after_a_lightning_payment_btc_ln_lists_it_by_payment_hash_and_is_no_longer_payable(
        world, doc):  # noqa: F811
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    world.node.settle(offer.bolt11)
    world.listen()
    row = world.row(invoice["id"])
    found = methods(world, doc, invoice["id"])
    ln, chain = found["BTC-LN"], found["BTC-CHAIN"]
    [payment] = ln["payments"]
    assert payment["id"] == offer.payment_hash and payment["status"] == "Settled"
    assert payment["value"] == btc(row.due_sats)
    assert ln["paymentMethodPaid"] == ln["totalPaid"] == btc(row.due_sats) and ln["due"] == "0"
    assert ln["activated"] is False and ln["destination"] == offer.bolt11  # the one paid
    assert ln["additionalData"]["unavailable"] == "not-due"
    assert chain["payments"] == [] and chain["paymentMethodPaid"] == "0"
    assert chain["totalPaid"] == btc(row.due_sats) and chain["due"] == "0"
    listed = call(world.client, doc, "get", "/api/v1/stores/{storeId}/invoices", world.token,
                  path={"storeId": world.store_id},
                  query={"includePaymentMethods": "true"}).get_json()
    assert listed[0]["paymentMethods"] == [chain, ln]  # a list judges the stored offer alike


def test_a_partial_on_chain_payment_and_the_lightning_remainder_add_up_in_both_methods(
        world, doc):  # noqa: F811
    invoice = world.invoice(5000)
    row = world.row(invoice["id"])
    world.chain.pay(row.address, 1000)
    world.watcher.run_once()
    found = methods(world, doc, invoice["id"])
    remainder = world.offer(invoice["id"])
    assert found["BTC-LN"]["destination"] == remainder.bolt11  # a new BOLT11 for the rest
    assert found["BTC-LN"]["due"] == found["BTC-CHAIN"]["due"] == btc(row.due_sats - 1000)
    assert found["BTC-LN"]["totalPaid"] == btc(1000)
    world.node.settle(remainder.bolt11)
    world.listen()
    found = methods(world, doc, invoice["id"])
    ln, chain = found["BTC-LN"], found["BTC-CHAIN"]
    assert chain["paymentMethodPaid"] == btc(1000)
    assert ln["paymentMethodPaid"] == btc(row.due_sats - 1000)
    assert ln["totalPaid"] == chain["totalPaid"] == btc(row.due_sats)
    assert ln["due"] == chain["due"] == "0"
    assert [p["id"] for p in ln["payments"]] == [remainder.payment_hash]
    [chain_payment] = chain["payments"]
    assert chain_payment["value"] == btc(1000) and chain_payment["destination"] == row.address


def test_an_invoice_the_node_cannot_take_lists_btc_ln_not_activated_with_the_reason(
        app, world, doc, gateway):  # noqa: F811
    with gateway.db.write() as s:
        store = s.get(Store, world.store_id)
        store.settlement_mode = "btc"
        s.add(store)
    invoice = world.invoice(5000)
    ln = methods(world, doc, invoice["id"])["BTC-LN"]
    assert ln["activated"] is False and ln["destination"] == "" and ln["paymentLink"] is None
    assert ln["additionalData"]["unavailable"] == "btc-direct"
    assert "own wallet" in ln["additionalData"]["reason"]


def test_server_info_and_store_payment_methods_list_btc_ln_while_lightning_is_on(
        app, client, doc, world):  # noqa: F811
    _, token = make_merchant(app, name="Setup key", permissions=[CAN_VIEW_INVOICES])
    info = call(client, doc, "get", "/api/v1/server/info", token).get_json()
    assert info["supportedPaymentMethods"] == ["BTC-CHAIN", "BTC-LN"]
    store_id, token = make_merchant(app, name="Jagalchi Fish", permissions=[CAN_MODIFY_STORE])
    template = "/api/v1/stores/{storeId}/payment-methods"
    found = call(client, doc, "get", template, token, path={"storeId": store_id}).get_json()
    assert found == [{"enabled": True, "paymentMethodId": "BTC-CHAIN", "paymentMethod": "BTC"},
                     {"enabled": True, "paymentMethodId": "BTC-LN",
                      "paymentMethod": "BTC-LightningNetwork"}]
    configured = call(client, doc, "get", template, token, path={"storeId": store_id},
                      query={"includeConfig": "true", "onlyEnabled": "true"}).get_json()
    assert configured[1]["config"]["connectionString"] is None  # the node's is never shown
    assert call(client, doc, "get", template, token, path={"storeId": store_id},
                query={"onlyEnabled": "false"}).get_json() == []


def test_a_store_paid_in_btc_lists_btc_ln_disabled(app, client, doc, gateway, world):  # noqa: F811
    store_id, token = make_merchant(app, name="Own wallet", permissions=[CAN_VIEW_STORE])
    with gateway.db.write() as s:
        store = s.get(Store, store_id)
        store.settlement_mode = "btc"
        s.add(store)
    template = "/api/v1/stores/{storeId}/payment-methods"
    found = call(client, doc, "get", template, token, path={"storeId": store_id}).get_json()
    assert [(m["paymentMethodId"], m["enabled"]) for m in found] == [
        ("BTC-CHAIN", True), ("BTC-LN", False)]
    assert [m["paymentMethodId"] for m in call(
        client, doc, "get", template, token, path={"storeId": store_id},
        query={"onlyEnabled": "true"}).get_json()] == ["BTC-CHAIN"]


def payment_events(world, invoice_id) -> list[dict]:
    with world.gateway.db.read() as s:
        rows = s.exec(select(InvoiceEvent).where(
            InvoiceEvent.invoice_id == invoice_id,
            InvoiceEvent.event_type.in_(("InvoiceReceivedPayment", "InvoicePaymentSettled")))
            .order_by(InvoiceEvent.id))
        return [json.loads(r.payload_json) for r in rows]


def test_payment_webhook_bodies_name_the_method_on_chain_and_over_lightning(world):
    invoice = world.invoice(5000)
    row = world.row(invoice["id"])
    world.chain.pay(row.address, 1000)
    world.watcher.run_once()
    world.chain.mine(1)
    world.watcher.run_once()
    remainder = world.offer(invoice["id"])
    world.node.settle(remainder.bolt11)
    world.listen()
    bodies = payment_events(world, invoice["id"])
    named = [(b["type"], b["paymentMethodId"], b["payment"]["id"]) for b in bodies]
    chain_id = next(b["payment"]["id"] for b in bodies if b["paymentMethodId"] == "BTC-CHAIN")
    assert sorted(named) == sorted([
        ("InvoiceReceivedPayment", "BTC-CHAIN", chain_id),
        ("InvoicePaymentSettled", "BTC-CHAIN", chain_id),
        ("InvoiceReceivedPayment", "BTC-LN", remainder.payment_hash),
        ("InvoicePaymentSettled", "BTC-LN", remainder.payment_hash)])
    assert all(b["payment"]["status"] == "Settled" for b in bodies
               if b["type"] == "InvoicePaymentSettled")


class TestWithLightningOff:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "lightning": ""}

    def test_server_info_store_and_invoice_payment_methods_leave_btc_ln_out(
            self, app, client, doc, gateway, demo_chain):  # noqa: F811
        assert gateway.lightning is None
        store_id, token = make_merchant(app)
        info = call(client, doc, "get", "/api/v1/server/info", token).get_json()
        assert info["supportedPaymentMethods"] == ["BTC-CHAIN"]
        found = call(client, doc, "get", "/api/v1/stores/{storeId}/payment-methods", token,
                     path={"storeId": store_id}).get_json()
        assert [m["paymentMethodId"] for m in found] == ["BTC-CHAIN"]
        invoice = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 5000},
                              headers={"Authorization": f"token {token}"}).get_json()
        found = call(client, doc, "get", METHODS, token,
                     path={"storeId": store_id, "invoiceId": invoice["id"]}).get_json()
        assert [m["paymentMethodId"] for m in found] == ["BTC-CHAIN"]


def test_the_payments_counter_moves_by_method_for_chain_and_lightning_payments(
        app, world, client):
    from operations.metrics import PAYMENTS_RECEIVED

    def seen(method):
        return PAYMENTS_RECEIVED.labels(method=method)._value.get()

    before = seen("BTC-CHAIN"), seen("BTC-LN")
    invoice = world.invoice(5000)
    world.chain.pay(world.row(invoice["id"]).address, 1000)
    world.watcher.run_once()
    world.node.settle(world.offer(invoice["id"]).bolt11)
    world.listen()
    world.listen()  # a second run records nothing new
    assert (seen("BTC-CHAIN"), seen("BTC-LN")) == (before[0] + 1, before[1] + 1)
