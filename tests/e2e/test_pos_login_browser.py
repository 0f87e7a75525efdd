"""The cashier's sign-in on a tablet: the short store code (any case), remembered by the
tablet after the first sign-in, so next time only the PIN is typed."""
from __future__ import annotations

import re

import pytest

from accounts.service import create_user
from merchants.models import Store
from tests.conftest import make_merchant
from tests.e2e.conftest import BROWSER_TEST, ROOT, axe_violations

pytestmark = BROWSER_TEST
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
PIN = "583920"


@pytest.fixture
def store_code(app):
    store_id, _ = make_merchant(app, name="Haeundae Beach Café")
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Minji")
        return s.get(Store, store_id).pos_code


@pytest.mark.parametrize("size", [(1280, 800), (360, 740)], ids=["tablet", "phone"])
def test_a_cashier_types_the_short_code_once_and_the_tablet_remembers_it(
        browser, server, store_code, size):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]},
                                  locale="en-US", bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{server}/pos/login?lang=en")
        assert page.input_value("#store") == ""
        page.fill("#store", store_code.lower())  # any case will do
        page.fill("#pin", PIN)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/pos/?$"))
        page.click("form.signout button[type=submit]")
        page.wait_for_url(re.compile(r".*/pos/login"))
        assert page.input_value("#store") == store_code  # filled in: only the PIN to type
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"pos-login-remembered-{size[0]}.png"))
        assert not axe_violations(page)
        page.fill("#pin", "000000")
        page.click("button[type=submit]")
        assert page.locator("[role=alert]").inner_text() == "Wrong store code or PIN."
        page.fill("#pin", PIN)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/pos/?$"))
    finally:
        context.close()
