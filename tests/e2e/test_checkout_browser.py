"""The checkout page in a real browser (Debian chromium through Playwright) on a real server.

Screenshots go to docs/screens/checkout-*.png for people to look at.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import BROWSER_TEST, live_server, screenshot

from tests.conftest import auth
from tests.integration.test_checkout_page import create_invoice, set_state

pytestmark = BROWSER_TEST

PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def server(app):
    with live_server(app) as url:
        yield url


def open_page(browser, url, viewport, locale="en-US", bypass_csp=True):
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (no
    # 'unsafe-eval'): the tests bypass it, except the one that checks the page obeys it.
    context = browser.new_context(viewport=viewport, locale=locale, bypass_csp=bypass_csp,
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    def on_console(msg):
        # Any console error is a defect (the favicon too: /favicon.ico is served).
        if msg.type == "error":
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return context, page, errors


def shot(page, name):
    screenshot(page, f"checkout-{name}", full_page=True)


def has_font_for(lang: str) -> bool:
    """Whether this machine has a font for the language (Debian: fonts-noto-cjk)."""
    try:
        out = subprocess.run(["fc-list", f":lang={lang}", "family"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    return bool(out.strip())


def assert_fits(page, viewport):
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), \
        "the page scrolls sideways"
    qr = page.locator(".qr img")
    assert qr.is_visible()
    assert page.evaluate("document.querySelector('.qr img').naturalWidth > 0"), "QR not loaded"
    box = qr.bounding_box()
    assert box["width"] <= viewport["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    return box


@pytest.mark.parametrize("viewport, name", [(PHONE, "360"), (DESKTOP, "1280")])
def test_the_page_fits_the_screen_and_turns_paid_without_a_reload(browser, server, client,
                                                                   merchant, viewport, name):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", viewport)
    try:
        box = assert_fits(page, viewport)
        if viewport is PHONE:
            assert box["width"] >= 300, "the QR should fill a phone's width"
        for button in page.locator("button.copy").all():
            assert button.bounding_box()["height"] >= 44
        wallet = page.locator("a.button-primary")
        assert wallet.get_attribute("href").startswith("bitcoin:bcrt1")
        assert wallet.bounding_box()["height"] >= 44
        page.wait_for_function(
            "/^1[45]:[0-5][0-9]$/.test(document.querySelector('[data-countdown]').textContent)")
        shot(page, f"new-{name}")

        # Copy the address: the clipboard gets it and the button says so.
        address_copy = page.locator('.field:has(.address) button.copy')
        address_copy.click()
        page.wait_for_function(
            "document.querySelector('.field:has(.address) button.copy').textContent === 'Copied'",
            timeout=2000)
        address = address_copy.get_attribute("data-copy")
        assert page.evaluate("navigator.clipboard.readText()") == address

        page.evaluate("window.__stillTheSamePage = true")
        marked = client.post(f"/api/v1/invoices/{invoice_id}/status", json={"status": "Settled"},
                             headers=auth(token))
        assert marked.status_code == 200
        page.wait_for_function(
            "document.getElementById('checkout').dataset.status === 'Settled'", timeout=3000)
        assert page.evaluate("window.__stillTheSamePage === true"), "the page reloaded"
        assert "Paid — thank you!" in page.locator("#status").inner_text()
        assert page.locator(".pending").count() == 0
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        shot(page, f"settled-{name}")
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("locale, lang, text", [
    ("ko-KR", "ko", "결제를 기다리고 있습니다"),
    ("ja-JP", "ja", "お支払いをお待ちしています"),
    ("zh-CN", "zh-Hans", "等待您付款"),
])
def test_the_page_speaks_the_browser_language(browser, server, client, merchant, locale, lang,
                                              text):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE, locale=locale)
    try:
        assert page.evaluate("document.documentElement.lang") == lang
        assert text in page.locator("#status").inner_text()
        assert_fits(page, PHONE)
        if has_font_for(lang.split("-")[0]):  # else the screenshot would only show boxes
            shot(page, f"new-360-{lang.split('-')[0]}")
        assert not errors, errors
    finally:
        context.close()


def test_the_language_switcher_changes_and_keeps_the_language(browser, server, client,
                                                               merchant):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE)
    try:
        page.locator('.langs a[hreflang="ja"]').click()
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.lang") == "ja"
        page.goto(f"{server}/i/{invoice_id}")  # no ?lang: the cookie remembers
        assert page.evaluate("document.documentElement.lang") == "ja"
        assert not errors, errors
    finally:
        context.close()


def test_a_partial_payment_updates_the_remaining_amount_in_place(browser, server, client,
                                                                  merchant, gateway):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE)
    try:
        page.evaluate("window.__stillTheSamePage = true")
        set_state(gateway, invoice_id, "New", "PaidPartial", paid=[4_000])
        page.wait_for_function(
            "document.getElementById('checkout').dataset.additional === 'PaidPartial'",
            timeout=3000)
        assert page.locator('[data-bind="remainingBtc"]').first.inner_text() == "0.00006"
        page.wait_for_function("document.querySelector('.qr img').naturalWidth > 0")
        assert_fits(page, PHONE)
        shot(page, "partial-360")

        # A second small payment: only the amounts change, in place.
        with gateway.db.write() as session:
            from payments.models import Invoice, Payment

            invoice = session.get(Invoice, invoice_id)
            session.add(Payment(invoice_id=invoice_id, txid="ab" * 32, vout=0,
                                address=invoice.address, value_sats=1_000,
                                seen_at=gateway.clock()))
            invoice.paid_sats, invoice.version = 5_000, invoice.version + 1
            session.add(invoice)
        page.wait_for_function(
            "document.querySelector('[data-bind=\"remainingBtc\"]').textContent === '0.00005'",
            timeout=3000)
        assert "amount=0.00005" in page.locator("a.button-primary").get_attribute("href")
        assert page.locator(".qr img").get_attribute("src").endswith("/qr/5000.svg")
        assert page.evaluate("window.__stillTheSamePage === true")
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("status, additional, paid, late, name", [
    ("Processing", "None", [10_000], False, "processing"),
    ("Expired", "PaidLate", [10_000], True, "expired-paidlate"),
    ("Expired", "None", [], False, "expired"),
    ("Invalid", "None", [10_000], False, "invalid"),
])
def test_the_other_states_fit_a_phone(browser, server, client, merchant, gateway, status,
                                      additional, paid, late, name):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    set_state(gateway, invoice_id, status, additional, paid=paid, late=late)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        shot(page, f"{name}-360")
        assert not errors, errors
    finally:
        context.close()


def test_the_page_runs_under_its_content_security_policy(browser, server, client, merchant):
    store_id, token = merchant
    invoice_id = create_invoice(client, store_id, token)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE,
                                      bypass_csp=False)
    try:
        page.wait_for_timeout(3500)  # countdown ticks and at least two polls (200, then 304)
        polls = page.evaluate("performance.getEntriesByType('resource')"
                              ".filter(e => e.name.endsWith('/status.json')).length")
        assert polls >= 2
        # (the test clock stands still, so the countdown re-syncs to 15:00 on each answer)
        assert page.evaluate("/^1[45]:[0-5][0-9]$/.test("
                             "document.querySelector('[data-countdown]').textContent)")
        assert page.evaluate("document.querySelector('[data-bar]').style.width") != ""
        assert page.locator(".qr img").is_visible()
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
        assert not errors, errors
    finally:
        context.close()


def test_the_not_found_page_fits_a_phone(browser, server):
    context, page, errors = open_page(browser, f"{server}/i/NoSuchInvoice", PHONE)
    try:
        assert "Invoice not found" in page.locator("h1").inner_text()
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        shot(page, "not-found-360")
    finally:
        context.close()
