"""The payer's refund claim in a real browser (Debian chromium through Playwright) at phone
size: an overpaid invoice (demo chain + watcher), "Claim a refund", a bad address, a good one;
then the saved link (key after "#") opened in another browser. Screenshots go to
docs/screens/refund-*.png."""
from __future__ import annotations

import pytest

from tests.e2e.test_checkout_browser import PHONE, SCREENS, open_page
from tests.integration.test_refund_pages import (MAINNET_ADDRESS, REGTEST_ADDRESS, claims,  # noqa: F401
                                                 demo_chain, overpaid, world)

pytestmark = [pytest.mark.e2e]


def shot(page, name):
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"refund-{name}.png"), full_page=True)


def test_a_payer_on_a_phone_claims_a_refund_and_gives_an_address(world, server, browser):
    invoice_id = overpaid(world)
    context, page, errors = open_page(browser, f"{server}/i/{invoice_id}", PHONE, bypass_csp=False)
    try:
        shot(page, "checkout-offer")
        page.get_by_role("button", name="Claim a refund").click()
        page.wait_for_url("**/refund/**")
        assert page.get_by_role("heading", name="Keep this link").is_visible()
        shot(page, "claim-open")
        page.get_by_label("Your refund address").fill(MAINNET_ADDRESS)
        page.get_by_role("button", name="Save the refund address").click()
        page.wait_for_load_state()
        assert "not a valid Bitcoin regtest address" in page.get_by_role("alert").inner_text()
        shot(page, "claim-bad-address")
        assert claims(world.gateway)[0].address is None
        page.get_by_label("Your refund address").fill(REGTEST_ADDRESS)
        page.get_by_role("button", name="Save the refund address").click()
        page.wait_for_load_state()
        assert "Address received, waiting for approval" in page.inner_text("main")
        shot(page, "claim-submitted")
        (claim,) = claims(world.gateway)
        assert (claim.status, claim.address) == ("submitted", REGTEST_ADDRESS)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "no sideways scrolling on a phone"
        # the refused address is answered 422 on purpose; chromium logs that status
        assert [e for e in errors if "status of 422" not in e] == []
        saved = page.locator("code.link").inner_text()
        assert "#key=" in saved
    finally:
        context.close()
    # Another browser (no key cookie) opens the saved link: the key after "#" never reaches
    # the server in the URL; the page's script posts it and the claim opens.
    other, phone, errors = open_page(browser, saved, PHONE, bypass_csp=False)
    try:
        phone.wait_for_url(lambda url: "#" not in url and "/key" not in url)
        phone.wait_for_load_state()
        assert "Address received, waiting for approval" in phone.inner_text("main")
        assert REGTEST_ADDRESS in phone.inner_text("main")
        assert errors == []
    finally:
        other.close()
