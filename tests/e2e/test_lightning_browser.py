"""Lightning at the till in a real browser (Debian chromium through Playwright) on a real
server: the cashier charges ₩5,000, the POS's QR carries `lightning=`, the real
`flask --app app demo pay-lightning` settles it on the demo node, and the POS shows "Paid"
within a second; the tourist's checkout page with the unified QR (en, ko).

The server's Lightning listener runs in-process (the embedded default's background job);
the CLI runs in its own process against the same SQLite database, with the real clock (so
the app's clock is the real one here too: the BOLT11's expiry is checked by both).

Screenshots: tests/e2e/artifacts/screens/lightning-*.png.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bolt11
import pytest

from tests.e2e.conftest import BROWSER_TEST
from tests.e2e.test_pos_browser import (LANDSCAPE, PHONE, app, assert_accessible,  # noqa: F401
                                        assert_fits, cashier_signs_in, charge, has_font_for,
                                        new_page, server, shot, store)

pytestmark = BROWSER_TEST

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).parent / "flask"


def real_clock() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "lightning": "demo", "clock": real_clock}


@pytest.fixture
def listener(app):
    """The background jobs as the embedded default runs them in-process: the Lightning
    listener, and the watcher (on an in-memory chain) that a Lightning payment's re-decision
    goes through."""
    from background import Scheduler, jobs_for
    from chain.memchain import MemoryChain

    gateway = app.extensions["busanpay"]
    gateway.extras["chain_backend"] = MemoryChain()
    scheduler = Scheduler(jobs_for(gateway))
    assert "lightning" in [job.name for job in scheduler.jobs]
    scheduler.start()
    yield scheduler
    scheduler.stop()


def pay_lightning_cli(app, tmp_path, invoice_id: str) -> str:
    """`flask --app app demo pay-lightning INVOICE_ID` in its own process, on the test's
    database; returns the payment hash it prints."""
    settings = app.extensions["busanpay"].settings
    env = {**os.environ, "DATABASE_URL": settings.database_url, "BUSANPAY_LIGHTNING": "demo",
           "BUSANPAY_INSTANCE": str(tmp_path / "cli-instance"), "BUSANPAY_INPROCESS_WORKER": "0",
           "BUSANPAY_RATE_SOURCES": "fixed:150000000", "BUSANPAY_SECRET_KEY": "e2e-cli",
           "BUSANPAY_LOG_FORMAT": "text", "BCL_DATA_DIR": str(tmp_path / "bitcoinlib"),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(FLASK), "--app", "app", "demo", "pay-lightning", invoice_id],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def qr_payload(page, selector: str) -> str:
    """Decode the QR image on screen (its pixels, as a phone's camera would) with zbar."""
    from PIL import Image
    from pyzbar.pyzbar import decode

    png = page.locator(selector).screenshot()
    image = Image.open(io.BytesIO(png)).convert("L")
    symbols = [s for s in decode(image) if s.type == "QRCODE"]
    assert len(symbols) == 1, f"{len(symbols)} QR codes decoded from {selector}"
    return symbols[0].data.decode("utf-8")


def test_a_cashier_charges_5000_won_a_lightning_payment_shows_paid_within_a_second(
        browser, server, app, store, listener, tmp_path):
    pytest.importorskip("pyzbar.pyzbar", reason="needs libzbar0")
    from lightning.invoices import current_lightning
    from payments.bip21 import parse_payment_uri

    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        invoice_id = charge(page, "5000")
        assert page.text_content(".sale-won") == "₩5,000"
        assert "Lightning or on-chain" in page.text_content(".sale-ways")

        payload = qr_payload(page, "[data-qr]")
        invoice = gateway.invoices.get(invoice_id)
        offer = current_lightning(gateway, invoice_id)
        uri = parse_payment_uri(payload)
        assert uri["address"] == invoice.address and uri["sats"] == invoice.due_sats
        assert uri["params"]["lightning"] == offer.bolt11.upper()
        decoded = bolt11.decode(uri["params"]["lightning"].lower())
        assert decoded.amount_msat == invoice.due_sats * 1000
        assert decoded.payment_hash == offer.payment_hash
        assert_accessible(page, "the Lightning QR screen")
        shot(page, "lightning-pos-qr-1280")

        # The moment the screen turns "Paid", by the browser's clock (this host's clock).
        page.evaluate("""() => { const sale = document.querySelector('#sale');
            new MutationObserver(() => { if (sale.dataset.state === 'settled' && !window.paidAt)
                window.paidAt = Date.now() / 1000; })
              .observe(sale, {attributes: true, attributeFilter: ['data-state']}); }""")
        payment_hash = pay_lightning_cli(app, tmp_path, invoice_id)
        returned = time.time()
        assert payment_hash == offer.payment_hash
        page.wait_for_function("document.querySelector('#sale').dataset.state === 'settled'",
                               timeout=5000, polling=20)
        paid_at = page.evaluate("window.paidAt")
        # The CLI's exit takes a while after its settlement: the node's own settle time is
        # the stricter start.
        from lightning.models import DemoLnInvoice

        with gateway.db.read() as s:
            settled_at = s.get(DemoLnInvoice, payment_hash).settled_at.timestamp()
        print(f"POS showed Paid {paid_at - settled_at:.3f} s after the node settled "
              f"({paid_at - returned:+.3f} s from pay-lightning returning)")
        assert paid_at - returned < 1.0, "Paid showed a second after the CLI returned"
        assert paid_at - settled_at < 1.0, "Paid showed a second after the node settled"
        assert page.locator(".sale-status h2:visible").text_content() == "Paid"
        assert page.text_content(".sale-method").strip() == "Lightning"
        assert_accessible(page, "the Lightning paid screen")
        shot(page, "lightning-pos-paid-1280")

        # The receipt and today's totals say how it was paid.
        page.click("[data-receipt]")
        page.wait_for_selector(".receipt")
        assert page.text_content(".r-method dd").strip() == "Lightning"
        shot(page, "lightning-pos-receipt-1280", full_page=True)
        page.goto(f"{server}/pos/today")
        lightning = page.locator('.by-way [data-way="lightning"]').first
        assert "₩5,000" in lightning.text_content() and "1 sale" in lightning.text_content()
        assert "Lightning" in page.text_content(".badge-way")
        assert_fits(page)
        shot(page, "lightning-pos-today-1280", full_page=True)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("locale, lang", [("en-US", "en"), ("ko-KR", "ko")])
def test_the_checkout_page_shows_one_qr_for_both_ways_and_the_lightning_only_qr_on_a_phone(
        browser, server, app, store, locale, lang):
    pytest.importorskip("pyzbar.pyzbar", reason="needs libzbar0")
    from lightning.invoices import current_lightning
    from tests.conftest import auth, make_merchant

    store_id, token = make_merchant(app, name="해운대 커피")
    client = app.test_client()
    res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "5000"},
                      headers=auth(token))
    invoice_id = res.get_json()["id"]
    offer = current_lightning(app.extensions["busanpay"], invoice_id)
    context, page, errors = new_page(browser, PHONE, locale=locale)
    try:
        page.goto(f"{server}/i/{invoice_id}")
        page.wait_for_function("document.querySelector('[data-qr-main]').naturalWidth > 0")
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        assert qr_payload(page, "[data-qr-main]").endswith("&lightning=" + offer.bolt11.upper())
        assert page.locator(".ways").is_visible() and page.locator(".ways-badge").is_visible()
        if has_font_for(lang):
            shot(page, f"lightning-checkout-360-{lang}", full_page=True)
        page.click(".ln-only summary")
        page.wait_for_function("document.querySelector('.qr-ln img').naturalWidth > 0")
        assert qr_payload(page, ".qr-ln img") == "LIGHTNING:" + offer.bolt11.upper()
        assert page.get_attribute(".ln-only .copy", "data-copy") == offer.bolt11
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        assert_accessible(page, f"the Lightning checkout ({lang})")
        if has_font_for(lang):
            shot(page, f"lightning-checkout-360-{lang}-ln-only", full_page=True)
        page.set_viewport_size(LANDSCAPE)  # a laptop: the QR beside the explanations
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        if has_font_for(lang):
            shot(page, f"lightning-checkout-1280-{lang}", full_page=True)
        assert not errors, errors
    finally:
        context.close()
