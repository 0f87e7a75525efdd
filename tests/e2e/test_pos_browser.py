"""The cashier's POS in a real browser (Debian chromium through Playwright) on a real server,
paid through the offline demo chain and the watcher.

Screenshots go to docs/screens/pos-*.png (1280×800 and 800×1280 tablets, a 360×740 phone).
"""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.e2e.conftest import BROWSER_TEST, axe_violations, live_server, screenshot

from accounts.service import create_user
from tests.conftest import make_merchant

LANDSCAPE = {"width": 1280, "height": 800}
PORTRAIT = {"width": 800, "height": 1280}
PHONE = {"width": 360, "height": 740}
SIZES = {"1280": LANDSCAPE, "800": PORTRAIT, "360": PHONE}
PIN = "2468"

pytestmark = BROWSER_TEST


def _demo_chain_missing() -> str | None:
    try:
        import chain.demo_ops  # noqa: F401
        import chain.runtime  # noqa: F401
        import chain.watcher  # noqa: F401
    except ImportError as err:
        return f"the demo chain and watcher (chain.demo_ops / chain.watcher) are missing: {err}"
    return None


# -- the harness (also used by test_backoffice_browser.py) -------------------------------------
@pytest.fixture
def app(app):
    from backoffice import init_backoffice
    from pos import init_pos

    init_pos(app)
    init_backoffice(app)
    return app


@pytest.fixture
def server(app):
    with live_server(app) as url:
        yield url


@pytest.fixture
def store(app):
    """A store (MediumSpeed: one confirmation), its cashier Minji and its owner."""
    store_id, token = make_merchant(app, name="Haeundae Beach Café")
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Minji")
        create_user(s, role="owner", email="owner@cafe.kr", password="correct horse 1",
                    store_id=store_id)
    return store_id


def new_page(browser, viewport, locale="en-US"):
    # bypass_csp: axe-core is injected as an inline script, which the page's CSP forbids.
    context = browser.new_context(viewport=viewport, locale=locale, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def on_console(msg):
        url = msg.location.get("url", "")
        # Failed fetches while a test blocks the network are the point of that test.
        if msg.type == "error" and "ERR_INTERNET_DISCONNECTED" not in msg.text:
            errors.append(f"{msg.text} ({url})")

    page.on("console", on_console)
    return context, page, errors


def cashier_signs_in(page, server, store_id):
    page.goto(f"{server}/pos/login")
    page.fill("#store", store_id)
    page.fill("#pin", PIN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/pos/?$"))
    page.wait_for_selector("[data-charge]")


def has_font_for(lang: str) -> bool:
    """Whether this machine has a font for the language (Debian: fonts-noto-cjk)."""
    try:
        out = subprocess.run(["fc-list", f":lang={lang}", "family"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    return bool(out.strip())


def shot(page, name: str, full_page: bool = False) -> None:
    screenshot(page, name, full_page=full_page)



def assert_accessible(page, what: str) -> None:
    bad = axe_violations(page)
    assert not bad, f"axe on {what}: " + json.dumps(bad, indent=1)


def assert_fits(page) -> None:
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 &&
                     true)
        .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), \
        f"the page scrolls sideways: {wide}"


def assert_touch_targets(page, selector: str, minimum: int = 48) -> None:
    for element in page.locator(selector).all():
        if element.is_visible():
            box = element.bounding_box()
            assert box["height"] >= minimum and box["width"] >= minimum, \
                f"{selector} is {box['width']:.0f}×{box['height']:.0f} px"


def type_amount(page, digits: str) -> None:
    for digit in digits:
        page.click(f'.keys [data-key="{digit}"]')


def charge(page, digits: str) -> str:
    type_amount(page, digits)
    page.click("[data-charge]")
    page.wait_for_selector("#sale:not([hidden])")
    page.wait_for_function("document.querySelector('[data-qr]').naturalWidth > 0")
    saved = page.evaluate("JSON.parse(Object.entries(localStorage).find(([k]) => "
                          "k.startsWith('busanpay.pos.sale.'))[1])")
    return saved["id"]


def sale_state(page) -> str:
    return page.get_attribute("#sale", "data-state")


def wait_for_state(page, state: str, within: float) -> float:
    """Seconds until the sale screen shows `state`; fails after `within` seconds."""
    started = time.monotonic()
    page.wait_for_function(f"document.querySelector('#sale').dataset.state === '{state}'",
                           timeout=within * 1000)
    return time.monotonic() - started


# -- the tests --------------------------------------------------------------------------------
def test_a_cashier_charges_15000_won_sees_the_qr_and_then_paid_within_2_seconds(
        browser, server, app, store):
    missing = _demo_chain_missing()
    if missing:
        pytest.skip(missing)
    from chain import demo_ops
    from chain.runtime import demo_chain_for, watcher_for

    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        type_amount(page, "15000")
        assert page.text_content("#amount") == "₩15,000"
        page.check('input[name="tip"][value="10"]', force=True)
        assert page.text_content("[data-total]") == "₩16,500"
        page.check('input[name="tip"][value="0"]', force=True)
        page.fill("#memo", "2 × americano")
        assert page.text_content("[data-charge]").strip() == "Charge ₩15,000"
        assert_fits(page)
        assert_touch_targets(page, ".key, .charge, label.tip span, .pos-nav a, .signout button")
        assert_accessible(page, "the keypad")
        shot(page, "pos-keypad-1280")

        invoice_id = charge(page, "")
        assert page.text_content(".sale-won") == "₩15,000"
        assert page.text_content('[data-bind="dueBtc"]') == "0.0001"
        assert re.match(r"\d+:\d\d", page.text_content("[data-countdown]"))
        qr = page.locator("[data-qr]").bounding_box()
        assert qr["width"] >= 500, "the QR should fill the tablet's height"
        assert_accessible(page, "the QR screen")
        shot(page, "pos-qr-1280")

        # A tourist pays from the demo wallet; the watcher sees it in the mempool.
        demo_ops.pay(gateway, invoice_id)
        assert watcher_for(gateway).run_once(force=True)["ok"]
        assert gateway.invoices.get(invoice_id).status == "Processing"
        assert wait_for_state(page, "processing", within=2.0) < 2.0
        assert "Received — waiting for confirmation" in page.text_content(".sale-status")
        assert page.get_attribute("#pos", "data-last-sound") == "received"
        shot(page, "pos-received-1280")

        # A block confirms it (MediumSpeed needs one confirmation): paid.
        demo_chain_for(gateway).mine(1)
        assert watcher_for(gateway).run_once(force=True)["ok"]
        assert gateway.invoices.get(invoice_id).status == "Settled"
        assert wait_for_state(page, "settled", within=2.0) < 2.0
        assert page.locator(".sale-status h2:visible").text_content() == "Paid"
        assert page.get_attribute("#pos", "data-last-sound") == "paid"
        assert_accessible(page, "the paid screen")
        shot(page, "pos-paid-1280")

        # The receipt, printable on thermal paper, with a QR to the public page.
        page.click("[data-receipt]")
        page.wait_for_selector(".receipt")
        page.wait_for_function("document.querySelector('.r-qr img').naturalWidth > 0")
        assert "₩15,000" in page.text_content(".r-total")
        assert page.text_content(".r-status").strip().startswith("Paid")
        assert_accessible(page, "the receipt")
        shot(page, "pos-receipt-1280", full_page=True)
        page.emulate_media(media="print")
        assert page.locator(".topbar").is_hidden() and page.locator(".receipt-tools").is_hidden()
        page.emulate_media(media="screen")
        page.goto(f"{server}/pos/receipts/{invoice_id}?paper=58")
        width = page.locator(".receipt").bounding_box()["width"]
        assert 195 <= width <= 215, f"a 58 mm receipt preview is {width} px wide"  # 54 mm
        shot(page, "pos-receipt-58mm", full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_a_partial_payment_shows_the_rest_and_a_new_qr_and_the_top_up_completes_it(
        browser, server, app, store):
    missing = _demo_chain_missing()
    if missing:
        pytest.skip(missing)
    from chain import demo_ops
    from chain.runtime import watcher_for

    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, PORTRAIT)
    try:
        cashier_signs_in(page, server, store)
        invoice_id = charge(page, "15000")
        first_qr = page.get_attribute("[data-qr]", "src")
        shot(page, "pos-qr-800")
        demo_ops.pay(gateway, invoice_id, 4000)  # 4,000 of the 10,000 sats due
        assert watcher_for(gateway).run_once(force=True)["ok"]
        wait_for_state(page, "partial", within=2.0)
        assert page.text_content('[data-bind="remainingText"]') == "₩9,000"
        assert page.text_content('[data-bind="remainingBtc"]') == "0.00006"
        assert page.text_content('[data-bind="remainingSatsText"]') == "6,000 sats"
        page.wait_for_function("document.querySelector('[data-qr]').naturalWidth > 0 && "
                               "document.querySelector('[data-qr]').src.endsWith('/qr/6000.svg')")
        assert page.get_attribute("[data-qr]", "src") != first_qr
        assert page.get_attribute("#pos", "data-last-sound") == "partial"
        assert_accessible(page, "the partial payment screen")
        shot(page, "pos-partial-800")
        demo_ops.pay(gateway, invoice_id)  # the rest
        assert watcher_for(gateway).run_once(force=True)["ok"]
        wait_for_state(page, "processing", within=2.0)
        assert not errors, errors
    finally:
        context.close()


def test_a_reload_returns_to_the_sale_in_progress(browser, server, app, store):
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        invoice_id = charge(page, "7500")
        page.reload()
        page.wait_for_selector("#sale:not([hidden])")
        page.wait_for_function("document.querySelector('[data-qr]').naturalWidth > 0")
        assert page.text_content(".sale-won") == "₩7,500"
        assert invoice_id in page.get_attribute("[data-qr]", "src")
        # Cancel takes two taps; then a new sale starts from an empty keypad.
        page.click("[data-cancel]")
        assert sale_state(page) == "new"
        page.click("[data-cancel]")
        wait_for_state(page, "invalid", within=3.0)
        assert gateway_status(app, invoice_id) == ("Invalid", "Marked")
        page.click("[data-new-sale]")
        assert page.locator("#sale").is_hidden()
        assert page.text_content("#amount") == "₩0"
        page.reload()
        assert page.locator("#sale").is_hidden()
        assert not errors, errors
    finally:
        context.close()


def gateway_status(app, invoice_id):
    invoice = app.extensions["busanpay"].invoices.get(invoice_id)
    return invoice.status, invoice.additional_status


def test_the_offline_banner_shows_while_the_server_is_unreachable_and_goes_away_after(
        browser, server, app, store):
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        invoice_id = charge(page, "12000")
        banner = page.locator("[data-offline]")
        assert banner.is_hidden()
        page.route("**/status.json", lambda route: route.abort("internetdisconnected"))
        banner.wait_for(state="visible", timeout=3000)
        assert "Connection lost" in banner.text_content()
        assert_accessible(page, "the QR screen while offline")
        shot(page, "pos-offline-1280")
        page.unroute("**/status.json")
        banner.wait_for(state="hidden", timeout=3000)
        assert invoice_id in page.get_attribute("[data-qr]", "src")  # the sale stayed on screen
        # A blip that outlives a reload: the sale comes back from the tablet's copy.
        page.route("**/pos/invoices/*.json", lambda route: route.abort("internetdisconnected"))
        page.reload()
        page.wait_for_selector("#sale:not([hidden])")
        assert page.text_content(".sale-won") == "₩12,000"
        banner.wait_for(state="visible", timeout=3000)
        page.unroute("**/pos/invoices/*.json")
    finally:
        context.close()


@pytest.mark.parametrize("size", ["800", "360"])
def test_the_register_fits_portrait_tablets_and_phones(browser, server, app, store, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        cashier_signs_in(page, server, store)
        type_amount(page, "15000")
        assert_fits(page)
        assert_touch_targets(page, ".key, .charge, label.tip span")
        page.evaluate("window.scrollTo(0, 0)")
        charge_box = page.locator("[data-charge]").bounding_box()
        assert charge_box["y"] + charge_box["height"] <= SIZES[size]["height"] + 1, \
            "the amount and the Charge button must be on screen together, without scrolling"
        assert_accessible(page, f"the keypad at {size} px")
        shot(page, f"pos-keypad-{size}")
        charge(page, "")
        qr = page.locator("[data-qr]").bounding_box()
        assert qr["x"] >= 0 and qr["x"] + qr["width"] <= SIZES[size]["width"]
        assert qr["width"] >= min(300, SIZES[size]["width"] - 40)
        assert_accessible(page, f"the QR screen at {size} px")
        shot(page, f"pos-qr-{size}")
        assert not errors, errors
    finally:
        context.close()


def test_todays_sales_and_the_invoice_list_are_accessible_at_every_size(browser, server, app, store):
    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        paid = charge(page, "15000")
        gateway.invoices.mark_status(store, paid, "Settled")
        page.click("[data-new-sale]") if page.locator("[data-new-sale]").is_visible() else None
        page.goto(f"{server}/pos")
        page.wait_for_selector("[data-charge]")
        wait_for_state(page, "settled", within=3.0)
        page.click("[data-new-sale]")
        page.check('input[name="tip"][value="10"]', force=True)
        charge(page, "8000")
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            page.goto(f"{server}/pos/today")
            assert page.locator('[data-total="paid"]').first.text_content() == "₩15,000"
            assert_fits(page)
            assert_accessible(page, f"today's sales at {size} px")
            shot(page, f"pos-today-{size}", full_page=True)
            page.goto(f"{server}/pos/invoices")
            assert_accessible(page, f"the invoice list at {size} px")
            shot(page, f"pos-invoices-{size}", full_page=True)
            page.goto(f"{server}/pos/receipts/{paid}")
            assert_accessible(page, f"the receipt at {size} px")
            shot(page, f"pos-receipt-{size}", full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_the_pos_in_korean(browser, server, app, store):
    context, page, errors = new_page(browser, LANDSCAPE, locale="ko-KR")
    try:
        cashier_signs_in(page, server, store)
        assert page.get_attribute("html", "lang") == "ko"
        type_amount(page, "15000")
        assert page.text_content("#amount") == "₩15,000"
        assert page.text_content("[data-charge]").strip() == "₩15,000 결제"
        # Without a Hangul font the picture would show empty boxes: no screenshot then.
        korean_font = has_font_for("ko")
        if korean_font:
            shot(page, "pos-keypad-1280-ko")
        charge(page, "")
        if korean_font:
            shot(page, "pos-qr-1280-ko")
        assert_accessible(page, "the Korean QR screen")
        assert not errors, errors
    finally:
        context.close()


def test_the_pos_is_an_installable_app_with_a_shell_only_service_worker(browser, server, app, store):
    context, page, errors = new_page(browser, LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        manifest = page.evaluate("fetch(document.querySelector('link[rel=manifest]').href)"
                                 ".then(r => r.json())")
        assert manifest["display"] == "standalone" and len(manifest["icons"]) >= 2
        page.wait_for_function("navigator.serviceWorker.controller !== null || "
                               "navigator.serviceWorker.ready.then(() => true)", timeout=5000)
        caches = page.evaluate("""async () => {
            await navigator.serviceWorker.ready;
            const names = await caches.keys();
            const urls = [];
            for (const name of names) {
                for (const req of await (await caches.open(name)).keys()) urls.push(req.url);
            }
            return urls;
        }""")
        assert any(u.endswith("/static/pos/pos.js") for u in caches)
        charge(page, "5000")
        for _ in range(3):
            page.wait_for_timeout(1100)
        cached = page.evaluate("""async () => {
            const urls = [];
            for (const name of await caches.keys())
                for (const req of await (await caches.open(name)).keys()) urls.push(req.url);
            return urls;
        }""")
        assert not [u for u in cached if "status.json" in u or "/pos/invoices" in u or "/i/" in u]
        assert not errors, errors
    finally:
        context.close()


HEADER_SIZES = {"320": {"width": 320, "height": 568}, "360": PHONE,
                "568x320": {"width": 568, "height": 320}, "740x360": {"width": 740, "height": 360},
                "800": PORTRAIT, "1280x800": LANDSCAPE}


def assert_in_view(page, selector: str, viewport: dict) -> None:
    for element in page.locator(selector).all():
        box = element.bounding_box()
        assert box and element.is_visible(), f"{selector} is hidden"
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1, \
            f"{selector} is off-screen sideways: {box}"
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], \
            f"{selector} is below the screen: {box}"
        assert box["height"] >= 44 and box["width"] >= 44, f"{selector} is too small: {box}"


@pytest.mark.parametrize("size", list(HEADER_SIZES))
def test_the_pos_header_keeps_sign_out_and_the_languages_in_reach_from_320_to_1280_px(
        browser, server, app, store, size):
    viewport = HEADER_SIZES[size]
    context, page, errors = new_page(browser, viewport)
    try:
        page.goto(f"{server}/login")  # the owner: four sections in the header
        page.fill("#email", "owner@cafe.kr")
        page.fill("#password", "correct horse 1")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/merchant/?$"))
        for lang in ("ko", "en", "zh", "ja"):
            page.goto(f"{server}/pos?lang={lang}")
            page.wait_for_selector("[data-charge]")
            assert_fits(page)
            assert_in_view(page, ".signout button", viewport)
            assert_in_view(page, ".pos-nav a", viewport)
            menu = page.locator(".lang-menu")
            if menu.is_visible():
                assert_in_view(page, ".lang-menu summary", viewport)
                page.click(".lang-menu summary")
                assert_in_view(page, ".lang-menu a", viewport)
                assert_accessible(page, f"the open language menu in {lang} at {size}")
                page.click(".lang-menu summary")
            else:
                assert_in_view(page, ".langs a", viewport)
            assert_accessible(page, f"the POS header in {lang} at {size}")
            if lang == "en" or (lang == "ja" and size in ("320", "360")):
                shot(page, f"pos-header-{size}" + ("" if lang == "en" else f"-{lang}"))
        # the language control and Sign out work at this size
        if page.locator(".lang-menu").is_visible():
            page.click(".lang-menu summary")
            page.click('.lang-menu a[hreflang="ko"]')
        else:
            page.click('.langs a[hreflang="ko"]')
        page.wait_for_function("document.documentElement.lang === 'ko'")
        page.click(".signout button")
        page.wait_for_url(re.compile(r".*/login.*"))
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "ko", "zh", "ja"])
def test_after_5000_sats_of_a_20000_won_sale_the_rest_is_the_sats_due_and_paying_it_settles(
        browser, server, app, store, lang):
    missing = _demo_chain_missing()
    if missing:
        pytest.skip(missing)
    from chain import demo_ops
    from chain.runtime import demo_chain_for, watcher_for

    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, PHONE if lang != "en" else LANDSCAPE)
    try:
        cashier_signs_in(page, server, store)
        page.goto(f"{server}/pos?lang={lang}")
        page.wait_for_selector("[data-charge]")
        invoice_id = charge(page, "20000")
        assert gateway.invoices.get(invoice_id).due_sats == 13_334  # ₩20,000 at ₩150M/BTC, up
        demo_ops.pay(gateway, invoice_id, 5_000)
        assert watcher_for(gateway).run_once(force=True)["ok"]
        wait_for_state(page, "partial", within=3.0)
        # the rest in sats is what is asked; its won value is the price less what 5,000 sats
        # are credited at the locked rate (₩7,500, rounded down as the ledger does)
        assert page.text_content('[data-bind="remainingBtc"]') == "0.00008334"
        assert page.text_content('[data-bind="remainingSatsText"]').startswith("8,334")
        assert page.text_content('[data-bind="remainingText"]') == "₩12,500"
        page.wait_for_function("document.querySelector('[data-qr]').src.endsWith('/qr/8334.svg')")
        status = page.request.get(f"{server}/i/{invoice_id}/status.json").json()
        assert status["remainingSats"] == 8_334  # the tourist's page asks for the same
        assert_fits(page)
        assert_accessible(page, f"the rest of a ₩20,000 sale in {lang}")
        shot(page, "pos-remainder-1280" if lang == "en" else f"pos-remainder-360-{lang}")
        demo_ops.pay(gateway, invoice_id, 8_334)  # exactly what was asked
        assert watcher_for(gateway).run_once(force=True)["ok"]
        invoice = gateway.invoices.get(invoice_id)
        assert (invoice.status, invoice.additional_status) == ("Processing", "None")
        assert invoice.paid_sats == invoice.due_sats
        demo_chain_for(gateway).mine(1)
        assert watcher_for(gateway).run_once(force=True)["ok"]
        wait_for_state(page, "settled", within=3.0)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("lang, words", [("en", "Paid (accepted without confirmation)"),
                                         ("ko", "결제 완료 (확인 전 승인)"),
                                         ("zh", "已付款（未经确认即接受）"),
                                         ("ja", "支払い完了（承認前に受け付け）")])
def test_a_zero_confirmation_payment_is_called_paid_without_confirmation_not_confirmed(
        browser, server, app, lang, words):
    missing = _demo_chain_missing()
    if missing:
        pytest.skip(missing)
    from chain import demo_ops
    from chain.runtime import watcher_for

    gateway = app.extensions["busanpay"]
    store_id, _token = make_merchant(app, name="Quick Kiosk", speed_policy="HighSpeed",
                                     zero_conf_limit_krw=50_000)
    with gateway.db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Dana")
    context, page, errors = new_page(browser, PHONE if lang != "en" else LANDSCAPE)
    try:
        cashier_signs_in(page, server, store_id)
        page.goto(f"{server}/pos?lang={lang}")
        page.wait_for_selector("[data-charge]")
        invoice_id = charge(page, "9000")
        demo_ops.pay(gateway, invoice_id)
        assert watcher_for(gateway).run_once(force=True)["ok"]
        assert gateway.invoices.get(invoice_id).status == "Settled"
        wait_for_state(page, "settled", within=3.0)
        assert page.locator(".sale-status h2:visible").text_content() == words
        assert_accessible(page, f"the 0-conf paid screen in {lang}")
        shot(page, "pos-paid-zero-conf-1280" if lang == "en" else f"pos-paid-zero-conf-360-{lang}")
        page.goto(f"{server}/pos/receipts/{invoice_id}")
        assert page.text_content(".r-status").strip().startswith(words)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("size", ["1280", "800", "360"])
def test_the_first_tap_on_cancel_right_after_the_qr_appears_counts(browser, server, app, store, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        cashier_signs_in(page, server, store)
        type_amount(page, "6000")
        # the QR image answers slowly: the screen must not move under the cashier's finger
        page.route("**/qr.svg", lambda route: (time.sleep(0.8), route.continue_()))
        page.click("[data-charge]")
        page.wait_for_selector("#sale:not([hidden])")
        before = page.locator("[data-cancel]").bounding_box()
        # a real tap at once, where the button is now (no waiting for it to be "stable")
        page.mouse.click(before["x"] + before["width"] / 2, before["y"] + before["height"] / 2)
        assert page.inner_text("[data-cancel]").strip() == "Tap again to cancel this sale"
        page.wait_for_function("document.querySelector('[data-qr]').naturalWidth > 0")
        after = page.locator("[data-cancel]").bounding_box()
        assert {k: round(v) for k, v in after.items()} == {k: round(v) for k, v in before.items()}, \
            "the Cancel button moved or changed size under the finger"
        page.mouse.click(after["x"] + after["width"] / 2, after["y"] + after["height"] / 2)
        wait_for_state(page, "invalid", within=3.0)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["ko", "zh", "ja"])
def test_every_pos_page_in_korean_chinese_and_japanese_fits_and_passes_axe(
        browser, server, app, store, lang):
    gateway = app.extensions["busanpay"]
    context, page, errors = new_page(browser, PHONE)
    try:
        cashier_signs_in(page, server, store)
        page.goto(f"{server}/pos?lang={lang}")
        page.wait_for_selector("[data-charge]")
        sold = charge(page, "15000")
        gateway.invoices.mark_status(store, sold, "Settled")
        wait_for_state(page, "settled", within=3.0)
        for size in ("360", "800", "1280"):
            page.set_viewport_size(SIZES[size])
            for name, path in (("keypad", "/pos"), ("today", "/pos/today"),
                               ("invoices", "/pos/invoices"), ("receipt", f"/pos/receipts/{sold}")):
                page.goto(f"{server}{path}")
                if name == "keypad":
                    page.wait_for_selector("[data-charge]")
                    if page.locator("[data-new-sale]").is_visible():
                        page.click("[data-new-sale]")
                assert page.get_attribute("html", "lang") == {"zh": "zh-Hans"}.get(lang, lang)
                assert_fits(page)
                assert_accessible(page, f"{path} in {lang} at {size} px")
                if size == "360" or name == "keypad":
                    shot(page, f"pos-{name}-{size}-{lang}", full_page=name != "keypad")
        assert not errors, errors
    finally:
        context.close()
