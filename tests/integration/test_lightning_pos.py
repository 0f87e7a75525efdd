"""The cashier's side of Lightning: the sale's QR carries the BOLT11, the rest after a partial
payment gets its own, and the sale screen, receipts, today's totals and the sales list say how
a sale was paid, in the cashier's language; on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from chain.backends.demo import DemoChain
from chain.watcher import Watcher
from lightning.invoices import current_lightning
from lightning.listener import Listener
from payments.qr_codes import render_svg
from payments.unified import qr_token, request_uri
from tests.integration.test_pos import app, charge, shop, sign_in_cashier  # noqa: F401


@pytest.fixture
def app_config(app_config):
    return {**app_config, "lightning": "demo"}


@pytest.fixture
def till(app, client, shop, tmp_path):
    gateway = app.extensions["busanpay"]
    chain = DemoChain(str(tmp_path / "demochain.sqlite3"))
    gateway.extras["chain_backend"] = chain
    watcher = Watcher(gateway, chain)
    watcher.run_once()
    csrf = sign_in_cashier(client, shop["store"])
    yield gateway, chain, watcher, csrf
    chain.close()


def settle_lightning(gateway, invoice_id):
    gateway.lightning.settle(current_lightning(gateway, invoice_id).bolt11)
    Listener(gateway, gateway.lightning, sleep=lambda _s: None).run_once(0)


def test_a_charge_answers_with_a_qr_url_that_names_the_unified_payload_and_fast_polling(
        client, till):
    gateway, _chain, _watcher, csrf = till
    res = charge(client, csrf, "5000")
    assert res.status_code == 201
    sale = res.get_json()
    offer = current_lightning(gateway, sale["id"])
    invoice = gateway.invoices.get(sale["id"])
    payload = request_uri(invoice.address, invoice.due_sats, "Haeundae Coffee", offer, for_qr=True)
    assert payload.endswith("&lightning=" + offer.bolt11.upper())
    assert sale["qrUrl"] == f"/i/{sale['id']}/qr.svg?v={qr_token(payload)}"
    assert sale["lightning"] is True
    assert sale["waysText"] == "Lightning or on-chain: one QR code"
    image = client.get(sale["qrUrl"])
    assert image.data == render_svg(payload) and "immutable" in image.headers["Cache-Control"]


def test_the_rest_after_a_partial_on_chain_payment_has_its_own_bolt11_in_the_pos_qr(
        client, till):
    gateway, chain, watcher, csrf = till
    sale = charge(client, csrf, "5000").get_json()
    first = current_lightning(gateway, sale["id"])
    invoice = gateway.invoices.get(sale["id"])
    chain.pay(invoice.address, 1000)
    watcher.run_once()
    details = client.get(sale["detailsUrl"]).get_json()
    assert details["state"] == "partial"
    rest = invoice.due_sats - 1000
    second = current_lightning(gateway, sale["id"])
    assert second.payment_hash != first.payment_hash
    payload = request_uri(invoice.address, rest, "Haeundae Coffee", second, for_qr=True)
    assert details["restQrUrl"] == f"/pos/invoices/{sale['id']}/qr/{rest}.svg?v={qr_token(payload)}"
    assert details["lightning"] is True
    image = client.get(details["restQrUrl"])
    assert image.data == render_svg(payload) and "immutable" in image.headers["Cache-Control"]
    assert client.get(f"/pos/invoices/{sale['id']}/qr/{rest}.svg?v=old").headers[
        "Cache-Control"] == "no-cache"


def test_a_sale_paid_over_lightning_says_so_on_the_screen_the_receipt_and_today_s_totals(
        client, till):
    gateway, chain, watcher, csrf = till
    ln_sale = charge(client, csrf, "5000").get_json()
    chain_sale = charge(client, csrf, "7000").get_json()
    settle_lightning(gateway, ln_sale["id"])
    invoice = gateway.invoices.get(chain_sale["id"])
    chain.pay(invoice.address, invoice.due_sats)
    chain.mine(1)
    watcher.run_once()

    details = client.get(ln_sale["detailsUrl"]).get_json()
    assert (details["status"], details["way"], details["methodText"]) == \
        ("Settled", "lightning", "Lightning")
    assert details["lightning"] is False and details["waysText"] == ""  # nothing more to pay
    assert client.get(chain_sale["detailsUrl"]).get_json()["methodText"] == "On-chain"

    receipt = client.get(f"/pos/receipts/{ln_sale['id']}").get_data(as_text=True)
    assert "Payment method" in receipt and "<dd>Lightning</dd>" in receipt

    today = client.get("/pos/today").get_data(as_text=True)
    assert "Paid, by payment method" in today
    assert today.count('data-way="lightning"') == 2 and today.count('data-way="chain"') == 2
    assert "badge-way-lightning" in today and "badge-way-chain" in today
    client.set_cookie("lang", "ko")
    korean = client.get("/pos/today").get_data(as_text=True)
    assert "결제 방법별" in korean and "라이트닝" in korean and "온체인" in korean
    assert "Paid, by payment method" not in korean


def test_a_sale_paid_both_ways_is_counted_once_under_both(client, till):
    gateway, chain, watcher, csrf = till
    sale = charge(client, csrf, "5000").get_json()
    invoice = gateway.invoices.get(sale["id"])
    chain.pay(invoice.address, 1000)
    chain.mine(1)
    watcher.run_once()
    settle_lightning(gateway, sale["id"])  # the rest's BOLT11
    details = client.get(sale["detailsUrl"]).get_json()
    assert (details["status"], details["way"]) == ("Settled", "both")
    assert details["methodText"] == "Lightning and on-chain"
    today = client.get("/pos/today").get_data(as_text=True)
    assert today.count('data-way="both"') == 2 and 'data-way="lightning"' not in today


def test_an_on_chain_only_sale_tells_the_cashier_why(client, till):
    gateway, _chain, _watcher, csrf = till
    from lightning.demo_node import DemoLightningNode
    from lightning.invoices import LightningOffers

    gateway.invoices.lightning = LightningOffers(
        gateway.db, DemoLightningNode(gateway.db, clock=gateway.clock, inbound_sats=10),
        gateway.clock)
    sale = charge(client, csrf, "5000").get_json()
    assert sale["lightning"] is False
    assert sale["waysText"] == "On-chain only: Lightning is not available for this sale"
    invoice = gateway.invoices.get(sale["id"])
    on_chain = request_uri(invoice.address, invoice.due_sats, "Haeundae Coffee", None, for_qr=True)
    assert client.get(sale["qrUrl"]).data == render_svg(on_chain)  # no BOLT11 that cannot be paid
