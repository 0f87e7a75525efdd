"""The payer's refund claim in a real browser (Debian chromium through Playwright) at phone
size: an overpaid invoice (demo chain + watcher), "Claim a refund", a bad address, a good one;
then the saved link (key after "#") opened in another browser. Screenshots go to
docs/screens/refund-*.png."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.test_checkout_browser import PHONE, open_page
from tests.integration.test_refund_pages import (MAINNET_ADDRESS, REGTEST_ADDRESS, claims,  # noqa: F401
                                                 post_all,
                                                 demo_chain, overpaid, world)

pytestmark = [pytest.mark.e2e]


def shot(page, name):
    screenshot(page, f"refund-{name}", full_page=True)


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


@pytest.mark.parametrize("lang, claim, contact", [
    ("en", "Claim a refund", "Contact the merchant for a refund"),
    ("ko", None, None), ("zh", None, None), ("ja", None, None)])
def test_an_expired_partly_paid_invoice_offers_one_next_step_the_refund_claim(
        world, server, browser, lang, claim, contact):
    from tests.integration.test_payment_scenarios import DUE

    inv = world.invoice()
    world.pay(inv["id"], DUE // 2)
    world.run()
    world.clock.advance(minutes=16)
    world.run()
    assert world.status(inv["id"]) == ("Expired", "PaidPartial")
    post_all(world.gateway)
    context, page, errors = open_page(browser, f"{server}/i/{inv['id']}?lang={lang}", PHONE,
                                      bypass_csp=False)
    try:
        assert page.locator("#refund form button").count() == 1, "the claim is offered"
        assert page.locator(".next-step").count() == 0, "no second, different next step"
        if claim:
            assert page.get_by_role("button", name=claim).is_visible()
            assert contact not in page.inner_text("main")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, "expired-partial-offer" + ("" if lang == "en" else f"-{lang}"))
        assert not errors, errors
    finally:
        context.close()
