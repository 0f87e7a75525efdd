"""Two conversion venues over HTTP (Upbit-compatible doubles): failover when the first fails
mid-day, caps the city admin sets (audited) that a sale never crosses, a venue whose balance
disagrees with the ledger, and the venue's holdings in the metrics. The pool of BTC is sold
exactly once whatever happens, and `ledger check` holds."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import select

from accounts.models import AuditEntry
from accounts.service import Actor
from settlement.conversion import UpbitClient
from settlement.models import Conversion
from settlement.reconcile import check_ledger
from settlement.venues import (check_balance, convert_all, exposures, holdings_krw,
                               parse_venues, record_withdrawal, set_cap, VenueConfigError)
from tests.fakes.exchange_private import ExchangeFake
from tests.integration.test_settlement_support import (balance_of, new_store, post_all,
                                                       settled_invoice, sgateway)  # noqa: F401

ADMIN = Actor("admin-1", "city_admin", "203.0.113.5")


@pytest.fixture
def fakes():
    with ExchangeFake(access_key="p-a", secret_key="p-s", price=Decimal("150400000")) as partner, \
            ExchangeFake(access_key="b-a", secret_key="b-s", price=Decimal("150200000"),
                         fee_rate=Decimal("0.0004")) as bithumb:
        yield partner, bithumb


@pytest.fixture
def venues(sgateway, fakes):
    partner, bithumb = fakes
    sgateway.venues = [
        UpbitClient(partner.url, "p-a", "p-s", name="partner", poll_seconds=0.01),
        UpbitClient(bithumb.url, "b-a", "b-s", name="bithumb", poll_seconds=0.01)]
    return sgateway.venues


def invoices(app, gateway, count: int) -> None:
    store = new_store(app, name=f"Store {count}")
    for _ in range(count):
        settled_invoice(gateway, store, 15_000)  # 10,000 sats each at ₩150,000,000
    post_all(gateway)


def sold(gateway) -> dict[str, int]:
    with gateway.db.read() as s:
        rows = s.exec(select(Conversion).where(Conversion.status == "done")).all()
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.venue] = totals.get(row.venue, 0) + row.sats
    return totals


def first_exposure(gateway):
    """The venue the dashboard shows first (problems lead)."""
    with gateway.db.read() as s:
        return exposures(gateway, s)[0]


def holdings(gateway, venue: str) -> int:
    with gateway.db.read() as s:
        return holdings_krw(s, venue)


def test_venues_are_configured_as_a_list_primary_first():
    assert [(v.name, v.kind) for v in parse_venues(
        "partner=upbit:https://api.partner.example, bithumb=bithumb:https://api.bithumb.com")] \
        == [("partner", "upbit"), ("bithumb", "bithumb")]
    for bad in ("partner", "partner=kraken:https://x", "a=upbit:https://x,a=upbit:https://y"):
        with pytest.raises(VenueConfigError):
            parse_venues(bad)


def test_when_the_first_venue_fails_mid_day_the_next_one_sells_and_nothing_sells_twice(
        app, sgateway, venues, fakes):
    partner, bithumb = fakes
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    assert sold(sgateway) == {"partner": 20_000}
    # Mid-day the partner fails while selling: the sale stays bound to it, unfinished.
    invoices(app, sgateway, 1)
    partner.fail_next("503_before_create")
    convert_all(sgateway)
    assert sold(sgateway) == {"partner": 20_000}
    # Then it is down altogether: new BTC goes to the next venue, the pending sats do not.
    partner.down = True
    invoices(app, sgateway, 2)
    summary = convert_all(sgateway)
    assert summary["venues"]["partner"] == {"skipped": "down"}
    assert sold(sgateway) == {"partner": 20_000, "bithumb": 20_000}
    first = first_exposure(sgateway)
    assert (first.venue, first.up, first.attention) == ("partner", False, True)
    # Back up: the partner finishes its own sale by its identifier, exactly once.
    partner.down = False
    convert_all(sgateway)
    assert sold(sgateway) == {"partner": 30_000, "bithumb": 20_000}
    assert len(partner.orders) == 2 and len(bithumb.orders) == 1
    assert balance_of(sgateway, "conversion:btc") == 0 and balance_of(sgateway, "treasury:btc") == 0
    assert balance_of(sgateway, "exchange:krw") == holdings(sgateway, "partner") + \
        holdings(sgateway, "bithumb")
    assert check_ledger(sgateway)["ok"]


def test_a_refusing_venue_releases_its_sale_to_the_next(app, sgateway, venues, fakes):
    partner, bithumb = fakes
    partner.refuse = True
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    with sgateway.db.read() as s:
        statuses = sorted((c.venue, c.status, c.sats) for c in s.exec(select(Conversion)))
    assert statuses == [("bithumb", "done", 20_000), ("partner", "failed", 20_000)]
    assert check_ledger(sgateway)["ok"]


def test_a_sale_never_takes_a_venue_over_the_cap_the_city_admin_set(app, sgateway, venues, fakes):
    set_cap(sgateway, "partner", 20_000, ADMIN)
    with sgateway.db.read() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "city.exchange_cap.set")).one()
    assert (entry.target, entry.ip) == ("partner", "203.0.113.5")
    invoices(app, sgateway, 3)  # 30,000 sats, ₩45,000 at the locked rates
    convert_all(sgateway)
    got = sold(sgateway)
    assert got["partner"] + got["bithumb"] == 30_000
    assert 0 < holdings(sgateway, "partner") <= 20_000
    # At its cap the partner gets nothing more; the rest goes on to the next venue.
    invoices(app, sgateway, 2)
    summary = convert_all(sgateway)
    assert summary["venues"]["partner"] == {"skipped": "at its cap"}
    assert sold(sgateway)["partner"] == got["partner"]
    assert sum(sold(sgateway).values()) == 50_000
    # A withdrawal to the city's bank makes room again (once per reference).
    taken = holdings(sgateway, "partner")
    assert record_withdrawal(sgateway, "partner", "wire-0001", taken) is True
    fakes[0].balance_offset -= taken  # the wire left the venue
    assert record_withdrawal(sgateway, "partner", "wire-0001", taken) is False
    assert holdings(sgateway, "partner") == 0 and balance_of(sgateway, "treasury:krw") == taken
    # Lowering the cap under the holdings shows the venue first, over its cap.
    invoices(app, sgateway, 1)
    convert_all(sgateway)
    assert sold(sgateway)["partner"] == got["partner"] + 10_000
    set_cap(sgateway, "partner", 1_000, ADMIN)
    first = first_exposure(sgateway)
    assert first.venue == "partner" and first.over_cap and first.attention
    with pytest.raises(ValueError):
        set_cap(sgateway, "kraken", 1, ADMIN)
    assert check_ledger(sgateway)["ok"]


def test_a_venue_whose_balance_disagrees_is_flagged_and_gets_no_more(app, sgateway, venues,
                                                                     fakes):
    partner, bithumb = fakes
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    state = check_balance(sgateway, venues[0])
    assert (state.up, state.mismatch) == (True, False)
    assert 0 <= state.reported_krw - state.ledger_krw < 1 + 1  # floored fills
    partner.balance_offset = Decimal("-5000")  # the venue says it holds ₩5,000 less
    invoices(app, sgateway, 2)
    summary = convert_all(sgateway)
    assert summary["venues"]["partner"] == {"skipped": "balance disagrees"}
    assert sold(sgateway) == {"partner": 20_000, "bithumb": 20_000}
    first = first_exposure(sgateway)
    assert (first.venue, first.mismatch, first.reported_krw) == \
        ("partner", True, holdings(sgateway, "partner") - 5000)


def test_the_metrics_show_each_venues_holdings_cap_and_state(app, sgateway, venues, fakes):
    from operations.metrics import render

    partner, _ = fakes
    set_cap(sgateway, "partner", 100_000, ADMIN)
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    partner.down = True
    check_balance(sgateway, venues[0])
    text = render(sgateway)[0].decode()
    held = holdings(sgateway, "partner")
    assert f'busanpay_exchange_holdings_krw{{venue="partner"}} {float(held)}' in text
    assert 'busanpay_exchange_holdings_krw{venue="bithumb"} 0.0' in text
    assert 'busanpay_exchange_cap_krw{venue="partner"} 100000.0' in text
    assert 'busanpay_exchange_venue_up{venue="partner"} 0.0' in text
    assert 'busanpay_exchange_balance_mismatch{venue="partner"} 0.0' in text


def test_the_dashboard_lists_venues_problems_first_and_only_the_admin_sets_caps(
        app, sgateway, venues, fakes):
    from accounts.service import create_user
    from dashboard import init_dashboard
    from dashboard.fmt import won
    from tests.integration.test_dashboard import ADMIN as ADMIN_LOGIN, AUDITOR, login, token_for

    init_dashboard(app)
    with sgateway.db.write() as s:
        create_user(s, role="city_admin", email=ADMIN_LOGIN[0], password=ADMIN_LOGIN[1])
        create_user(s, role="city_auditor", email=AUDITOR[0], password=AUDITOR[1])
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    fakes[1].down = True  # bithumb stops answering
    check_balance(sgateway, venues[1])
    admin = app.test_client()
    login(admin, *ADMIN_LOGIN)
    page = admin.get("/city/venues").get_data(as_text=True)
    assert page.index('data-venue="bithumb"') < page.index('data-venue="partner"')
    assert "Down" in page and won(holdings(sgateway, "partner")) in page
    overview = admin.get("/city").get_data(as_text=True)
    assert "Conversion venues need attention" in overview and "does not answer" in overview
    res = admin.post("/city/venues/cap", data={"csrf_token": token_for(admin),
                                                "venue": "partner", "cap_krw": "2,000,000"})
    assert res.status_code == 302
    with sgateway.db.read() as s:
        assert {e.venue: e.cap_krw for e in exposures(sgateway, s)}["partner"] == 2_000_000
        assert s.exec(select(AuditEntry).where(
            AuditEntry.action == "city.exchange_cap.set")).one().target == "partner"
    bad = admin.post("/city/venues/cap", data={"csrf_token": token_for(admin),
                                                "venue": "partner", "cap_krw": "-5"})
    assert bad.status_code == 302
    auditor = app.test_client()
    login(auditor, *AUDITOR)
    assert auditor.get("/city/venues").status_code == 200
    assert auditor.post("/city/venues/cap", data={"csrf_token": token_for(auditor),
                                                   "venue": "partner",
                                                   "cap_krw": "1"}).status_code == 403
    with sgateway.db.read() as s:
        assert {e.venue: e.cap_krw for e in exposures(sgateway, s)}["partner"] == 2_000_000


def test_the_exchange_cli_checks_caps_and_records_withdrawals(app, sgateway, venues, fakes):
    import json

    runner = app.test_cli_runner()
    invoices(app, sgateway, 2)
    assert runner.invoke(args=["exchange", "convert"]).exit_code == 0
    assert runner.invoke(args=["exchange", "cap", "--venue", "partner", "--krw", "50000"]
                         ).exit_code == 0
    result = runner.invoke(args=["exchange", "status"])
    rows = {r["venue"]: r for r in json.loads(result.output)}
    assert result.exit_code == 0 and rows["partner"]["capKrw"] == "50000"
    held = int(rows["partner"]["holdingsKrw"])
    assert runner.invoke(args=["exchange", "withdraw", "--venue", "partner", "--krw",
                               str(held + 1), "--reference", "w1"]).exit_code != 0
    assert runner.invoke(args=["exchange", "withdraw", "--venue", "partner", "--krw", str(held),
                               "--reference", "w1"]).exit_code == 0
    result = runner.invoke(args=["exchange", "status"])  # the venue still holds it: mismatch
    assert result.exit_code == 1 and json.loads(result.output)[0]["mismatch"] is True
    assert check_ledger(sgateway)["ok"]


# -- venue alerts in the exceptions queue, BTC held at a venue --------------------------------

def city_admin(app, gateway):
    from accounts.service import create_user
    from dashboard import init_dashboard
    from tests.integration.test_dashboard import ADMIN as ADMIN_LOGIN, login

    init_dashboard(app)
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email=ADMIN_LOGIN[0], password=ADMIN_LOGIN[1])
    client = app.test_client()
    login(client, *ADMIN_LOGIN)
    return client


def an_invoice_exception(app, gateway) -> str:
    """A partly paid expired invoice: an exception of the queue's invoice kinds."""
    from tests.integration.test_dashboard import add_invoice

    store = new_store(app, name="Partial Store")
    return add_invoice(app, store, gateway.clock(), 9_000, status="Expired",
                       additional="PaidPartial", paid_sats=1_000)


def queue(client, **args) -> str:
    res = client.get("/city/exceptions", query_string=args)
    assert res.status_code == 200
    return res.get_data(as_text=True)


def test_a_venue_over_its_cap_leads_the_exceptions_queue_and_conversion_goes_to_the_next(
        app, sgateway, venues, fakes):
    admin = city_admin(app, sgateway)
    invoice = an_invoice_exception(app, sgateway)
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    assert sold(sgateway) == {"partner": 20_000}
    assert 'data-venue="partner"' not in queue(admin)
    set_cap(sgateway, "partner", 1_000, ADMIN)  # under what it holds already
    invoices(app, sgateway, 1)
    summary = convert_all(sgateway)
    assert summary["venues"]["partner"] == {"skipped": "at its cap"}
    assert sold(sgateway) == {"partner": 20_000, "bithumb": 10_000}
    page = queue(admin)
    assert page.index('data-venue="partner"') < page.index(invoice), "venue alerts come first"
    assert "over its cap of ₩1,000" in page and 'href="/city/venues"' in page
    assert "2 exceptions" in page
    only = queue(admin, kind="venue")
    assert 'data-venue="partner"' in only and invoice not in only
    overview = admin.get("/city").get_data(as_text=True)
    assert 'class="chip kind-venue"' in overview
    # A withdrawal brings it under its cap: the alert leaves the queue.
    record_withdrawal(sgateway, "partner", "wire-1", holdings(sgateway, "partner"))
    assert 'data-venue="partner"' not in queue(admin) and invoice in queue(admin)


def test_a_venue_whose_btc_balance_disagrees_is_an_alert_in_the_exceptions_queue(
        app, sgateway, venues, fakes):
    partner, _ = fakes
    admin = city_admin(app, sgateway)
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    partner.btc_offset = Decimal("0.0005")  # the venue holds 50,000 sats the ledger does not
    state = check_balance(sgateway, venues[0])
    assert (state.mismatch, state.reported_sats, state.ledger_sats) == (True, 50_000, 0)
    page = queue(admin)
    assert 'data-venue="partner"' in page and "0.0005 BTC" in page, page[page.find("exc-queue"):][:3000]
    assert "reconcile its statement with the ledger" in page
    partner.btc_offset = Decimal(0)
    assert check_balance(sgateway, venues[0]).mismatch is False
    assert 'data-venue="partner"' not in queue(admin)


def test_a_down_venue_is_an_alert_in_the_exceptions_queue_until_it_answers_again(
        app, sgateway, venues, fakes, clock):
    _, bithumb = fakes
    admin = city_admin(app, sgateway)
    invoice = an_invoice_exception(app, sgateway)
    bithumb.down = True
    first = check_balance(sgateway, venues[1]).down_since
    assert first == sgateway.clock()
    clock.advance(minutes=5)
    assert check_balance(sgateway, venues[1]).down_since == first  # down since the first failure
    page = queue(admin)
    assert page.index('data-venue="bithumb"') < page.index(invoice)
    assert "does not answer" in page and "down since" in page
    korean = queue(admin, lang="ko")
    assert "응답 없음" in korean and "KST부터 중단" in korean and "다음 거래소로" in korean
    bithumb.down = False
    state = check_balance(sgateway, venues[1])
    assert (state.up, state.down_since) == (True, None)
    page = queue(admin)
    assert 'data-venue="bithumb"' not in page and invoice in page


def test_btc_deposited_but_not_sold_counts_toward_the_cap_the_holdings_and_the_metrics(
        app, sgateway, venues, fakes):
    from operations.metrics import render
    from settlement.venues import allowed_sats, holdings_sats

    partner, bithumb = fakes
    partner.hold_fills = True  # the deposit is there, the sale has not filled
    partner_client = venues[0]
    partner_client.poll_tries = 2
    set_cap(sgateway, "partner", 40_000, ADMIN)
    invoices(app, sgateway, 2)  # 20,000 sats, ₩30,000 locked
    convert_all(sgateway)
    with sgateway.db.read() as s:
        assert holdings_sats(s, "partner") == 20_000
        row = {e.venue: e for e in exposures(sgateway, s)}["partner"]
    assert balance_of(sgateway, "venue_btc:partner") == 20_000
    # ₩0 won + 20,000 sats at the current ₩150,000,000/BTC = ₩30,000 of a ₩40,000 cap.
    assert (row.won_krw, row.btc_sats, row.btc_value_krw, row.holdings_krw) == \
        (0, 20_000, 30_000, 30_000)
    state = check_balance(sgateway, venues[0])
    assert (state.reported_sats, state.ledger_sats, state.mismatch) == (20_000, 20_000, False)
    text = render(sgateway)[0].decode()
    assert 'busanpay_exchange_holdings_krw{venue="partner"} 30000.0' in text
    # The room left under the cap is ₩40,000 − ₩30,000: new sats at ₩1.5 each + 2 % margin.
    with sgateway.db.read() as s:
        assert allowed_sats(s, "partner", 40_000, 100_000, Decimal("150000000")) == 6_535
    # Its unfinished sale stays bound to it; the rest goes to the next venue.
    invoices(app, sgateway, 2)
    convert_all(sgateway)
    with sgateway.db.read() as s:
        unsold = holdings_sats(s, "partner")
        at_partner = [c for c in s.exec(select(Conversion).where(Conversion.venue == "partner"))]
    assert unsold == 20_000 and len(at_partner) == 1, "its unfinished sale blocks a second"
    assert sold(sgateway) == {"bithumb": 20_000}
    # The fill moves the venue's BTC to won; exposure stays under the cap.
    partner.hold_fills = False
    convert_all(sgateway)
    assert sold(sgateway) == {"partner": 20_000, "bithumb": 20_000}
    assert balance_of(sgateway, "venue_btc:partner") == 0
    assert balance_of(sgateway, "treasury:btc") == 0
    assert 0 < holdings(sgateway, "partner") <= 40_000
    assert check_ledger(sgateway)["ok"]


def test_a_refused_sale_returns_its_deposit_to_the_treasury(
        app, sgateway, venues, fakes):
    partner, _ = fakes
    partner.refuse = True
    invoices(app, sgateway, 1)
    convert_all(sgateway)
    assert balance_of(sgateway, "venue_btc:partner") == 0
    assert balance_of(sgateway, "venue_btc:bithumb") == 0
    assert sold(sgateway) == {"bithumb": 10_000}
    assert check_ledger(sgateway)["ok"]


def test_a_bithumb_venue_sells_through_bithumbs_own_private_api_exactly_once(app, sgateway):
    from settlement.conversion import BithumbClient, ExchangeError
    from settlement.venues import clients_from_env

    configured = clients_from_env({
        "BUSANPAY_EXCHANGE_VENUES": "bithumb=bithumb:https://api.bithumb.com",
        "BUSANPAY_VENUE_BITHUMB_ACCESS_KEY": "b-a", "BUSANPAY_VENUE_BITHUMB_SECRET_KEY": "b-s"})
    assert [type(c) for c in configured] == [BithumbClient]
    with ExchangeFake(access_key="b-a", secret_key="b-s", dialect="bithumb",
                      price=Decimal("150200000")) as bithumb:
        # Upbit's client is not enough: no `timestamp` claim, and `identifier` is refused.
        with pytest.raises(ExchangeError):
            UpbitClient(bithumb.url, "b-a", "b-s", name="bithumb").balances()
        assert bithumb.rejected == ["timestamp missing or not within a minute"]
        sgateway.venues = [BithumbClient(bithumb.url, "b-a", "b-s", poll_seconds=0.01)]
        invoices(app, sgateway, 2)
        bithumb.fail_next("500_after_create")  # placed, then the answer is lost
        convert_all(sgateway)
        assert sold(sgateway) == {"bithumb": 20_000}
        assert len(bithumb.orders) == 1, "read back by client_order_id, never placed twice"
        (order,) = bithumb.orders.values()
        with sgateway.db.read() as s:
            (conversion,) = s.exec(select(Conversion)).all()
        assert order["client_order_id"] == conversion.id and "identifier" not in order
        state = check_balance(sgateway, sgateway.venues[0])
        assert (state.up, state.mismatch, state.reported_sats) == (True, False, 0)
        assert 0 <= state.reported_krw - state.ledger_krw <= 1
        assert check_ledger(sgateway)["ok"]
