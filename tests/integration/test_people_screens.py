"""The people's screens, second pass (issue 14) at the HTTP level: the front door, the error
pages (HTML for browsers, JSON kept for the API), the favicon, `merchant create --category`,
the monthly statement without future days, the demo seed's payout dates and the demo page."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from accounts.service import create_user
from tests.conftest import make_merchant
from tests.integration.test_backoffice import owner, owners  # noqa: F401 (fixtures)

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def text(res) -> str:
    return re.sub(r"\s+", " ", res.get_data(as_text=True))


def test_the_front_door_names_every_screen_and_on_the_demo_says_where_the_logins_are(app, client):
    store_id, _token = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email="boss@shop.kr", password="pw for the boss 1",
                    store_id=store_id)
    res = client.get("/?lang=en", headers=HTML)
    page = text(res)
    assert res.status_code == 200 and res.mimetype == "text/html"
    for href in ('href="/pos"', 'href="/merchant"', 'href="/city"', 'href="/api/v1/openapi.json"'):
        assert href in page
    for name in ("한국어", "English", "简体中文", "日本語"):
        assert name in page
    assert "Try it" in page and "make start" in page
    assert "boss@shop.kr" not in page and "pw for the boss 1" not in page
    assert res.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.fixture
def app_config(app_config, request):
    if "live_chain" in request.node.name:
        app_config["chain"] = "esplora:http://127.0.0.1:9"
    return app_config


def test_the_front_door_has_no_try_it_box_off_the_live_chain_demo(client):
    page = text(client.get("/?lang=en", headers=HTML))
    assert "Try it" not in page and 'href="/pos"' in page


@pytest.mark.parametrize("lang, title", [("en", "Page not found"), ("ko", "페이지를 찾을 수 없습니다"),
                                         ("zh", "找不到页面"), ("ja", "ページが見つかりません")])
def test_a_browser_gets_a_404_page_in_its_language_with_a_way_home(client, lang, title):
    res = client.get(f"/no/such/page?lang={lang}", headers=HTML)
    page = text(res)
    assert res.status_code == 404 and res.mimetype == "text/html"
    assert f"<h1>{title}</h1>" in page and 'href="/"' in page
    assert 'class="error-code" translate="no">404<' in page


def test_a_405_page_keeps_the_allow_header_and_the_api_keeps_json(client):
    res = client.get("/logout", headers=HTML)
    assert res.status_code == 405 and res.mimetype == "text/html"
    assert "POST" in res.headers["Allow"]
    api = client.get("/api/v1/no-such-thing", headers=HTML)
    assert api.status_code == 404 and api.get_json()["code"] == "not-found"
    script = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert script.status_code == 404 and "error-code" not in script.get_data(as_text=True)


def test_an_unhandled_error_and_a_rate_limit_get_styled_pages(app, client):
    from werkzeug.exceptions import TooManyRequests

    @app.get("/test/crash")
    def _crash():
        raise RuntimeError("a bug")

    @app.get("/test/busy")
    def _busy():
        raise TooManyRequests(retry_after=30)

    app.config["PROPAGATE_EXCEPTIONS"] = False
    crash = client.get("/test/crash?lang=ja", headers=HTML)
    assert crash.status_code == 500 and "error-code" in crash.get_data(as_text=True)
    assert "a bug" not in crash.get_data(as_text=True)
    busy = client.get("/test/busy?lang=ko", headers=HTML)
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "30"
    assert 'lang="ko"' in busy.get_data(as_text=True)


def test_the_favicon_is_served(client):
    res = client.get("/favicon.ico")
    assert res.status_code == 200 and res.data[:4] == b"\x00\x00\x01\x00"  # an ICO file


def test_merchant_create_takes_a_category_and_says_when_it_used_the_default(app):
    runner = app.test_cli_runner()
    chosen = runner.invoke(args=["merchant", "create", "--name", "Jagalchi Fish",
                                 "--category", "market"])
    assert chosen.exit_code == 0, chosen.output
    out = json.loads(chosen.output)
    assert out["category"] == "market" and "note" not in out
    default = json.loads(runner.invoke(args=["merchant", "create", "--name", "Shop"]).output)
    assert default["category"] == "retail" and "default category 'retail'" in default["note"]
    bad = runner.invoke(args=["merchant", "create", "--name", "X", "--category", "casino"])
    assert bad.exit_code != 0 and "casino" in bad.output
    helptext = runner.invoke(args=["merchant", "create", "--help"]).output
    assert "default: retail" in helptext


def test_the_monthly_statement_lists_no_day_after_today(owner, clock):
    today = (clock() + timedelta(hours=9)).date()  # Asia/Seoul
    res = owner.get(f"/merchant/statements/{today:%Y-%m}.csv")
    assert res.status_code == 200
    days = [row["day_kst"] for row in csv.DictReader(io.StringIO(res.get_data(as_text=True)))]
    assert days[0] == f"{today:%Y-%m}-01" and days[-1] == today.isoformat()


def test_the_demo_seed_initiates_each_payout_just_after_its_own_day(app):
    import demo_data
    from settlement.daily import SEOUL
    from settlement.models import JournalEntry, Payout
    from tests.integration.test_dashboard import with_dashboard

    with_dashboard(app)
    gateway = app.extensions["busanpay"]
    demo_data.seed(gateway, invoices=400, rng_seed=3)
    with gateway.db.read() as s:
        payouts = {p.id: p for p in s.execute(select(Payout)).scalars()}
        entries = list(s.execute(select(JournalEntry).where(
            JournalEntry.kind == "payout_initiated")).scalars())
    assert len(payouts) > 20 and len(entries) == len(payouts)
    for entry in entries:
        initiated = entry.created_at.astimezone(SEOUL).date()
        assert initiated == payouts[entry.payout_id].day + timedelta(days=1), entry.memo
    today = gateway.clock().astimezone(SEOUL).date()
    assert sum(1 for e in entries if e.created_at.astimezone(SEOUL).date() == today) <= \
        len({p.store_id for p in payouts.values()}), "at most yesterday's payouts start today"


def test_the_demo_page_shows_the_status_a_payment_just_caused_in_plain_words(app, client):
    store_id, token = make_merchant(app)
    created = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "15000"},
                          headers={"Authorization": f"token {token}"}).get_json()
    page = client.get(f"/i/{created['id']}/demo?lang=en")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    paid = client.post(f"/i/{created['id']}/demo/pay", data={"csrf_token": csrf, "part": "all"},
                       follow_redirects=True)
    html = text(paid)
    assert 'title="Processing"' in html and "Paid — waiting for confirmation" in html
    mined = client.post(f"/i/{created['id']}/demo/mine", data={"csrf_token": csrf},
                        follow_redirects=True)
    assert 'title="Settled">Paid<' in text(mined)
