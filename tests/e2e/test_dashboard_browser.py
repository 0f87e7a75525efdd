"""The city dashboard in a real browser (Debian chromium through Playwright) on a real server.

A demo city is seeded (`demo_data.seed`), then: the city admin sees a new invoice in the
day's totals and downloads CSV; an auditor finds no control that changes anything and a
direct POST is refused; the dashboard works from the keyboard alone with a visible focus;
axe-core finds no serious or critical violation. Screenshots go to docs/screens/city-*.png.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import BROWSER_TEST, axe_violations, live_server, screenshot

pytestmark = BROWSER_TEST

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 800, "height": 1280}
PHONE = {"width": 360, "height": 740}


@pytest.fixture
def demo(app):
    import demo_data
    from tests.integration.test_dashboard import with_dashboard

    with_dashboard(app)
    return demo_data.seed(app.extensions["busanpay"], invoices=1_500, rng_seed=5)


@pytest.fixture
def server(app, demo):
    with live_server(app) as url:
        yield url


def new_page(browser, viewport=DESKTOP, locale="en-US", bypass_csp=False):
    context = browser.new_context(viewport=viewport, locale=locale, bypass_csp=bypass_csp,
                                  accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def on_console(msg):
        if msg.type == "error":
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    return context, page, errors


def sign_in(page, server, who: dict) -> None:
    page.goto(f"{server}/login?next=/city")
    page.fill("#email", who["email"])
    page.fill("#password", who["password"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/city/?(\?.*)?$"))


def kpi(page, name: str) -> str:
    return page.locator(f'[data-kpi="{name}"]').first.inner_text().strip()


def won_value(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text) or 0)


def shot(page, name: str, full_page: bool = True) -> None:
    screenshot(page, f"city-{name}", full_page=full_page)


def assert_no_sideways_scroll(page, what: str) -> None:
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1"), \
        f"{what} scrolls sideways"


def test_the_city_admin_sees_a_new_invoice_in_the_days_totals_and_downloads_csv(
        browser, server, demo, client, tmp_path):
    context, page, errors = new_page(browser)
    try:
        sign_in(page, server, demo["cityAdmin"])
        page.goto(f"{server}/city?preset=today")
        before_invoices = won_value(kpi(page, "invoices"))
        before_volume = won_value(kpi(page, "won-volume"))
        store = demo["stores"][0]
        headers = {"Authorization": f"token {store['apiKey']}"}
        created = client.post(f"/api/v1/stores/{store['storeId']}/invoices", headers=headers,
                              json={"amount": "15000", "currency": "KRW"})
        assert created.status_code == 200, created.get_data(as_text=True)
        invoice_id = created.get_json()["id"]
        page.reload()
        assert won_value(kpi(page, "invoices")) == before_invoices + 1
        assert won_value(kpi(page, "won-volume")) == before_volume, "not paid yet"
        marked = client.post(f"/api/v1/stores/{store['storeId']}/invoices/{invoice_id}/status",
                             headers=headers, json={"status": "Settled"})
        assert marked.status_code == 200, marked.get_data(as_text=True)
        page.reload()
        # a merchant's mark is no money: the city's volume follows the chain (issue 9)
        assert won_value(kpi(page, "won-volume")) == before_volume, "marked, never paid"
        shot(page, "today-1280x800")

        with page.expect_download() as info:
            page.locator("#days-h").locator("xpath=..").get_by_role("link", name=re.compile("CSV")).click()
        download = info.value
        assert download.suggested_filename.startswith("busanpay-city-days-")
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        raw = target.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        lines = raw.decode("utf-8-sig").split("\r\n")
        assert lines[0].startswith("day,invoices,settled_invoices,settled_krw,")
        today = lines[1].split(",")
        assert int(today[1]) == before_invoices + 1 and int(today[3]) == before_volume

        # the drill-down of that store lists the invoice
        page.goto(f"{server}/city/merchants/{store['storeId']}?preset=today")
        assert page.get_by_role("cell", name=invoice_id).is_visible()
        assert not errors, errors
    finally:
        context.close()


def test_an_auditor_finds_nothing_to_change_and_a_direct_post_is_refused(browser, server, demo):
    context, page, errors = new_page(browser)
    try:
        sign_in(page, server, demo["cityAuditor"])
        assert "read-only" in page.locator(".role-chip").inner_text()
        page.goto(f"{server}/city/exceptions")
        assert page.locator(".exc").count() > 0, "the seeded city has exceptions"
        assert page.locator("form.review-form").count() == 0
        assert page.get_by_role("button", name="Record review").count() == 0
        page.goto(f"{server}/city/exposure")
        assert page.locator('input[name="cap_krw"]').count() == 0
        assert page.get_by_text("Only a city admin can change the cap.").is_visible()
        # every form left on the pages is a GET filter or the sign-out button
        for path in ("/city", "/city/merchants", "/city/exceptions", "/city/exposure",
                     "/city/settlement", "/city/audit"):
            page.goto(f"{server}{path}")
            posts = page.evaluate("[...document.forms].filter(f => f.method === 'post')"
                                  ".map(f => new URL(f.action).pathname)")
            assert posts == ["/logout"], (path, posts)
        # a hand-made POST with a valid CSRF token still gets 403
        page.goto(f"{server}/login")
        token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
        invoice = page.request.get(f"{server}/city/exceptions?format=csv").text()
        invoice_id = invoice.split("\r\n")[1].split(",")[0]
        for url, form in ((f"/city/exceptions/{invoice_id}/review", {"outcome": "refunded"}),
                          ("/city/exposure/cap", {"cap_krw": "1"})):
            res = page.request.post(f"{server}{url}", form=dict(form, csrf_token=token))
            assert res.status == 403, (url, res.status)
        res = page.request.delete(f"{server}/city/merchants", headers={"X-CSRFToken": token})
        assert res.status == 403
        assert not errors, errors
    finally:
        context.close()


def test_a_venue_that_stops_answering_leads_the_exceptions_queue_until_it_answers_again(
        browser, server, demo, app):
    from settlement.conversion import UpbitClient
    from settlement.venues import check_balance
    from tests.fakes.exchange_private import ExchangeFake

    gateway = app.extensions["busanpay"]
    with ExchangeFake(access_key="p-a", secret_key="p-s") as partner:
        gateway.venues = [UpbitClient(partner.url, "p-a", "p-s", name="partner")]
        partner.down = True
        check_balance(gateway, gateway.venues[0])
        context, page, errors = new_page(browser)
        try:
            sign_in(page, server, demo["cityAdmin"])
            page.goto(f"{server}/city/exceptions")
            queue = page.locator("ol.exc-queue > li")
            assert queue.count() > 1, "the seeded city's invoice exceptions follow"
            assert queue.first.get_attribute("data-venue") == "partner"
            assert "does not answer" in queue.first.inner_text()
            assert queue.nth(1).get_attribute("data-venue") is None
            screenshot(page, "city-exceptions-venue-alert")
            queue.first.get_by_role("link", name="Open the conversion venues").click()
            page.wait_for_url(re.compile(r".*/city/venues$"))
            assert page.locator('tr[data-venue="partner"]').get_by_text("Down").is_visible()
            partner.down = False
            check_balance(gateway, gateway.venues[0])
            page.goto(f"{server}/city/exceptions")
            assert page.locator("ol.exc-queue > li[data-venue]").count() == 0
            assert not errors, errors
        finally:
            context.close()


def test_the_dashboard_works_from_the_keyboard_with_a_visible_focus(browser, server, demo):
    context, page, errors = new_page(browser)
    try:
        sign_in(page, server, demo["cityAdmin"])
        page.goto(f"{server}/city")
        page.keyboard.press("Tab")
        seen = []
        for _ in range(60):
            info = page.evaluate("""() => {
                const el = document.activeElement;
                const cs = getComputedStyle(el);
                return {tag: el.tagName, text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 40),
                        id: el.id, cls: el.className,
                        outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2,
                        visible: el.getBoundingClientRect().width > 0};
            }""")
            seen.append(info)
            assert info["outline"], f"no visible focus on {info}"
            page.keyboard.press("Tab")
        texts = [s["text"] for s in seen]
        assert seen[0]["cls"] == "skip-link" or "Skip to content" in texts
        for wanted in ("Overview", "Merchants", "Exceptions", "Audit log", "Last 7 days", "Show"):
            assert wanted in texts, f"Tab never reached {wanted!r}: {texts}"
        assert any(s["id"] == "period-from" for s in seen) and any(s["id"] == "period-to" for s in seen)
        assert any(s["text"].startswith("CSV") for s in seen)
        # the skip link jumps to the content
        page.goto(f"{server}/city")
        page.keyboard.press("Tab")
        for _ in range(8):
            if page.evaluate("document.activeElement.className") == "skip-link":
                break
            page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        # Enter on a nav link follows it; a table header sorts
        page.goto(f"{server}/city")
        page.get_by_role("link", name="Merchants", exact=True).focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/city/merchants.*"))
        page.locator("table.sortable thead th a").first.focus()  # the "Merchant" heading
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*sort=name.*"))
        assert page.locator('th[aria-sort]').count() == 1
        # a date typed in and Enter applies the period
        page.goto(f"{server}/city")
        page.locator("#period-from").focus()
        page.keyboard.type("11012026")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*from=2026-11-01.*"))
        assert not errors, errors
    finally:
        context.close()



@pytest.mark.parametrize("locale", ["en-US", "ko-KR"])
def test_axe_finds_no_serious_or_critical_violation_on_the_dashboard(browser, server, demo, locale):
    context, page, errors = new_page(browser, locale=locale, bypass_csp=True)
    try:
        sign_in(page, server, demo["cityAdmin"])
        store = demo["stores"][0]["storeId"]
        for path in ("/city", f"/city/merchants/{store}", "/city/merchants", "/city/exceptions",
                     "/city/exposure", "/city/settlement", "/city/audit"):
            page.goto(f"{server}{path}")
            for summary in page.locator("details > summary").all():
                summary.click()  # the tables behind the charts are checked too
            bad = axe_violations(page)
            assert not bad, f"axe on {path}: " + json.dumps(bad, indent=1, ensure_ascii=False)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("viewport, size", [(DESKTOP, "1280x800"), (TABLET, "800x1280"),
                                            (PHONE, "360x740")])
def test_the_screens_fit_each_size_and_are_saved_for_people_to_look_at(browser, server, demo,
                                                                       viewport, size):
    context, page, errors = new_page(browser, viewport=viewport, locale="en-US")
    try:
        sign_in(page, server, demo["cityAdmin"])
        store = demo["stores"][0]["storeId"]
        for name, path in (("overview", "/city"), ("merchant", f"/city/merchants/{store}"),
                           ("merchants", "/city/merchants"), ("exceptions", "/city/exceptions"),
                           ("exposure", "/city/exposure"), ("settlement", "/city/settlement"),
                           ("audit", "/city/audit")):
            page.goto(f"{server}{path}")
            assert_no_sideways_scroll(page, f"{path} at {size}")
            if name in ("overview", "merchant") or viewport is DESKTOP:
                shot(page, f"{name}-{size}")
        assert not errors, errors
    finally:
        context.close()


def test_the_korean_dashboard_is_saved_for_people_to_look_at(browser, server, demo):
    import subprocess

    fonts = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True).stdout
    if not fonts.strip():
        pytest.skip("no Korean font on this machine (Debian: apt-get install fonts-noto-cjk)")
    context, page, errors = new_page(browser, viewport=DESKTOP, locale="ko-KR")
    try:
        sign_in(page, server, demo["cityAdmin"])
        page.goto(f"{server}/city")
        assert page.locator("h1").inner_text() == "시 대시보드"
        assert_no_sideways_scroll(page, "/city in Korean")
        shot(page, "overview-ko-1280x800")
        assert not errors, errors
    finally:
        context.close()


STATE_WORDS = {  # what an expired, part-paid invoice and a paid-out payout are called
    "en": ("Expired — part paid", "Paid out"), "ko": ("만료 — 일부 결제", "지급 완료"),
    "zh": ("已过期 — 部分付款", "已打款"), "ja": ("期限切れ — 一部支払い", "振込完了")}
PAGES = (("overview", "/city"), ("merchants", "/city/merchants"),
         ("exceptions", "/city/exceptions"), ("exposure", "/city/exposure"),
         ("settlement", "/city/settlement"), ("audit", "/city/audit"))


def test_the_dashboard_speaks_each_language_with_plain_state_words_at_every_size(
        browser, server, demo):
    for lang in ("en", "ko", "zh", "ja"):  # one seeded city for the four languages
        check_the_dashboard_in(browser, server, demo, lang)


def check_the_dashboard_in(browser, server, demo, lang):
    context, page, errors = new_page(browser, viewport=DESKTOP, bypass_csp=True)
    try:
        sign_in(page, server, demo["cityAdmin"])
        for size, viewport in (("1280x800", DESKTOP), ("800x1280", TABLET), ("360x740", PHONE)):
            page.set_viewport_size(viewport)
            for name, path in PAGES:
                if viewport is not DESKTOP and name != "overview":
                    continue
                page.goto(f"{server}{path}?lang={lang}")
                assert page.get_attribute("html", "lang") == {"zh": "zh-Hans"}.get(lang, lang)
                assert_no_sideways_scroll(page, f"{path} in {lang} at {size}")
                bad = axe_violations(page)
                assert not bad, f"axe on {path} in {lang}: " + json.dumps(bad, ensure_ascii=False)
                if lang != "en" and name == "overview":
                    shot(page, f"{name}-{lang}-{size}")
                elif lang != "en" and name == "exceptions":  # the first screen: state words
                    shot(page, f"{name}-{lang}-{size}", full_page=False)
        page.set_viewport_size(DESKTOP)
        page.goto(f"{server}/city/exceptions?lang={lang}")
        expired, paid_out = STATE_WORDS[lang]
        badge = page.locator('.badge[title="Expired · PaidPartial"]').first
        assert badge.inner_text() == expired, "plain words, the Greenfield name in the tooltip"
        assert "PaidPartial" not in page.locator("main").inner_text()
        page.goto(f"{server}/city/settlement?lang={lang}")
        assert page.locator(".chip.pay-paid").first.inner_text().startswith(paid_out)
        assert not errors, errors
    finally:
        context.close()
