"""The city's Lightning panel (/city/lightning) and the Lightning metrics, with the gateway
speaking to a fake LND REST node on 127.0.0.1 (tests/fakes/lnd_server.py); on SQLite and
PostgreSQL. The page shows the last background check, never waits on the node."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import update

from lightning.node_watch import check
from payments.models import Payment
from tests.fakes.lnd_server import FakeLnd
from tests.integration.test_dashboard import (ADMIN, AUDITOR, OWNER, add_invoice, city,  # noqa: F401
                                              csv_rows, kpi, login)
from tests.integration.test_metrics import TOKEN, scrape, value

MACAROON = secrets.token_hex(96)


@pytest.fixture
def node():
    # 2,000,000 sats in the channels, 50,000 sats of inbound liquidity.
    with FakeLnd(macaroon_hex=MACAROON, local_balance_msat=2_000_000_000,
                 remote_balance_msat=50_000_000) as fake:
        yield fake


@pytest.fixture
def app_config(app_config, node):
    return {**app_config, "lightning": f"lnd:{node.url}", "lnd_macaroon": MACAROON,
            "metrics_token": TOKEN}


def lightning_payment(app, store_id, created_at, sats) -> str:
    """A settled invoice paid over Lightning (payment hash as txid)."""
    invoice_id = add_invoice(app, store_id, created_at, sats * 150_000_000 // 100_000_000,
                             due_sats=sats, payments=[{"value": sats}])
    with app.extensions["busanpay"].db.write() as s:
        s.execute(update(Payment).where(Payment.invoice_id == invoice_id)
                  .values(method="BTC-LN", address="lightning", txid=secrets.token_hex(32)))
    return invoice_id


def page(client, query="") -> str:
    res = client.get("/city/lightning" + query)
    assert res.status_code == 200, res.get_data(as_text=True)[:500]
    return res.get_data(as_text=True)


def test_the_panel_shows_a_reachable_lnd_node_with_its_balance_and_inbound_liquidity(
        app, client, city, gateway, node):  # noqa: F811
    check(gateway)
    login(client, *AUDITOR)
    html = page(client)
    assert kpi(html, "node-state") == "Reachable" and kpi(html, "backend") == "LND"
    assert kpi(html, "inbound") == "0.0005 BTC"
    assert kpi(html, "channel-balance") == "0.02 BTC"
    assert 'data-lightning-alert' not in html  # nothing expected yet: no warning
    assert MACAROON not in html and MACAROON[:16] not in html


def test_the_page_shows_the_last_check_and_never_asks_the_node_itself(
        app, client, city, gateway, node):  # noqa: F811
    node.go_down()  # a page that asked the node would show it down
    login(client, *ADMIN)
    html = page(client)
    assert "Not checked yet" in html and "data-lightning-alert" not in html


def test_a_node_that_is_down_shows_its_error_without_secrets(app, client, city, gateway, node):  # noqa: F811
    check(gateway)
    node.go_down()
    check(gateway)
    login(client, *ADMIN)
    html = page(client)
    assert kpi(html, "node-state") == "Unreachable"
    assert 'data-lightning-alert="down"' in html
    error = kpi(html, "node-error")
    assert error and MACAROON not in html and MACAROON[:16] not in html
    assert "No liquidity figures while the node cannot be reached." in html


def test_inbound_liquidity_below_the_expected_volume_is_warned(app, client, city, gateway,
                                                                clock, node):  # noqa: F811
    # Last 7 days: 420,000 sats over Lightning → 60,000 a day expected; inbound is 50,000.
    for days_ago in range(1, 8):
        lightning_payment(app, city["cafe"], clock() - timedelta(days=days_ago), 60_000)
    check(gateway)
    login(client, *ADMIN)
    html = page(client)
    assert kpi(html, "expected") == "0.0006 BTC"
    assert 'data-lightning-alert="inbound"' in html and kpi(html, "inbound") == "0.0005 BTC"


def test_today_s_pace_is_extrapolated_to_the_whole_day(app, client, city, gateway, clock, node):  # noqa: F811
    # 12:00 KST: half the day gone; 20,000 sats so far → 40,000 expected (below 50,000 inbound).
    lightning_payment(app, city["cafe"], clock() - timedelta(hours=2), 20_000)
    check(gateway)
    login(client, *ADMIN)
    html = page(client)
    assert kpi(html, "expected") == "0.0004 BTC"
    assert 'data-lightning-alert="inbound"' not in html


def test_the_share_by_method_counts_payments_and_won_today_and_in_the_period(
        app, client, city, clock):  # noqa: F811
    today = clock()
    add_invoice(app, city["cafe"], today - timedelta(hours=1), 15_000, payments=[{}])
    add_invoice(app, city["market"], today - timedelta(days=3), 30_000, payments=[{}])
    lightning_payment(app, city["cafe"], today - timedelta(hours=1), 5_000)      # ₩7,500
    lightning_payment(app, city["cafe"], today - timedelta(days=2), 10_000)      # ₩15,000
    login(client, *AUDITOR)
    html = page(client, "?preset=7d")
    rows = dict(_method_rows(html))
    assert rows["BTC-CHAIN"] == ["1", "₩15,000", "2", "50 %", "₩45,000", "67 %"]
    assert rows["BTC-LN"] == ["1", "₩7,500", "2", "50 %", "₩22,500", "33 %"]
    exported = csv_rows(client.get("/city/lightning?preset=7d&format=csv"))
    got = {(r["scope"], r["method"]): (r["payments"], r["krw"]) for r in exported}
    assert got == {("today", "BTC-CHAIN"): ("1", "15000"), ("today", "BTC-LN"): ("1", "7500"),
                   ("period", "BTC-CHAIN"): ("2", "45000"), ("period", "BTC-LN"): ("2", "22500")}
    assert 'id="chart-methods"' in html


def _method_rows(html: str):
    import re

    for method, body in re.findall(r'<tr data-method="([^"]+)">(.*?)</tr>', html):
        yield method, [re.sub(r"<[^>]+>", "", c).strip()
                       for c in re.findall(r'<td class="num">(.*?)</td>', body)]


def test_merchants_may_not_see_the_lightning_panel(app, client, city):  # noqa: F811
    login(client, *OWNER)
    assert client.get("/city/lightning").status_code == 403


def test_the_lightning_metrics_follow_the_node(app, client, city, gateway, node):  # noqa: F811
    check(gateway)
    samples = scrape(client)
    assert value(samples, "busanpay_lightning_up") == 1
    assert value(samples, "busanpay_lightning_inbound_msat") == 50_000_000
    assert value(samples, "busanpay_lightning_channel_balance_msat") == 2_000_000_000
    node.go_down()
    check(gateway)
    samples = scrape(client)
    assert value(samples, "busanpay_lightning_up") == 0
    assert ("busanpay_lightning_inbound_msat", frozenset()) not in samples


@pytest.mark.parametrize("lang", ["ko", "zh", "ja"])
def test_the_whole_panel_is_translated(app, client, city, gateway, clock, node, lang):  # noqa: F811
    from tests.integration.test_translations import allowed_pattern, english_left, visible_strings

    for days_ago in range(1, 8):
        lightning_payment(app, city["cafe"], clock() - timedelta(days=days_ago), 60_000)
    check(gateway)
    login(client, *ADMIN)
    english = {t for t in visible_strings(page(client, "?lang=en"))}
    translated = visible_strings(page(client, f"?lang={lang}"))
    allowed = allowed_pattern(app)
    left = [t for t in translated if t in english and english_left(t, allowed)
            and t not in ("LND", "busan-lnd")]  # the node's kind and its own alias
    assert left == []


def test_the_overview_shows_payments_by_method_and_the_node_with_a_link_to_the_panel(
        app, client, city, gateway, clock, node):  # noqa: F811
    lightning_payment(app, city["cafe"], clock() - timedelta(hours=1), 5_000)
    check(gateway)
    login(client, *AUDITOR)
    html = client.get("/city?preset=7d").get_data(as_text=True)
    assert kpi(html, "lightning-node") == "Lightning: Reachable"
    assert 'id="chart-methods"' in html and "Lightning ₩7,500" in html
    assert 'href="/city/lightning?from=' in html
