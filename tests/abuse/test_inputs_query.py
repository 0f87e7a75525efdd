"""Abuse: query parameters, dates, NUL bytes and methods (issue 9 finding 10, issue 11).

Integer parameters take ASCII digits only (`²` passes str.isdigit), dates and months stay in
a range the calendar arithmetic can handle, a NUL byte never reaches PostgreSQL, and a 405
says which methods are allowed.
"""
from __future__ import annotations

import pytest

from accounts.service import create_user
from tests.abuse.test_inputs_json import shop, snapshot  # noqa: F401 (fixture)
from tests.conftest import auth
from tests.integration.test_pos import (CASHIER_PIN, form_token, sign_in_cashier,
                                        sign_in_with_email)

NOT_COUNTS = ["²", "¹⁰", "١", "１", "-1", "+1", " 1", "1 ", "1e3", "0x1", "1_0", "1.0", "٣٠",
              "9" * 30]
OWNER, ADMIN = ("owner@cafe.kr", "correct horse 1"), ("admin@busan.go.kr", "city admin pass 1")


@pytest.fixture
def people(app, shop):
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email=OWNER[0], password=OWNER[1], store_id=shop["store"])
        create_user(s, role="city_admin", email=ADMIN[0], password=ADMIN[1])
    return shop


# -- integer query parameters ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["skip", "take", "startDate", "endDate"])
def test_invoice_list_integers_take_ascii_digits_only(client, shop, name):
    url = f"/api/v1/stores/{shop['store']}/invoices"
    for raw in NOT_COUNTS:
        res = client.get(url, query_string={name: raw}, headers=auth(shop["token"]))
        assert res.status_code == 422, (name, raw, res.get_data(as_text=True))
        assert [e["path"] for e in res.get_json()] == [name]
    assert client.get(url, query_string={name: "1"}, headers=auth(shop["token"])).status_code == 200


def test_webhook_delivery_count_takes_ascii_digits_only(client, shop):
    url = f"/api/v1/stores/{shop['store']}/webhooks/{shop['webhook']}/deliveries"
    for raw in NOT_COUNTS:
        res = client.get(url, query_string={"count": raw}, headers=auth(shop["token"]))
        assert res.status_code == 422, (raw, res.get_data(as_text=True))
    assert client.get(url, query_string={"count": "5"}, headers=auth(shop["token"])).status_code == 200


def test_a_dashboard_page_number_takes_ascii_digits_only(client, people):
    sign_in_with_email(client, *ADMIN)
    for path in ("/city/merchants", "/city/exceptions", "/city/settlement", "/city/audit"):
        for raw in ("²", "١", "１", "-1", "1e3"):
            res = client.get(path, query_string={"page": raw})
            assert res.status_code == 400, (path, raw, res.status_code)
            assert "page" in res.get_data(as_text=True)
        assert client.get(path, query_string={"page": "2"}).status_code == 200


def test_the_exposure_cap_form_takes_ascii_digits_only(app, client, people):
    from dashboard.queries import exposure_cap

    sign_in_with_email(client, *ADMIN)
    with app.extensions["busanpay"].db.read() as s:
        before = exposure_cap(s)
    for raw in ("²", "١٠٠٠", "１０００", "1e6"):
        res = client.post("/city/exposure/cap", data={"cap_krw": raw,
                                                      "csrf_token": form_token(client, "/city/exposure")})
        assert res.status_code in (302, 400), (raw, res.status_code)
        with app.extensions["busanpay"].db.read() as s:
            assert exposure_cap(s) == before, raw


# -- dates and months -----------------------------------------------------------------------

@pytest.mark.parametrize("month", ["9999-12", "0001-01", "10000-01", "2026-13", "2026-00", "２０２６-１１",
                                   "٢٠٢٦-١١", "2026-1²", "2026", "garbage"])
def test_a_payouts_month_out_of_range_or_not_a_month_is_400(client, people, month):
    sign_in_with_email(client, *OWNER)
    res = client.get("/merchant/payouts", query_string={"month": month})
    assert res.status_code == 400, (month, res.status_code)
    assert "YYYY-MM" in res.get_data(as_text=True)
    assert client.get("/merchant/payouts", query_string={"month": "2026-11"}).status_code == 200


@pytest.mark.parametrize("path", ["/merchant/statements/9999-12.csv", "/merchant/statements/0001-01.csv",
                                  "/merchant/statements/9999-12-31.csv", "/merchant/statements/0001-01-01.csv",
                                  "/merchant/statements/2026-13.csv", "/merchant/statements/2026-02-30.csv",
                                  "/merchant/statements/٢٠٢٦-١١.csv", "/merchant/statements/99999999999999999999-01.csv"])
def test_a_statement_for_a_month_or_day_out_of_range_is_404(client, people, path):
    sign_in_with_email(client, *OWNER)
    assert client.get(path).status_code == 404, path
    assert client.get("/merchant/statements/2026-11.csv").status_code == 200


CITY_PERIOD_PAGES = ["/city", "/city/merchants", "/city/settlement", "/city/audit"]
BAD_PERIODS = [{"preset": "custom", "from": "0001-01-01", "to": "9999-12-31"},
               {"from": "9999-12-31"}, {"to": "0001-01-01"}, {"from": "0001-01-01"},
               {"to": "9999-12-31"}, {"from": "2026-W47-1"}, {"from": "20261123"},
               {"from": "２０２６-１１-２３"}, {"to": "2026-02-30"}]


def test_a_city_period_out_of_range_or_not_a_date_is_400_on_every_page(client, people):
    sign_in_with_email(client, *ADMIN)
    pages = CITY_PERIOD_PAGES + [f"/city/merchants/{people['store']}"]
    for path in pages:
        for period in BAD_PERIODS:
            for extra in ({}, {"format": "csv"}):
                res = client.get(path, query_string={**period, **extra})
                assert res.status_code == 400, (path, period, extra, res.status_code)
                assert "YYYY-MM-DD" in res.get_data(as_text=True)
        res = client.get(path, query_string={"from": "2026-11-01", "to": "2026-11-23"})
        assert res.status_code == 200, path


# -- NUL bytes (PostgreSQL refuses them in text) ---------------------------------------------

def test_a_nul_byte_in_the_login_email_or_the_pos_store_is_400(app, client, people):
    before = snapshot(app)
    res = client.post("/login", data={"email": "owner@cafe.kr\x00", "password": OWNER[1],
                                      "csrf_token": form_token(client, "/login")})
    assert res.status_code == 400, res.status_code
    assert "NUL" in res.get_data(as_text=True)
    res = client.post("/pos/login", data={"store": people["store"] + "\x00", "pin": CASHIER_PIN,
                                          "csrf_token": form_token(client, "/pos/login")})
    assert res.status_code == 400
    res = client.post("/pos/login", data={"store": people["store"], "pin": "24\x0068",
                                          "csrf_token": form_token(client, "/pos/login")})
    assert res.status_code == 400
    assert snapshot(app) == before
    sign_in_cashier(client, people["store"])  # the real cashier is not locked out by any of it


def test_a_nul_byte_in_any_path_is_400_or_404_and_never_a_server_error(app, client, people):
    """Every route, with each of its path variables replaced by a value holding a NUL."""
    sign_in_with_email(client, *ADMIN)
    for rule in app.url_map.iter_rules():
        if not rule.arguments or "GET" not in (rule.methods or ()):
            continue
        url = rule.rule
        for name in rule.arguments:
            for converter in (f"<{name}>", f"<path:{name}>", f"<string:{name}>"):
                url = url.replace(converter, "ab%00cd")
        if "<" in url:
            continue  # int and any converters: a NUL cannot match them
        res = client.get(url, headers=auth(people["token"]))
        assert res.status_code in (400, 404), (rule.rule, url, res.status_code)


def test_a_nul_byte_in_the_checkout_path_is_a_clean_400(client, people):
    for url in ("/i/%00", f"/i/{people['invoice']}%00", "/i/%00/status.json", "/i/%00/qr.svg",
                "/api/v1/invoices/%00", f"/api/v1/stores/{people['store']}%00/invoices"):
        res = client.get(url, headers=auth(people["token"]))
        assert res.status_code == 400, (url, res.status_code)
        assert "NUL" in res.get_data(as_text=True)


def test_a_nul_byte_in_a_query_parameter_a_form_field_or_a_header_is_400(app, client, people):
    before = snapshot(app)
    store, token = people["store"], people["token"]
    res = client.get(f"/api/v1/stores/{store}/invoices?orderId=a%00b", headers=auth(token))
    assert res.status_code == 400 and res.get_json()["code"] == "bad-request"
    assert "NUL" in res.get_json()["message"]
    res = client.post(f"/api/v1/stores/{store}/invoices", json={"amount": "1000"},
                      headers={**auth(token), "Idempotency-Key": "k\x00"})
    assert res.status_code == 400
    sign_in_with_email(client, *ADMIN)
    assert client.get("/city/audit?actor=a%00").status_code == 400
    assert client.get("/city/merchants?q=%00").status_code == 400
    assert snapshot(app) == before


# -- 405 keeps its Allow header ---------------------------------------------------------------

def test_a_405_on_the_api_says_which_methods_are_allowed(client, shop):
    res = client.delete(f"/api/v1/stores/{shop['store']}/invoices", headers=auth(shop["token"]))
    assert res.status_code == 405 and res.get_json()["code"] == "method-not-allowed"
    assert {m.strip() for m in res.headers["Allow"].split(",")} >= {"GET", "POST"}
    res = client.patch(f"/api/v1/invoices/{shop['invoice']}", headers=auth(shop["token"]))
    assert res.status_code == 405
    assert {"GET", "PUT", "DELETE"} <= {m.strip() for m in res.headers["Allow"].split(",")}


def test_a_405_on_a_page_says_which_methods_are_allowed(client, people):
    res = client.put("/login")
    assert res.status_code == 405 and "POST" in res.headers["Allow"]
    sign_in_with_email(client, *ADMIN)
    csrf = form_token(client, "/city/exposure")
    for path in ("/city/", "/city/nowhere"):
        res = client.delete(path, headers={"X-CSRFToken": csrf})
        assert res.status_code == 405, path
        assert "GET" in res.headers["Allow"], path
