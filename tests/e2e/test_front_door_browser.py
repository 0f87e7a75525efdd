"""The front door (/), the sign-in pages and the error pages in a real browser, in all four
languages at phone, portrait-tablet and desktop widths: axe-core clean, no sideways scroll,
the favicon served (no console error), the demo logins never on a page.

Screenshots: front-*.png, signin-*.png, error-*.png (see docs/SCREENS.md).
"""
from __future__ import annotations

import pytest
from werkzeug.exceptions import TooManyRequests

from accounts.service import create_user
from tests.conftest import make_merchant
from tests.e2e.conftest import BROWSER_TEST, live_server
from tests.e2e.test_pos_browser import (PIN, SIZES, assert_accessible, assert_fits,
                                        cashier_signs_in, new_page, shot)

pytestmark = BROWSER_TEST
LANGS = ("ko", "en", "zh", "ja")
PASSWORD = "front door 17 secret"
HEADINGS = {"ko": "어디로 가시겠어요?", "en": "Where do you want to go?",
            "zh": "您要去哪里？", "ja": "どちらへ進みますか？"}


@pytest.fixture
def app(app):
    @app.get("/e2e/too-many")
    def _too_many():
        raise TooManyRequests(retry_after=30)

    @app.get("/e2e/crash")
    def _crash():
        raise RuntimeError("a bug")

    app.config["PROPAGATE_EXCEPTIONS"] = False  # the 500 page, as in production
    store_id, _token = make_merchant(app, name="Front Door Café")
    app.config["E2E_STORE"] = store_id
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email="owner@front.kr", password=PASSWORD, store_id=store_id)
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Ara")
    return app


@pytest.fixture
def server(app):
    with live_server(app) as url:
        yield url


@pytest.mark.parametrize("size", ["360", "800", "1280"])
def test_the_front_door_links_every_screen_in_each_language_and_never_shows_a_login(
        browser, server, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        for lang in LANGS:
            page.goto(f"{server}/?lang={lang}")
            assert page.get_attribute("html", "lang") == {"zh": "zh-Hans"}.get(lang, lang)
            assert page.locator("#doors-title").inner_text() == HEADINGS[lang]
            hrefs = page.eval_on_selector_all(".doors a", "as => as.map(a => a.getAttribute('href'))")
            assert hrefs == ["/pos", "/merchant", "/city", "/api/v1/openapi.json"]
            assert page.locator(".langs a").count() == 4 and page.locator(".lang-list a").count() == 4
            assert page.locator(".try-it").is_visible(), "the embedded default has a try-it box"
            html = page.content()
            assert PASSWORD not in html and "owner@front.kr" not in html and PIN not in html
            assert_fits(page)
            assert_accessible(page, f"the front door in {lang} at {size} px")
            shot(page, f"front-{size}-{lang}" if lang != "en" else f"front-{size}", full_page=True)
        # the doors open: the POS and the back office ask for a sign-in, the API doc is JSON
        page.goto(f"{server}/?lang=en")
        page.click("text=Point of sale")
        assert page.url.startswith(f"{server}/pos/login")
        assert page.request.get(f"{server}/api/v1/openapi.json").json()["openapi"].startswith("3.")
        favicon = page.request.get(f"{server}/favicon.ico")
        assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/")
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("size", ["360", "800", "1280"])
def test_the_sign_in_pages_have_a_language_row_and_a_styled_footer(browser, server, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        for path, name in (("/login", "signin"), ("/pos/login", "signin-pos")):
            for lang in LANGS:
                page.goto(f"{server}{path}?lang={lang}")
                langs = page.locator(".langs ul")
                assert page.evaluate("getComputedStyle(document.querySelector('.langs ul')).listStyleType") == "none"
                assert page.evaluate("getComputedStyle(document.querySelector('.langs ul')).display") == "flex"
                boxes = [a.bounding_box() for a in langs.locator("a").all()]
                assert all(b["height"] >= 44 and b["width"] >= 44 for b in boxes)
                if size != "360":  # one row of pills beside the name
                    assert len({round(b["y"]) for b in boxes}) == 1
                footer = page.locator(".site-footer")
                assert page.evaluate("getComputedStyle(document.querySelector('.site-footer')).textAlign") == "center"
                assert footer.locator("a").bounding_box()["height"] >= 44
                assert_fits(page)
                assert_accessible(page, f"{path} in {lang} at {size} px")
                if lang in ("en", "ja"):
                    shot(page, f"{name}-{size}" + ("" if lang == "en" else f"-{lang}"), full_page=True)
        assert not errors, errors
    finally:
        context.close()


ERRORS = {404: "/no/such/page", 405: "/logout", 429: "/e2e/too-many", 500: "/e2e/crash"}
TITLES = {404: {"en": "Page not found", "ko": "페이지를 찾을 수 없습니다", "zh": "找不到页面",
                "ja": "ページが見つかりません"}}


@pytest.mark.parametrize("size", ["360", "800", "1280"])
def test_error_pages_are_styled_in_the_readers_language_with_a_way_home(browser, server, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        for lang in LANGS:
            for code, path in ERRORS.items():
                response = page.goto(f"{server}{path}?lang={lang}")
                assert response.status == code
                assert page.locator(".error-code").inner_text() == str(code)
                if code in TITLES:
                    assert page.locator("h1").inner_text() == TITLES[code][lang]
                assert page.get_attribute("html", "lang") == {"zh": "zh-Hans"}.get(lang, lang)
                assert_fits(page)
                if lang == "en" or code == 404:
                    assert_accessible(page, f"the {code} page in {lang} at {size} px")
                if (lang == "en" and size == "360") or (code == 404 and size == "1280"):
                    shot(page, f"error-{code}-{size}" + ("" if lang == "en" else f"-{lang}"))
        page.goto(f"{server}/no/such/page")
        page.click(".error-actions a")
        assert page.url == f"{server}/"
        # the browser logs each error status it was given: those are the point here
        assert not [e for e in errors if "the server responded with a status" not in e], errors
    finally:
        context.close()


def test_a_cashier_opening_the_city_dashboard_gets_the_styled_403(browser, server, app):
    context, page, errors = new_page(browser, SIZES["360"], locale="ja-JP")
    try:
        cashier_signs_in(page, server, app.config["E2E_STORE"])
        response = page.goto(f"{server}/city")
        assert response.status == 403
        assert page.locator("h1").inner_text() == "このページは開けません"
        assert_accessible(page, "the 403 page in Japanese")
        shot(page, "error-403-360-ja")
    finally:
        context.close()


def test_the_demo_page_fits_a_phone_and_shows_the_fresh_status_right_after_paying(
        browser, server, app):
    from tests.integration.test_checkout_page import create_invoice

    store_id = app.config["E2E_STORE"]
    from merchants.service import issue_api_key

    with app.extensions["busanpay"].db.write() as s:
        token = issue_api_key(s, store_id, label="demo page").token
    invoice_id = create_invoice(app.test_client(), store_id, token)
    context, page, errors = new_page(browser, SIZES["360"])
    try:
        page.goto(f"{server}/i/{invoice_id}/demo?lang=en")
        assert page.inner_text("#status") == "Waiting for payment"
        assert page.get_attribute("#status", "title") == "New"
        assert_fits(page)
        assert_accessible(page, "the demo page at 360 px")
        page.click("text=Pay this invoice")
        page.wait_for_selector("#message")
        assert page.inner_text("#status") == "Paid — waiting for confirmation"  # no stale "New"
        assert_fits(page)  # the address and the txid wrap on a phone
        shot(page, "demo-paid-360", full_page=True)
        page.click("text=Mine a block")
        page.wait_for_selector("#message")
        assert page.inner_text("#status") == "Paid" and page.get_attribute("#status", "title") == "Settled"
        assert not errors, errors
    finally:
        context.close()
