"""The city's Lightning panel in a real browser (Debian chromium through Playwright), with the
gateway on a fake LND node whose inbound liquidity is below the day's expected volume:
the warning, the node's health, the share by method; axe finds nothing serious.
Screenshots: city-lightning-desktop.png, city-lightning-phone.png."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from lightning.listener import Listener
from lightning.node_watch import check
from tests.e2e.conftest import BROWSER_TEST, SCREENS, axe_violations, live_server
from tests.e2e.test_dashboard_browser import (DESKTOP, PHONE, assert_no_sideways_scroll, kpi,
                                              new_page, shot, sign_in)
from tests.fakes.lnd_server import FakeLnd
from tests.integration.test_lightning_dashboard import lightning_payment

pytestmark = BROWSER_TEST
MACAROON = secrets.token_hex(96)


@pytest.fixture
def node():
    with FakeLnd(macaroon_hex=MACAROON, local_balance_msat=2_000_000_000,
                 remote_balance_msat=300_000_000) as fake:
        yield fake


@pytest.fixture
def app_config(app_config, node):
    return {**app_config, "lightning": f"lnd:{node.url}", "lnd_macaroon": MACAROON}


@pytest.fixture
def demo(app, clock):
    import demo_data
    from tests.integration.test_dashboard import with_dashboard

    with_dashboard(app)
    seeded = demo_data.seed(app.extensions["busanpay"], invoices=300, rng_seed=5)
    store = seeded["stores"][0]["storeId"]
    for days_ago in range(0, 8):  # ~400,000 sats a day over Lightning: more than the inbound
        for hours in (1, 3):
            lightning_payment(app, store, clock() - timedelta(days=days_ago, hours=hours),
                              200_000)
    gateway = app.extensions["busanpay"]
    check(gateway)
    Listener(gateway, gateway.lightning).run_once(0.3)  # as the worker's job does
    return seeded


@pytest.fixture
def server(app, demo):
    with live_server(app) as url:
        yield url


def test_the_lightning_panel_warns_of_low_inbound_and_shows_the_share_by_method(
        browser, server, demo):
    context, page, errors = new_page(browser, bypass_csp=True)  # axe is injected
    try:
        sign_in(page, server, demo["cityAdmin"])
        page.click("nav.city-nav >> text=Lightning")
        page.wait_for_url("**/city/lightning**")
        assert kpi(page, "node-state") == "Reachable" and kpi(page, "backend") == "LND"
        assert page.locator('[data-lightning-alert="inbound"]').is_visible()
        assert kpi(page, "inbound") == "0.003 BTC"
        assert kpi(page, "listener-state") == "Following the node"
        assert page.locator('tr[data-method="BTC-LN"]').is_visible()
        assert MACAROON not in page.content()
        assert axe_violations(page) == []
        assert_no_sideways_scroll(page, "the Lightning panel")
        shot(page, "lightning-desktop")
        page.click("nav.city-nav >> text=Overview")
        card = page.locator('section[data-panel="methods"]')
        assert kpi(page, "lightning-node") == "Lightning: Reachable"
        assert card.locator('[data-lightning-alert="inbound"]').is_visible()
        card.screenshot(path=str(SCREENS / "city-overview-methods-card.png"))
        assert errors == []
    finally:
        context.close()
    context, page, errors = new_page(browser, viewport=PHONE)
    try:
        sign_in(page, server, demo["cityAdmin"])
        page.goto(f"{server}/city/lightning")
        assert_no_sideways_scroll(page, "the Lightning panel on a phone")
        shot(page, "lightning-phone")
    finally:
        context.close()
