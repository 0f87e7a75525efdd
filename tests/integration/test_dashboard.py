"""The city dashboard (/city): who may see it, the figures it shows, its CSV, its actions.

Runs on SQLite and PostgreSQL (the `db_url` fixture). The helpers here (people, invoices
inserted with exact times and states) are shared by the other dashboard tests.
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import insert, select

from accounts.models import AuditEntry
from accounts.service import create_user
from tests.conftest import make_merchant
from tests.integration.test_accounts_login import csrf_token

ADMIN = ("admin@busan.example", "city admin pass 1")
AUDITOR = ("auditor@busan.example", "city auditor pass 1")
TREASURY = ("treasury@busan.example", "treasury pass 1")
OWNER = ("owner@cafe.example", "owner pass 12345")
UTC = timezone.utc
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


# -- helpers -------------------------------------------------------------------------------

def with_dashboard(app):
    """Register the dashboard on the test app (create_app may not do it yet); idempotent."""
    from dashboard import init_dashboard

    init_dashboard(app)
    return app


@pytest.fixture
def city(app):
    """The app with the dashboard, two stores and one person of each role."""
    with_dashboard(app)
    cafe, _ = make_merchant(app, name="해운대 카페, \"Sea\" Café", district="haeundae-gu",
                            category="cafe", speed_policy="HighSpeed", zero_conf_limit_krw=50_000)
    market, _ = make_merchant(app, name="Jagalchi Market", district="jung-gu", category="market")
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email=ADMIN[0], password=ADMIN[1], display_name="Admin")
        create_user(s, role="city_auditor", email=AUDITOR[0], password=AUDITOR[1])
        create_user(s, role="treasury", email=TREASURY[0], password=TREASURY[1])
        create_user(s, role="owner", email=OWNER[0], password=OWNER[1], store_id=cafe)
        create_user(s, role="cashier", store_id=cafe, pin="2468", display_name="Minji")
    return {"cafe": cafe, "market": market}


def login(client, email: str, password: str, language: str = "en") -> None:
    """Sign in; the pages then come in `language` (the tests read English text)."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    res = client.post("/login", data={"email": email, "password": password,
                                      "csrf_token": csrf_token(client, "/login")})
    assert res.status_code == 302, res.get_data(as_text=True)[:500]


def login_cashier(client, store_id: str, pin: str = "2468") -> None:
    res = client.post("/pos/login", data={"store": store_id, "pin": pin,
                                          "csrf_token": csrf_token(client, "/pos/login")})
    assert res.status_code == 302


def token_for(client) -> str:
    """A CSRF token of the signed-in session (any page with a form shows one)."""
    return csrf_token(client, "/login")


def kst(y, m, d, hh, mm=0) -> datetime:
    """A Seoul wall-clock time as aware UTC (KST is UTC+9)."""
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - timedelta(hours=9)


_counter = {"n": 0}


def add_invoice(app, store_id: str, created_at: datetime, amount_krw: int | None, *,
                status: str = "Settled", additional: str = "None", due_sats: int | None = None,
                paid_sats: int | None = None, speed: str = "MediumSpeed",
                incident: str | None = None, payments: list[dict] | None = None) -> str:
    """Insert an invoice row as the watcher would have left it (and its payments)."""
    from merchants.service import random_id
    from payments.models import Invoice, Payment
    from payments.service import allocate_index

    gateway = app.extensions["busanpay"]
    key_id = gateway.invoices.ensure_treasury_key()
    due = due_sats if due_sats is not None else (amount_krw or 0) * 100_000_000 // 150_000_000
    paid = paid_sats if paid_sats is not None else (due if status in ("Settled", "Processing") else 0)
    invoice_id = random_id(22)
    with gateway.db.write() as s:
        index = allocate_index(s, key_id)
        address = gateway.invoices.keys.get(s, key_id).address(index)
        s.execute(insert(Invoice.__table__).values(
            id=invoice_id, store_id=store_id, currency="KRW", amount_text=str(amount_krw or 0),
            amount_krw=amount_krw, due_sats=due, rate=Decimal("150000000"),
            rate_raw=Decimal("150000000"), rate_source="fixed", rate_fetched_at=created_at,
            key_id=key_id, key_index=index, address=address, status=status,
            additional_status=additional, speed_policy=speed, payment_tolerance=Decimal("0"),
            zero_conf_limit_krw=50_000, paid_sats=paid, created_at=created_at,
            expires_at=created_at + timedelta(minutes=15),
            monitoring_expires_at=created_at + timedelta(minutes=15, hours=24),
            updated_at=created_at, order_id=None, metadata_json="{}", checkout_json="{}",
            incident=incident, archived=False, version=1))
        for i, p in enumerate(payments or []):
            _counter["n"] += 1
            s.execute(insert(Payment.__table__).values(
                invoice_id=invoice_id, txid=f"{_counter['n']:064x}", vout=i, address=address,
                value_sats=p.get("value", due), state=p.get("state", "seen"),
                block_height=p.get("height"), block_hash=None,
                seen_at=p.get("seen_at", created_at + timedelta(minutes=1)), late=False))
    return invoice_id


def csv_rows(response) -> list[dict]:
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM for Excel"
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def kpi(html: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}">(.*?)</(?:span|p|dd)>', html)
    assert found, f"no KPI {name}"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


# -- access --------------------------------------------------------------------------------

CITY_PAGES = ["/city", "/city/merchants", "/city/exceptions", "/city/exposure",
              "/city/settlement", "/city/audit", "/city?format=csv&table=days"]


def test_a_stranger_asking_for_any_city_page_is_sent_to_the_sign_in_page(client, city):
    for path in CITY_PAGES + [f"/city/merchants/{city['cafe']}"]:
        res = client.get(path)
        assert res.status_code == 302, path
        assert re.match(r"/login\?next=(/|%2F)city", res.headers["Location"]), path


def test_a_cashier_and_a_merchant_owner_get_403_on_every_city_page(app, city):
    owner = app.test_client()
    login(owner, *OWNER)
    cashier = app.test_client()
    login_cashier(cashier, city["cafe"])
    for path in CITY_PAGES + [f"/city/merchants/{city['cafe']}"]:
        assert owner.get(path).status_code == 403, path
        assert cashier.get(path).status_code == 403, path


def _city_rules(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith("city.")]


def _concrete(rule, store_id: str, invoice_id: str) -> str:
    values = {"store_id": store_id, "invoice_id": invoice_id, "_rest": "anything/else"}
    path = rule.rule
    for name in rule.arguments:
        path = path.replace(f"<{name}>", values[name]).replace(f"<path:{name}>", values[name])
    return path


def test_an_auditor_reads_every_page_but_every_change_to_any_city_url_is_refused(app, city, clock):
    invoice = add_invoice(app, city["cafe"], clock() - timedelta(hours=3), 15_000,
                          status="Expired", additional="PaidPartial", paid_sats=4_000)
    auditor = app.test_client()
    login(auditor, *AUDITOR)
    for path in CITY_PAGES + [f"/city/merchants/{city['cafe']}"]:
        assert auditor.get(path).status_code == 200, path
    page = auditor.get("/city/exceptions").get_data(as_text=True)
    assert invoice in page
    assert "Record review" not in page and 'name="outcome"' not in page, "no action for auditors"
    assert 'name="cap_krw"' not in auditor.get("/city/exposure").get_data(as_text=True)
    token = token_for(auditor)
    tried = 0
    for rule in _city_rules(app):
        path = _concrete(rule, city["cafe"], invoice)
        for method in MUTATING:
            res = auditor.open(path, method=method, headers={"X-CSRFToken": token},
                               data={"csrf_token": token, "outcome": "refunded",
                                     "cap_krw": "1", "note": "x"})
            assert res.status_code == 403, (method, path, res.status_code)
            tried += 1
    assert tried >= 12
    with app.extensions["busanpay"].db.read() as s:
        from dashboard.models import CityExceptionReview, CitySetting

        assert s.exec(select(CityExceptionReview)).all() == []
        assert s.exec(select(CitySetting)).all() == []


def test_a_city_admin_may_change_what_an_auditor_may_not(app, city, clock):
    invoice = add_invoice(app, city["cafe"], clock() - timedelta(hours=3), 15_000,
                          status="Expired", additional="PaidLate", paid_sats=10_000)
    admin = app.test_client()
    login(admin, *ADMIN)
    token = token_for(admin)
    res = admin.post(f"/city/exceptions/{invoice}/review",
                     data={"csrf_token": token, "outcome": "refunded", "note": "sent back",
                           "next": "/city/exceptions?state=all"})
    assert res.status_code == 302 and res.headers["Location"] == "/city/exceptions?state=all"
    assert admin.put("/city/merchants", headers={"X-CSRFToken": token}).status_code == 405
    assert admin.get("/city/no-such-page").status_code == 404


# -- figures -------------------------------------------------------------------------------

@pytest.fixture
def figures(app, city):
    """A hand-countable month: Seoul day 2026-11-20 and 2026-11-22 (clock: 11-23 12:00 KST)."""
    cafe, market = city["cafe"], city["market"]
    rows = [
        (cafe, kst(2026, 11, 20, 10), 15_000, "Settled", "None", 10_000),
        (cafe, kst(2026, 11, 20, 11), 4_500, "Settled", "PaidOver", 3_500),
        (cafe, kst(2026, 11, 22, 9), 30_000, "Expired", "None", 0),
        (market, kst(2026, 11, 22, 13), 120_000, "Settled", "None", 80_000),
        (market, kst(2026, 11, 22, 14), 8_000, "Expired", "PaidPartial", 2_000),
        (market, kst(2026, 11, 22, 15), 50_000, "Invalid", "None", 33_334),
    ]
    ids = [add_invoice(app, s, at, amount, status=st, additional=add, paid_sats=paid)
           for s, at, amount, st, add, paid in rows]
    # outside the period asked for below
    add_invoice(app, market, kst(2026, 11, 19, 23, 59), 99_000)
    return ids


def test_the_totals_match_figures_counted_by_hand(app, city, figures):
    admin = app.test_client()
    login(admin, *ADMIN)
    html = admin.get("/city?from=2026-11-20&to=2026-11-23").get_data(as_text=True)
    # settled: 15,000 + 4,500 + 120,000 won; sats 10,000 + 3,500 + 80,000
    assert kpi(html, "won-volume") == "₩139,500"
    assert kpi(html, "btc-volume") == "0.000935 BTC"
    assert kpi(html, "invoices") == "6"
    assert kpi(html, "active-merchants") == "2"
    assert kpi(html, "average-ticket") == "₩46,500"  # 139,500 / 3
    totals = csv_rows(admin.get("/city?from=2026-11-20&to=2026-11-23&format=csv&table=totals"))
    assert totals == [{
        "from": "2026-11-20", "to": "2026-11-23", "active_merchants": "2", "invoices": "6",
        "settled_invoices": "3", "settled_krw": "139500", "settled_btc_sats": "93500",
        "average_ticket_krw": "46500", "processing_invoices": "0", "processing_krw": "0",
        "new_invoices": "0", "expired_invoices": "2", "invalid_invoices": "1",
        "paid_partial": "1", "paid_over": "1", "paid_late": "0", "marked": "0"}]
    districts = {r["district"]: r for r in csv_rows(admin.get(
        "/city?from=2026-11-20&to=2026-11-23&format=csv&table=districts"))}
    assert len(districts) == 16
    assert districts["haeundae-gu"]["settled_krw"] == "19500"
    assert districts["haeundae-gu"]["district_ko"] == "해운대구"
    assert districts["jung-gu"]["settled_krw"] == "120000"
    assert districts["saha-gu"]["invoices"] == "0"
    categories = {r["category"]: r for r in csv_rows(admin.get(
        "/city?from=2026-11-20&to=2026-11-23&format=csv&table=categories"))}
    assert categories["cafe"]["invoices"] == "3" and categories["market"]["invoices"] == "3"
    assert categories["market"]["active_merchants"] == "1"
    merchants = csv_rows(admin.get("/city/merchants?from=2026-11-20&to=2026-11-23&format=csv"))
    assert [m["settled_krw"] for m in merchants] == ["120000", "19500"]  # by volume


def test_an_invoice_at_23_30_seoul_time_counts_on_its_day_and_one_at_00_30_on_the_next(app, city):
    late = add_invoice(app, city["cafe"], kst(2026, 11, 21, 23, 30), 10_000)
    early = add_invoice(app, city["cafe"], kst(2026, 11, 22, 0, 30), 20_000)
    assert kst(2026, 11, 21, 23, 30).date() == kst(2026, 11, 22, 0, 30).date(), \
        "both on the same UTC day: only Seoul time tells them apart"
    admin = app.test_client()
    login(admin, *ADMIN)
    days = {r["day"]: r for r in csv_rows(admin.get(
        "/city?from=2026-11-21&to=2026-11-22&format=csv&table=days"))}
    assert days["2026-11-21"]["settled_krw"] == "10000"
    assert days["2026-11-22"]["settled_krw"] == "20000"
    one_day = admin.get("/city?from=2026-11-22&to=2026-11-22").get_data(as_text=True)
    assert kpi(one_day, "won-volume") == "₩20,000"
    store_page = admin.get(f"/city/merchants/{city['cafe']}?from=2026-11-21&to=2026-11-21")
    text = store_page.get_data(as_text=True)
    assert late in text and early not in text
    assert "2026-11-21 23:30" in text, "times shown in Asia/Seoul"


def test_the_csv_export_is_excel_ready_escaped_and_keeps_korean_names(app, city, clock):
    add_invoice(app, city["cafe"], clock() - timedelta(hours=2), 15_000)
    gateway = app.extensions["busanpay"]
    from merchants.service import create_store

    with gateway.db.write() as s:
        create_store(s, name="=HYPERLINK(\"x\")\n둘째 줄", district="saha-gu", category="culture")
    admin = app.test_client()
    login(admin, *ADMIN)
    res = admin.get("/city/merchants?format=csv&sort=name&dir=asc")
    assert res.status_code == 200
    assert res.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert res.headers["Content-Disposition"].startswith('attachment; filename="busanpay-city-merchants-')
    body = res.get_data()
    assert body.startswith("\ufeffstore_id,name,district,district_ko,district_en,".encode())
    text = body.decode("utf-8")
    assert "\r\n" in text and text.endswith("\r\n")
    # a name with a comma and quotes is quoted, quotes doubled; Korean intact
    assert ',"해운대 카페, ""Sea"" Café",haeundae-gu,해운대구,Haeundae-gu,cafe,false,1,1,15000,' in text
    # a cell that would run as a spreadsheet formula is defused; its newline stays quoted
    assert ',"\'=HYPERLINK(""x"")\n둘째 줄",saha-gu,사하구,Saha-gu,culture,false,0,' in text
    rows = csv_rows(res)
    assert [r["name"] for r in rows] == ["'=HYPERLINK(\"x\")\n둘째 줄", "Jagalchi Market",
                                         "해운대 카페, \"Sea\" Café"]


def test_every_table_downloads_as_csv(app, city, figures):
    admin = app.test_client()
    login(admin, *ADMIN)
    for path in ["/city?format=csv&table=days", "/city?format=csv&table=districts",
                 "/city?format=csv&table=categories", "/city?format=csv&table=totals",
                 "/city?format=csv&table=merchants", "/city/merchants?format=csv",
                 f"/city/merchants/{city['cafe']}?format=csv",
                 f"/city/merchants/{city['cafe']}?format=csv&table=days",
                 "/city/exceptions?format=csv", "/city/exposure?format=csv",
                 "/city/settlement?format=csv", "/city/settlement?format=csv&table=fx",
                 f"/city/settlement?format=csv&table=payouts&store={city['cafe']}",
                 "/city/settlement?format=csv&table=refunds", "/city/audit?format=csv"]:
        res = admin.get(path)
        assert res.status_code == 200, path
        assert res.mimetype == "text/csv", path
        assert res.get_data().startswith(b"\xef\xbb\xbf"), path


def test_a_drill_down_shows_that_merchant_and_no_other(app, city, figures):
    from payments.models import Invoice

    with app.extensions["busanpay"].db.read() as s:
        owner_of = dict(s.execute(select(Invoice.id, Invoice.store_id)).all())
    admin = app.test_client()
    login(admin, *ADMIN)
    page = admin.get(f"/city/merchants/{city['cafe']}?from=2026-11-01&to=2026-11-23")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for invoice_id, store_id in owner_of.items():
        assert (invoice_id in html) == (store_id == city["cafe"]), invoice_id
    assert "Jagalchi Market" not in html
    rows = csv_rows(admin.get(f"/city/merchants/{city['cafe']}?from=2026-11-01&to=2026-11-23&format=csv"))
    assert sorted(r["invoice_id"] for r in rows) == sorted(
        i for i, s in owner_of.items() if s == city["cafe"])
    assert kpi(html, "won-volume") == "₩19,500"
    assert admin.get("/city/merchants/not-a-store").status_code == 404


def test_the_merchant_table_searches_sorts_and_pages(app, city, figures):
    from merchants.service import create_store

    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        for i in range(30):
            create_store(s, name=f"Gijang Stall {i:02d}", district="gijang-gun", category="market")
    admin = app.test_client()
    login(admin, *ADMIN)
    html = admin.get("/city/merchants?q=gijang&sort=name&dir=asc").get_data(as_text=True)
    assert "30 merchants" in html
    assert "Gijang Stall 00" in html and "Gijang Stall 24" in html and "Gijang Stall 25" not in html
    assert 'aria-sort="ascending"' in html
    second = admin.get("/city/merchants?q=gijang&sort=name&dir=asc&page=2").get_data(as_text=True)
    assert "Gijang Stall 25" in second and "Gijang Stall 24" not in second
    korean = admin.get("/city/merchants?q=해운대").get_data(as_text=True)
    assert "1 merchant<" in korean
    by_district = admin.get("/city/merchants?district=jung-gu").get_data(as_text=True)
    assert "Jagalchi Market" in by_district and "Gijang Stall" not in by_district


def test_the_audit_log_lists_entries_and_filters_by_actor_action_and_store(app, city, clock):
    invoice = add_invoice(app, city["cafe"], clock() - timedelta(hours=3), 15_000,
                          status="Expired", additional="PaidPartial", paid_sats=4_000)
    admin = app.test_client()
    login(admin, *ADMIN)
    admin.post(f"/city/exceptions/{invoice}/review",
               data={"csrf_token": token_for(admin), "outcome": "refunded", "note": "환불 완료"})
    owner = app.test_client()
    login(owner, *OWNER)
    html = admin.get("/city/audit").get_data(as_text=True)
    assert "city.exception.reviewed" in html and "login" in html and ADMIN[0] in html
    only_reviews = admin.get("/city/audit?action=city.exception.reviewed").get_data(as_text=True)
    assert "1 entry<" in only_reviews and "환불 완료" in only_reviews
    by_actor = csv_rows(admin.get(f"/city/audit?actor={OWNER[0]}&format=csv"))
    assert [(r["action"], r["actor_email"]) for r in by_actor] == [("login", OWNER[0])]
    by_store = csv_rows(admin.get(f"/city/audit?store={city['cafe']}&format=csv"))
    assert {r["action"] for r in by_store} == {"login", "city.exception.reviewed"}
    assert all(r["store_id"] == city["cafe"] for r in by_store)
    reviewed = next(r for r in by_store if r["action"] == "city.exception.reviewed")
    assert reviewed["details"] == "kind=partial, outcome=refunded, note=환불 완료"
    assert reviewed["actor_role"] == "city_admin" and reviewed["target"] == invoice


def test_the_exceptions_queue_shows_each_kind_with_its_action_and_hides_reviewed_ones(app, city, clock):
    now = clock()
    ids = {
        "partial": add_invoice(app, city["cafe"], now - timedelta(hours=5), 9_000,
                               status="Expired", additional="PaidPartial", paid_sats=1_000),
        "late": add_invoice(app, city["cafe"], now - timedelta(hours=4), 9_000,
                            status="Expired", additional="PaidLate", paid_sats=6_000),
        "overpaid": add_invoice(app, city["market"], now - timedelta(hours=3), 9_000,
                                additional="PaidOver", paid_sats=7_000),
        "invalid": add_invoice(app, city["market"], now - timedelta(hours=2), 9_000,
                               status="Invalid", paid_sats=6_000),
        "deep-reorg": add_invoice(app, city["market"], now - timedelta(days=2), 9_000,
                                  incident="deep-reorg"),
    }
    in_flight = add_invoice(app, city["cafe"], now - timedelta(minutes=2), 9_000, status="New",
                            additional="PaidPartial", paid_sats=100)
    fine = add_invoice(app, city["cafe"], now - timedelta(hours=1), 9_000)
    admin = app.test_client()
    login(admin, *ADMIN)
    rows = csv_rows(admin.get("/city/exceptions?format=csv"))
    assert {r["invoice_id"]: r["kind"] for r in rows} == {v: k for k, v in ids.items()}
    assert [r["invoice_id"] for r in rows][0] == ids["invalid"], "newest first"
    assert all(r["action"] for r in rows)
    html = admin.get("/city/exceptions").get_data(as_text=True)
    assert in_flight not in html and fine not in html
    assert "refund claim" in html and "treasury reconciles" in html
    admin.post(f"/city/exceptions/{ids['late']}/review",
               data={"csrf_token": token_for(admin), "outcome": "accepted"})
    still_open = {r["invoice_id"] for r in csv_rows(admin.get("/city/exceptions?format=csv"))}
    assert ids["late"] not in still_open and len(still_open) == 4
    reviewed = csv_rows(admin.get("/city/exceptions?state=reviewed&format=csv"))
    assert [(r["invoice_id"], r["review_outcome"]) for r in reviewed] == [(ids["late"], "accepted")]
    only = csv_rows(admin.get("/city/exceptions?kind=deep-reorg&format=csv"))
    assert [r["invoice_id"] for r in only] == [ids["deep-reorg"]]
    overview = admin.get("/city").get_data(as_text=True)
    assert "Paid partially <strong>1</strong>" in overview


def test_a_partly_paid_invoice_marked_settled_by_its_merchant_stays_in_the_partial_exceptions(
        app, city, clock):
    gateway = app.extensions["busanpay"]
    now = clock()
    partial = add_invoice(app, city["cafe"], now - timedelta(hours=5), 9_000, status="Expired",
                          additional="PaidPartial", paid_sats=1_000)
    late = add_invoice(app, city["cafe"], now - timedelta(hours=4), 9_000, status="Expired",
                       additional="PaidLate", paid_sats=6_000)
    unpaid = add_invoice(app, city["cafe"], now - timedelta(hours=3), 9_000, status="Expired")
    for invoice_id in (partial, late, unpaid):
        marked = gateway.invoices.mark_status(city["cafe"], invoice_id, "Settled")
        assert (marked.status, marked.additional_status, marked.chain_status) == \
            ("Settled", "Marked", "Expired")
    admin = app.test_client()
    login(admin, *ADMIN)
    rows = csv_rows(admin.get("/city/exceptions?format=csv"))
    assert {r["invoice_id"]: r["kind"] for r in rows} == {partial: "partial", late: "late"}
    only = csv_rows(admin.get("/city/exceptions?kind=partial&format=csv"))
    assert [r["invoice_id"] for r in only] == [partial]
    overview = admin.get("/city").get_data(as_text=True)
    assert "Paid partially <strong>1</strong>" in overview and "Paid late <strong>1</strong>" in overview


def test_open_zero_conf_exposure_sums_unconfirmed_high_speed_invoices_against_the_cap(app, city, clock):
    now = clock()
    processing = add_invoice(app, city["cafe"], now - timedelta(minutes=5), 80_000,
                             status="Processing", speed="HighSpeed", payments=[{}])
    zero_conf = add_invoice(app, city["cafe"], now - timedelta(minutes=4), 20_000,
                            speed="HighSpeed", payments=[{}])
    add_invoice(app, city["cafe"], now - timedelta(minutes=30), 30_000, speed="HighSpeed",
                payments=[{"height": 120}])                        # confirmed: no risk
    add_invoice(app, city["market"], now - timedelta(minutes=3), 70_000, status="Processing",
                payments=[{}])                                     # MediumSpeed: not 0-conf
    add_invoice(app, city["cafe"], now - timedelta(minutes=3), 40_000, status="Processing",
                speed="HighSpeed", payments=[{"state": "replaced"}, {"height": 121}])
    admin = app.test_client()
    login(admin, *ADMIN)
    html = admin.get("/city/exposure").get_data(as_text=True)
    assert kpi(html, "exposure") == "₩100,000"
    assert processing in html and zero_conf in html
    assert "₩5,000,000" in html  # the default city cap
    res = admin.post("/city/exposure/cap", data={"csrf_token": token_for(admin), "cap_krw": "90,000"})
    assert res.status_code == 302
    html = admin.get("/city/exposure").get_data(as_text=True)
    assert 'class="big bad"' in html and "Over the cap" in html
    rows = csv_rows(admin.get("/city/exposure?format=csv"))
    assert sorted(int(r["amount_krw"]) for r in rows) == [20_000, 80_000]
    with app.extensions["busanpay"].db.read() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "city.exposure_cap.set")).one()
    assert json.loads(entry.details_json) == {"before": 5_000_000, "after": 90_000}


def test_a_treasury_operator_reviews_but_cannot_set_the_cap(app, city, clock):
    invoice = add_invoice(app, city["cafe"], clock() - timedelta(hours=3), 15_000,
                          status="Invalid", paid_sats=10_000)
    treasury = app.test_client()
    login(treasury, *TREASURY)
    token = token_for(treasury)
    assert treasury.post(f"/city/exceptions/{invoice}/review",
                         data={"csrf_token": token, "outcome": "refunded"}).status_code == 302
    assert treasury.post("/city/exposure/cap",
                         data={"csrf_token": token, "cap_krw": "1"}).status_code == 403


def test_panels_of_packages_not_installed_say_so_instead_of_showing_numbers(app, city, monkeypatch):
    from dashboard import queries

    monkeypatch.setattr(queries, "available", lambda session, *tables: False)
    admin = app.test_client()
    login(admin, *ADMIN)
    html = admin.get("/city").get_data(as_text=True)
    assert html.count("Not available yet") >= 3
    assert admin.get("/city/settlement?format=csv").status_code == 404


def test_the_dashboard_speaks_korean_by_default_with_district_names_in_hangul(app, city, figures):
    admin = app.test_client()
    login(admin, *ADMIN, language="")
    html = admin.get("/city?from=2026-11-20&to=2026-11-23").get_data(as_text=True)
    assert '<html lang="ko">' in html
    assert "시 대시보드" in html and "원화 거래액" in html and "해운대구" in html
    assert "1.2억" not in html and "12만" in html, "axis labels in 만/억"
    for path in CITY_PAGES + [f"/city/merchants/{city['cafe']}"]:
        assert admin.get(path).status_code == 200, path


def test_pages_are_served_with_a_strict_content_security_policy(app, city):
    admin = app.test_client()
    login(admin, *ADMIN)
    res = admin.get("/city")
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    assert res.headers["Cache-Control"] == "no-store"
    assert "style=" not in res.get_data(as_text=True), "no inline styles (CSP)"


# -- the rollup ----------------------------------------------------------------------------

def test_the_rollup_stays_equal_to_a_fresh_count_through_inserts_updates_and_deletes(app, city, clock):
    import random

    from dashboard.rollup import fold, rebuild, verify
    from payments.models import Invoice

    gateway = app.extensions["busanpay"]
    rng = random.Random(7)
    ids = [add_invoice(app, rng.choice([city["cafe"], city["market"]]),
                       clock() - timedelta(hours=rng.randint(0, 24 * 40)), rng.randint(1, 90) * 1000,
                       status=rng.choice(["New", "Settled", "Expired"])) for _ in range(40)]
    with gateway.db.read() as s:
        assert verify(s) == []
    with gateway.db.write() as s:
        fold(s)
    changes = [("Processing", "None"), ("Settled", "PaidOver"), ("Expired", "PaidLate"),
               ("Invalid", "Marked"), ("Settled", "None")]
    for invoice_id in rng.sample(ids, 25):
        status, additional = rng.choice(changes)
        with gateway.db.write() as s:
            inv = s.get(Invoice, invoice_id)
            inv.status, inv.additional_status = status, additional
            inv.paid_sats = rng.randint(0, 90_000)
            if rng.random() < 0.2:
                inv.created_at = inv.created_at - timedelta(days=3)   # moves to another day
            if rng.random() < 0.2:
                inv.store_id = city["market"]                       # moves to another store
            inv.version += 1
            s.add(inv)
        if rng.random() < 0.3:
            with gateway.db.write() as s:
                fold(s)
    with gateway.db.write() as s:
        s.execute(Invoice.__table__.delete().where(Invoice.id.in_(ids[:5])))
    with gateway.db.read() as s:
        assert verify(s) == []
    with gateway.db.write() as s:
        fold(s)
        assert fold(s) == 0, "nothing left to fold"
    with gateway.db.read() as s:
        assert verify(s) == []
    with gateway.db.write() as s:
        first = rebuild(s)
    with gateway.db.write() as s:
        assert rebuild(s) == first, "rebuilding twice gives the same rollup"
    with gateway.db.read() as s:
        assert verify(s) == []


def test_a_metadata_only_change_writes_nothing_to_the_rollup_log(app, city, clock):
    from dashboard.rollup import fold, pending_deltas
    from payments.models import Invoice

    gateway = app.extensions["busanpay"]
    invoice_id = add_invoice(app, city["cafe"], clock(), 5_000, status="New")
    with gateway.db.write() as s:
        fold(s)
    with gateway.db.write() as s:
        inv = s.get(Invoice, invoice_id)
        inv.metadata_json, inv.version = '{"orderId": "A-1"}', inv.version + 1
        s.add(inv)
    with gateway.db.read() as s:
        assert pending_deltas(s) == 0


def test_folding_while_invoices_are_created_and_changed_in_parallel_loses_nothing(app, city, clock):
    import threading

    from dashboard.rollup import fold, verify
    from payments.models import Invoice

    gateway = app.extensions["busanpay"]
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            for i in range(15):
                invoice_id = add_invoice(app, city["cafe"] if (n + i) % 2 else city["market"],
                                         clock() - timedelta(hours=i * 7), 1_000 * (i + 1),
                                         status="New")
                with gateway.db.write() as s:
                    inv = s.get(Invoice, invoice_id)
                    inv.status = "Settled" if i % 3 else "Expired"
                    inv.paid_sats = inv.due_sats if i % 3 else 0
                    s.add(inv)
        except BaseException as err:  # reported below
            errors.append(err)

    def folder() -> None:
        try:
            while not done.is_set():
                with gateway.db.write() as s:
                    fold(s)
        except BaseException as err:
            errors.append(err)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    folding = threading.Thread(target=folder)
    folding.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    folding.join()
    assert not errors, errors
    with gateway.db.read() as s:
        assert verify(s) == []


def test_the_rollup_command_folds_rebuilds_and_verifies(app, city, clock):
    from dashboard.cli import register_dashboard_cli

    register_dashboard_cli(app)
    add_invoice(app, city["cafe"], clock() - timedelta(days=1), 12_000)
    runner = app.test_cli_runner()
    folded = runner.invoke(args=["city", "rollup"])
    assert folded.exit_code == 0 and json.loads(folded.output)["folded"] == 1
    rebuilt = runner.invoke(args=["city", "rollup", "--rebuild", "--verify"])
    assert rebuilt.exit_code == 0, rebuilt.output
    out = json.loads(rebuilt.output)
    assert out["storeDays"] == 1 and out["differences"] == 0
