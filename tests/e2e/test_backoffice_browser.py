"""The owner's back office in a real browser: every page at tablet and phone sizes,
axe-core clean, an API key and a cashier made through the forms.

Screenshots go to docs/screens/backoffice-*.png.
"""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import BROWSER_TEST
from tests.e2e.test_pos_browser import (SIZES, app, assert_accessible, assert_fits,  # noqa: F401
                                        assert_touch_targets, new_page, server, shot, store)

pytestmark = BROWSER_TEST

PAGES = [("overview", "/merchant"), ("settings", "/merchant/settings"),
         ("staff", "/merchant/staff"), ("api-keys", "/merchant/api-keys"),
         ("webhooks", "/merchant/webhooks"), ("payouts", "/merchant/payouts")]


def owner_signs_in(page, server):
    page.goto(f"{server}/login")
    page.fill("#email", "owner@cafe.kr")
    page.fill("#password", "correct horse 1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/merchant/?$"))


@pytest.mark.parametrize("size", ["1280", "800", "360"])
def test_every_back_office_page_fits_and_passes_axe(browser, server, app, store, size):
    gateway = app.extensions["busanpay"]
    api = app.test_client()
    from merchants.service import issue_api_key

    with gateway.db.write() as s:
        token = issue_api_key(s, store, label="web shop").token
    invoice = api.post(f"/api/v1/stores/{store}/invoices", json={"amount": "15000", "currency": "KRW"},
                       headers={"Authorization": f"token {token}"}).get_json()["id"]
    gateway.invoices.mark_status(store, invoice, "Settled")
    context, page, errors = new_page(browser, SIZES[size])
    try:
        owner_signs_in(page, server)
        for name, path in PAGES:
            page.goto(f"{server}{path}")
            assert_fits(page)
            assert_touch_targets(page, ".bo-nav a, .btn, .signout button")
            assert_accessible(page, f"{path} at {size} px")
            shot(page, f"backoffice-{name}-{size}", full_page=True)
        assert not errors, errors
    finally:
        context.close()


def test_an_owner_creates_a_key_and_a_cashier_and_changes_settings_in_the_browser(
        browser, server, app, store):
    context, page, errors = new_page(browser, SIZES["1280"])
    try:
        owner_signs_in(page, server)
        page.goto(f"{server}/merchant/api-keys")
        page.fill("#label", "web shop")
        page.click("text=Create key")
        token = page.text_content("[data-token]")
        assert re.fullmatch(r"[0-9a-f]{64}", token)
        assert_accessible(page, "the new API key")
        shot(page, "backoffice-api-key-created-1280", full_page=True)
        res = app.test_client().get(f"/api/v1/stores/{store}/invoices",
                                    headers={"Authorization": f"token {token}"})
        assert res.status_code == 200
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Revoke')")
        page.wait_for_selector("text=The key was revoked")
        assert app.test_client().get(f"/api/v1/stores/{store}/invoices", headers={
            "Authorization": f"token {token}"}).status_code in (401, 403)

        page.goto(f"{server}/merchant/staff")
        page.fill("#name", "Jun")
        page.fill("#pin", "1234")
        page.fill("#pin_again", "1234")
        page.click("text=Add cashier")
        assert "less obvious PIN" in page.text_content("#pin-error")
        assert_accessible(page, "the staff form with an error")
        shot(page, "backoffice-staff-error-1280", full_page=True)
        page.fill("#pin", "2580")
        page.fill("#pin_again", "2580")
        page.click("text=Add cashier")
        page.wait_for_selector("text=Cashier Jun added")

        page.goto(f"{server}/merchant/settings")
        page.check("input[value=HighSpeed]")
        page.fill("#zero_conf_limit_krw", "90000")
        page.click("text=Save settings")
        assert "only up to ₩50,000" in page.text_content("#zero_conf_limit_krw-error")
        assert_accessible(page, "the settings form with an error")
        shot(page, "backoffice-settings-error-1280", full_page=True)
        page.fill("#zero_conf_limit_krw", "30000")
        page.click("text=Save settings")
        page.wait_for_selector("text=Settings saved")
        # The refused forms answer 422 on purpose; the browser logs that as an error.
        assert not [e for e in errors if "422" not in e], errors
    finally:
        context.close()


EXPIRED_PART_PAID = {"en": "Expired — part paid", "ko": "만료 — 일부 결제",
                     "zh": "已过期 — 部分付款", "ja": "期限切れ — 一部支払い"}


@pytest.mark.parametrize("lang", ["en", "ko", "zh", "ja"])
def test_every_back_office_page_in_each_language_with_plain_state_words(
        browser, server, app, store, lang):
    from merchants.service import issue_api_key
    from tests.integration.test_checkout_page import create_invoice, set_state

    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        token = issue_api_key(s, store, label="web shop").token
    invoice = create_invoice(app.test_client(), store, token)
    set_state(gateway, invoice, "Expired", "PaidPartial", paid=[4_000])
    context, page, errors = new_page(browser, SIZES["360"])
    try:
        owner_signs_in(page, server)
        for size in ("360", "800", "1280"):
            page.set_viewport_size(SIZES[size])
            for name, path in PAGES:
                if size != "360" and name not in ("overview", "payouts"):
                    continue
                page.goto(f"{server}{path}?lang={lang}")
                assert page.get_attribute("html", "lang") == {"zh": "zh-Hans"}.get(lang, lang)
                assert_fits(page)
                assert_accessible(page, f"{path} in {lang} at {size} px")
                if lang != "en" and (size == "360" or name == "overview"):
                    shot(page, f"backoffice-{name}-{size}-{lang}", full_page=True)
        page.goto(f"{server}/merchant?lang={lang}")
        badge = page.locator('.badge[title="Expired · PaidPartial"]')
        assert badge.inner_text() == EXPIRED_PART_PAID[lang]
        assert "PaidPartial" not in page.locator("main").inner_text()
        assert not errors, errors
    finally:
        context.close()
