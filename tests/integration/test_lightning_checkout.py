"""The tourist's side of Lightning: the unified QR (`bitcoin:ADDR?amount=…&lightning=BOLT11`)
on the checkout page and its images, the plain Lightning QR, the on-chain-only note; on
SQLite and PostgreSQL, with the demo node and the demo chain."""
from __future__ import annotations

import io
import re

import bolt11
import pytest
from PIL import Image

from chain.watcher import Watcher
from lightning.demo_node import DemoLightningNode
from lightning.invoices import RETRY_SECONDS, LightningOffers, current_lightning
from payments.bip21 import format_btc, parse_payment_uri
from payments.models import Invoice, InvoiceQr
from payments.qr_codes import render_svg
from payments.unified import lightning_qr_payload, qr_token, request_uri
from tests.conftest import auth, make_merchant
from tests.integration.test_lightning_core import DeadNode, app_config, demo_chain  # noqa: F401

pyzbar = pytest.importorskip("pyzbar.pyzbar", reason="needs libzbar0 (apt-get install libzbar0)")

LANGS = ("en", "ko", "zh", "ja")


@pytest.fixture
def shop(app, gateway, demo_chain):
    store_id, token = make_merchant(app)
    gateway.extras["chain_backend"] = demo_chain
    watcher = Watcher(gateway, demo_chain)
    watcher.run_once()
    return store_id, token, watcher


def new_invoice(client, shop, amount="5000") -> str:
    store_id, token, _watcher = shop
    res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": amount},
                      headers=auth(token))
    assert res.status_code == 200, res.get_json()
    return res.get_json()["id"]


def row(gateway, invoice_id) -> Invoice:
    with gateway.db.read() as s:
        return s.get(Invoice, invoice_id)


def qr_src(html: str) -> str:
    return re.search(r'<img src="([^"]+)"[^>]*data-qr-main', html).group(1).replace("&amp;", "&")


def zbar(png: bytes) -> str:
    [symbol] = [s for s in pyzbar.decode(Image.open(io.BytesIO(png))) if s.type == "QRCODE"]
    return symbol.data.decode("utf-8")


def test_the_checkout_qr_decodes_with_zbar_to_a_bip21_whose_bolt11_asks_the_invoice_s_sats_hash_and_expiry(
        client, gateway, shop):
    invoice_id = new_invoice(client, shop)
    invoice = row(gateway, invoice_id)
    offer = current_lightning(gateway, invoice_id)
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    src = qr_src(html)
    assert src.startswith(f"/i/{invoice_id}/qr.svg?v=")
    res = client.get(src.replace("qr.svg", "qr.png"))
    assert res.status_code == 200 and "immutable" in res.headers["Cache-Control"]

    payload = zbar(res.data)
    # Upper-case inside the QR (address and BOLT11: alphanumeric mode), lower-case scheme.
    assert payload.startswith(f"bitcoin:{invoice.address.upper()}?amount="
                              f"{format_btc(invoice.due_sats)}&label=Haeundae%20Coffee&lightning=")
    assert f"&lightning={offer.bolt11.upper()}" in payload and payload.endswith(offer.bolt11.upper())
    uri = parse_payment_uri(payload)
    assert uri["sats"] == invoice.due_sats
    decoded = bolt11.decode(uri["params"]["lightning"].lower())
    assert decoded.amount_msat == invoice.due_sats * 1000
    assert decoded.payment_hash == offer.payment_hash
    assert decoded.date + decoded.expiry <= int(invoice.expires_at.timestamp())
    # The clickable link carries the same BOLT11, lower-case.
    assert f'href="bitcoin:{invoice.address}?amount={format_btc(invoice.due_sats)}&amp;label=Haeundae%20Coffee&amp;' \
           f'lightning={offer.bolt11}"' in html


def test_the_page_offers_the_plain_lightning_qr_and_a_copy_button_for_the_bolt11(
        client, gateway, shop):
    invoice_id = new_invoice(client, shop)
    offer = current_lightning(gateway, invoice_id)
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Two ways to pay" in html and "Lightning or on-chain: one QR code" in html
    assert f'data-copy="{offer.bolt11}"' in html
    assert f'href="lightning:{offer.bolt11}"' in html
    src = f"/i/{invoice_id}/lightning.svg?v={qr_token(offer.bolt11)}"
    assert src in html
    res = client.get(src)
    assert res.status_code == 200 and "immutable" in res.headers["Cache-Control"]
    assert res.data == render_svg(lightning_qr_payload(offer.bolt11))
    assert lightning_qr_payload(offer.bolt11) == "LIGHTNING:" + offer.bolt11.upper()


def test_after_a_partial_payment_the_rest_qr_carries_the_rest_s_new_bolt11_and_the_kept_qr_follows(
        client, gateway, shop, demo_chain):
    _store, _token, watcher = shop
    invoice_id = new_invoice(client, shop)
    first = current_lightning(gateway, invoice_id)
    assert zbar(client.get(f"/i/{invoice_id}/qr.png").data).endswith(first.bolt11.upper())
    with gateway.db.read() as s:
        assert first.bolt11.upper() in s.get(InvoiceQr, invoice_id).payload

    invoice = row(gateway, invoice_id)
    demo_chain.pay(invoice.address, 1000)
    watcher.run_once()
    invoice = row(gateway, invoice_id)
    assert invoice.additional_status == "PaidPartial"
    rest = invoice.due_sats - 1000
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    second = current_lightning(gateway, invoice_id)
    assert second.payment_hash != first.payment_hash and second.amount_msat == rest * 1000
    expected = request_uri(invoice.address, rest, "Haeundae Coffee", second, for_qr=True)
    src = qr_src(html)
    assert src == f"/i/{invoice_id}/qr/{rest}.svg?v={qr_token(expected)}"
    res = client.get(src)
    assert res.status_code == 200 and "immutable" in res.headers["Cache-Control"]
    assert res.data == render_svg(expected)
    assert first.bolt11 not in html and f"lightning={second.bolt11}" in html
    # The old image URL is no longer kept by browsers; the kept full-amount QR drops the
    # superseded BOLT11 (it no longer asks what is due).
    stale = client.get(f"/i/{invoice_id}/qr/{rest}.svg?v=0000")
    assert stale.headers["Cache-Control"] == "no-cache"
    payload = zbar(client.get(f"/i/{invoice_id}/qr.png").data)
    assert "lightning=" not in payload
    with gateway.db.read() as s:
        assert s.get(InvoiceQr, invoice_id).payload == payload


def test_a_bolt11_made_after_the_node_came_back_replaces_the_kept_on_chain_only_qr(
        client, gateway, shop, clock):
    live = gateway.invoices.lightning
    gateway.invoices.lightning = LightningOffers(gateway.db, DeadNode(), gateway.clock)
    invoice_id = new_invoice(client, shop)
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Lightning is not available for this payment right now" in html
    assert "lightning=" not in html and "lightning.svg" not in html
    assert "lightning=" not in zbar(client.get(qr_src(html).replace("qr.svg", "qr.png")).data)

    gateway.invoices.lightning = live  # the node answers again
    clock.advance(seconds=RETRY_SECONDS + 1)
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    offer = current_lightning(gateway, invoice_id)
    assert offer.bolt11 and "Lightning is not available" not in html
    payload = zbar(client.get(qr_src(html).replace("qr.svg", "qr.png")).data)
    assert payload.endswith("&lightning=" + offer.bolt11.upper())
    old = client.get(f"/i/{invoice_id}/qr.png")  # no token: served, never kept
    assert old.headers["Cache-Control"] == "no-cache"


def test_a_node_without_inbound_liquidity_gives_an_on_chain_only_page_in_every_language(
        client, gateway, shop):
    gateway.invoices.lightning = LightningOffers(
        gateway.db, DemoLightningNode(gateway.db, clock=gateway.clock, inbound_sats=10),
        gateway.clock)
    invoice_id = new_invoice(client, shop)
    for lang in LANGS:
        html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": lang}).get_data(
            as_text=True)
        assert 'class="ln-note"' in html and "lightning=" not in html
        if lang != "en":
            assert "Lightning is not available" not in html
    assert client.get(f"/i/{invoice_id}/lightning.svg").status_code == 404


def test_the_two_ways_are_explained_in_korean_chinese_and_japanese(client, gateway, shop):
    invoice_id = new_invoice(client, shop)
    english = ("Two ways to pay", "Lightning or on-chain: one QR code", "Show a Lightning-only",
               "Open in Lightning wallet", "Copy the Lightning invoice", "Paid in a second")
    for lang in ("ko", "zh", "ja"):
        html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": lang}).get_data(
            as_text=True)
        assert 'class="ways"' in html
        leaked = [words for words in english if words in html]
        assert not leaked, (lang, leaked)


def test_a_paid_invoice_shows_no_lightning_qr_and_its_lightning_qr_is_gone(client, gateway, shop):
    invoice_id = new_invoice(client, shop)
    offer = current_lightning(gateway, invoice_id)
    gateway.lightning.settle(offer.bolt11)
    from lightning.listener import Listener

    Listener(gateway, gateway.lightning, sleep=lambda _s: None).run_once(0)
    assert row(gateway, invoice_id).status == "Settled"
    html = client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Paid — thank you!" in html and offer.bolt11 not in html
    assert f'<code class="txid" translate="no">{offer.payment_hash}</code>' in html
    assert '<span class="tag">⚡ Lightning</span>' in html
    assert client.get(f"/i/{invoice_id}/lightning.svg").status_code == 404
