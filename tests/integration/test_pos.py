"""The cashier's POS at /pos: roles, CSRF, charging, tips, today's totals, cancel, receipts."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from sqlmodel import func, select

from accounts.models import AuditEntry
from accounts.service import create_user
from payments.models import Invoice, Payment
from pos.sales import tip_for
from tests.conftest import make_merchant

CASHIER_PIN, OTHER_PIN, OWNER_PW, ADMIN_PW = "2468", "1357", "correct horse 1", "city admin pass 1"


@pytest.fixture
def app(app):
    """The POS and back office blueprints on the test app (until app.py registers them)."""
    from backoffice import init_backoffice
    from pos import init_pos

    init_pos(app)
    init_backoffice(app)
    return app


def form_token(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1)


def page_token(client) -> str:
    html = client.get("/pos").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def sign_in_cashier(client, store_id: str, pin: str = CASHIER_PIN) -> str:
    client.set_cookie("lang", "en")  # the tests read English; the default is Korean
    res = client.post("/pos/login", data={"store": store_id, "pin": pin,
                                          "csrf_token": form_token(client, "/pos/login")})
    assert res.status_code == 302, res.get_data(as_text=True)
    return page_token(client)


def sign_in_with_email(client, email: str, password: str) -> None:
    client.set_cookie("lang", "en")
    res = client.post("/login", data={"email": email, "password": password,
                                      "csrf_token": form_token(client, "/login")})
    assert res.status_code == 302


@pytest.fixture
def shop(app):
    """Two stores: ours (two cashiers and an owner) and a neighbour with an invoice of its own."""
    store_id, token = make_merchant(app, name="Haeundae Coffee")
    other_id, other_token = make_merchant(app, name="Jagalchi Fish Stall")
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        minji = create_user(s, role="cashier", store_id=store_id, pin=CASHIER_PIN, display_name="Minji")
        jun = create_user(s, role="cashier", store_id=store_id, pin=OTHER_PIN, display_name="Jun")
        create_user(s, role="owner", email="owner@cafe.kr", password=OWNER_PW, store_id=store_id)
        create_user(s, role="cashier", store_id=other_id, pin="8642", display_name="Other")
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
        ids = {"minji": minji.id, "jun": jun.id}
    res = app.test_client().post(f"/api/v1/stores/{other_id}/invoices",
                                 json={"amount": "9000", "currency": "KRW"},
                                 headers={"Authorization": f"token {other_token}"})
    assert res.status_code == 200
    return {"store": store_id, "token": token, "other": other_id,
            "other_invoice": res.get_json()["id"], **ids}


def charge(client, csrf: str, amount="15000", tip=0, memo="", **headers):
    return client.post("/pos/charge", json={"amount": amount, "tipPercent": tip, "memo": memo},
                       headers={"X-CSRFToken": csrf, **headers})


def invoice_count(app) -> int:
    with app.extensions["busanpay"].db.read() as s:
        return s.exec(select(func.count()).select_from(Invoice)).one()


PAGES = ["/pos", "/pos/today", "/pos/invoices", "/pos/session.json",
         "/pos/invoices/{inv}.json", "/pos/receipts/{inv}", "/pos/receipts/{inv}/qr.svg",
         "/pos/invoices/{inv}/qr/100.svg"]
POSTS = ["/pos/charge", "/pos/invoices/{inv}/cancel"]


def test_a_stranger_asking_for_any_pos_route_is_sent_to_the_pos_login(client, shop):
    inv = shop["other_invoice"]
    for path in PAGES + POSTS:
        url = path.format(inv=inv)
        res = client.post(url, json={}) if path in POSTS else client.get(url)
        if path in POSTS and res.status_code == 400:
            continue  # CSRF answers first for a stranger's POST: refused either way
        assert res.status_code == 302, url
        assert res.headers["Location"].startswith("/pos/login"), url


def test_a_strangers_post_with_a_valid_token_is_still_sent_to_the_pos_login(client, shop):
    token = form_token(client, "/pos/login")  # a real session token, but nobody signed in
    res = client.post("/pos/charge", json={"amount": "15000"}, headers={"X-CSRFToken": token})
    assert res.status_code == 302 and res.headers["Location"].startswith("/pos/login")
    assert invoice_count(client.application) == 1


def test_city_staff_get_403_on_every_pos_route(client, shop):
    sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
    token = form_token(client, "/login")
    for path in PAGES + POSTS:
        url = path.format(inv=shop["other_invoice"])
        res = client.post(url, json={}, headers={"X-CSRFToken": token}) if path in POSTS \
            else client.get(url)
        assert res.status_code == 403, url


def test_an_owner_may_use_the_pos_of_their_own_store(client, shop):
    sign_in_with_email(client, "owner@cafe.kr", OWNER_PW)
    res = charge(client, page_token(client), "8000")
    assert res.status_code == 201 and res.get_json()["amountKrw"] == "8000"


def test_another_stores_invoice_and_receipt_are_not_found(client, shop):
    sign_in_cashier(client, shop["store"])
    inv = shop["other_invoice"]
    for url in (f"/pos/invoices/{inv}.json", f"/pos/receipts/{inv}", f"/pos/receipts/{inv}/qr.svg",
                f"/pos/invoices/{inv}/qr/100.svg"):
        assert client.get(url).status_code == 404, url
    res = client.post(f"/pos/invoices/{inv}/cancel", headers={"X-CSRFToken": page_token(client)})
    assert res.status_code == 404
    with client.application.extensions["busanpay"].db.read() as s:
        assert s.get(Invoice, inv).status == "New"


def test_every_pos_post_needs_the_csrf_token_and_nothing_is_written(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    created = charge(client, csrf).get_json()["id"]
    before = invoice_count(app)
    res = client.post("/pos/charge", json={"amount": "15000"})
    assert res.status_code == 400 and res.get_json()["code"] == "csrf"
    res = client.post("/pos/charge", json={"amount": "15000"}, headers={"X-CSRFToken": "forged"})
    assert res.status_code == 400
    res = client.post(f"/pos/invoices/{created}/cancel")
    assert res.status_code == 400
    assert invoice_count(app) == before
    with app.extensions["busanpay"].db.read() as s:
        assert s.get(Invoice, created).status == "New"


def test_a_cashier_charges_15000_won_and_gets_an_invoice_with_its_qr_and_live_status(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    res = charge(client, csrf, "15000", memo="2 × americano")
    assert res.status_code == 201
    sale = res.get_json()
    # 15,000 won at 150,000,000 won/BTC is 0.0001 BTC (10,000 sats, rounded up).
    assert (sale["amountKrw"], sale["amountText"], sale["dueSats"], sale["dueBtc"]) == \
        ("15000", "₩15,000", 10000, "0.0001")
    assert sale["state"] == "new" and sale["cancellable"] and sale["memo"] == "2 × americano"
    with app.extensions["busanpay"].db.read() as s:
        invoice = s.get(Invoice, sale["id"])
    assert invoice.store_id == shop["store"] and invoice.amount_krw == 15000
    pos_data = json.loads(invoice.metadata_json)["posData"]
    assert pos_data["cashierId"] == shop["minji"] and pos_data["cashier"] == "Minji"
    assert client.get(sale["qrUrl"]).mimetype == "image/svg+xml"
    status = client.get(sale["statusUrl"])
    assert status.status_code == 200 and status.get_json()["status"] == "New"
    again = client.get(sale["statusUrl"], headers={"If-None-Match": status.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("amount, words", [
    (0, "more than ₩0"), ("0", "more than ₩0"), ("-500", "more than ₩0"), (-500, "more than ₩0"),
    ("1.5", "no decimals"), (15000.5, "no decimals"), ("15000.00", "no decimals"),
    ("1e5", "number of won"), ("abc", "number of won"), ("", "Enter an amount"),
    (None, "Enter an amount"), (True, "number of won"), ("100000001", "too large"),
    (10 ** 30, "too large"),
])
def test_a_bad_amount_is_refused_with_a_readable_error_and_nothing_is_written(
        client, app, shop, amount, words):
    csrf = sign_in_cashier(client, shop["store"])
    before = invoice_count(app)
    res = client.post("/pos/charge", json={"amount": amount}, headers={"X-CSRFToken": csrf})
    assert res.status_code == 422
    body = res.get_json()
    assert words in body["message"] and body["errors"][0]["path"] == "amount"
    assert invoice_count(app) == before


def test_a_tip_that_pushes_the_total_over_the_maximum_is_refused(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    res = charge(client, csrf, "99000000", tip=5)
    assert res.status_code == 422 and "too large" in res.get_json()["message"]
    res = charge(client, csrf, "15000", tip=31)
    assert res.status_code == 422 and res.get_json()["errors"][0]["path"] == "tipPercent"
    assert invoice_count(app) == 1


@pytest.mark.parametrize("subtotal, percent, tip", [
    (15000, 10, 1500), (12345, 15, 1852), (999, 5, 50), (10, 5, 1), (3, 15, 0), (101, 5, 5),
    (1, 0, 0), (100_000_000, 15, 15_000_000),
])
def test_the_tip_is_whole_won_rounded_half_up(subtotal, percent, tip):
    assert tip_for(subtotal, percent) == tip
    assert isinstance(tip_for(subtotal, percent), int)


def test_a_charge_with_a_tip_invoices_the_total_and_keeps_the_parts(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf, "12,345", tip=15).get_json()
    assert (sale["subtotalKrw"], sale["tipKrw"], sale["amountKrw"]) == ("12345", "1852", "14197")
    assert sale["tipText"] == "₩1,852" and sale["amountText"] == "₩14,197"


def test_a_retried_charge_with_the_same_key_gives_the_same_invoice(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    first = charge(client, csrf, "5000", **{"Idempotency-Key": "tablet-attempt-1"})
    second = charge(client, csrf, "5000", **{"Idempotency-Key": "tablet-attempt-1"})
    assert first.get_json()["id"] == second.get_json()["id"]
    changed = charge(client, csrf, "6000", **{"Idempotency-Key": "tablet-attempt-1"})
    assert changed.status_code == 409
    assert invoice_count(app) == 2


def test_without_a_reliable_rate_the_cashier_gets_a_clear_message(client, app, shop, monkeypatch):
    from payments.rates import RateUnavailable

    class NoRate:
        def current(self):
            raise RateUnavailable("primary rate is stale")

    csrf = sign_in_cashier(client, shop["store"])
    monkeypatch.setattr(app.extensions["busanpay"].invoices, "rates", NoRate())
    res = charge(client, csrf)
    assert res.status_code == 503 and "exchange rate" in res.get_json()["message"]
    assert invoice_count(app) == 1


def _sale_at(client, clock, csrf, moment, amount, settle=True):
    clock.now = moment
    sale = charge(client, csrf, amount).get_json()
    if settle:
        gateway = client.application.extensions["busanpay"]
        gateway.invoices.mark_status(gateway.invoices.get(sale["id"]).store_id, sale["id"], "Settled")
    return sale["id"]


def test_todays_totals_follow_the_asia_seoul_day(app, shop, clock):
    minji, jun = app.test_client(), app.test_client()
    csrf_minji = sign_in_cashier(minji, shop["store"])
    csrf_jun = sign_in_cashier(jun, shop["store"], OTHER_PIN)
    # 14:59 UTC on the 22nd is 23:59 in Seoul: yesterday's sale.
    _sale_at(minji, clock, csrf_minji, datetime(2026, 11, 22, 14, 59, tzinfo=timezone.utc), "10000")
    # 15:01 UTC on the 22nd is 00:01 on the 23rd in Seoul: today.
    _sale_at(minji, clock, csrf_minji, datetime(2026, 11, 22, 15, 1, tzinfo=timezone.utc), "20000")
    _sale_at(jun, clock, csrf_jun, datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc), "5000")
    _sale_at(minji, clock, csrf_minji, datetime(2026, 11, 23, 2, 30, tzinfo=timezone.utc), "7000",
             settle=False)
    clock.now = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # 23:30 in Seoul
    page = minji.get("/pos/today").get_data(as_text=True)
    paid = re.findall(r'data-total="paid">([^<]+)<', page)
    assert paid == ["₩20,000", "₩25,000"]  # Minji's own, then the whole store
    assert "₩10,000" not in page
    assert page.count('class="st-') == 3  # yesterday's sale is not listed
    clock.now = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # midnight: a new day
    page = minji.get("/pos/today").get_data(as_text=True)
    assert re.findall(r'data-total="paid">([^<]+)<', page) == ["₩0", "₩0"]


def test_cancel_marks_the_sale_invalid_and_is_audited(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf).get_json()
    res = client.post(sale["cancelUrl"], headers={"X-CSRFToken": csrf})
    assert res.status_code == 200
    body = res.get_json()
    assert (body["status"], body["additionalStatus"], body["state"]) == ("Invalid", "Marked", "invalid")
    with app.extensions["busanpay"].db.read() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "invoice.cancel")).one()
    assert entry.actor_id == shop["minji"] and entry.target == sale["id"]
    assert entry.store_id == shop["store"]
    assert client.post(sale["cancelUrl"], headers={"X-CSRFToken": csrf}).status_code == 409


def test_a_paid_sale_cannot_be_cancelled_from_the_pos(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf).get_json()
    app.extensions["busanpay"].invoices.mark_status(shop["store"], sale["id"], "Settled")
    res = client.post(sale["cancelUrl"], headers={"X-CSRFToken": csrf})
    assert res.status_code == 409 and "waiting for payment" in res.get_json()["message"]


def _record_partial(app, invoice_id: str, sats: int) -> None:
    """What the watcher records when a payment below the amount due arrives."""
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        invoice = s.get(Invoice, invoice_id)
        s.add(Payment(invoice_id=invoice_id, txid="ab" * 32, vout=0, address=invoice.address,
                      value_sats=sats, seen_at=gateway.clock()))
        invoice.additional_status, invoice.paid_sats = "PaidPartial", sats
        invoice.version += 1
        s.add(invoice)


def test_a_partial_payment_shows_the_rest_and_a_new_qr_drawn_once(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf, "15000").get_json()
    _record_partial(app, sale["id"], 4000)
    details = client.get(sale["detailsUrl"]).get_json()
    assert details["state"] == "partial" and details["remainingSats"] == 6000
    # 6,000 sats at 150,000,000 won/BTC is exactly ₩9,000.
    assert (details["remainingKrw"], details["remainingText"], details["remainingBtc"]) == \
        ("9000", "₩9,000", "0.00006")
    assert details["restQrUrl"].endswith("/qr/6000.svg")
    cache = app.extensions.get("busanpay_pos_qr")
    renders = cache.renders if cache else 0
    first = client.get(details["restQrUrl"])
    second = client.get(details["restQrUrl"])
    assert first.status_code == 200 and first.data == second.data
    cache = app.extensions["busanpay_pos_qr"]
    assert cache.renders == renders + 1
    payload = [key[1] for key in cache._items if key[0][0] == "rest"][0]
    invoice = app.extensions["busanpay"].invoices.get(sale["id"])
    assert payload.startswith(f"bitcoin:{invoice.address.upper()}?amount=0.00006")
    assert client.get(f"/pos/invoices/{sale['id']}/qr/5000.svg").status_code == 404


def test_the_remaining_won_is_the_price_less_what_arrived_rounded_the_merchants_way(
        client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf, "15000").get_json()
    _record_partial(app, sale["id"], 3333)  # 3,333 sats = ₩4,999.5, credited as ₩4,999
    assert client.get(sale["detailsUrl"]).get_json()["remainingKrw"] == "10001"


def test_after_5000_sats_of_a_20000_won_sale_the_rest_is_8334_sats_worth_12500_won(
        client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf, "20000").get_json()
    assert sale["dueSats"] == 13_334
    _record_partial(app, sale["id"], 5000)  # ₩7,500 arrived: ₩12,500 of the price is open
    details = client.get(sale["detailsUrl"]).get_json()
    assert (details["remainingSats"], details["remainingSatsText"], details["remainingKrw"]) == \
        (8_334, "8,334 sats", "12500")


def test_the_receipt_shows_the_sale_and_a_qr_to_the_public_page(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    sale = charge(client, csrf, "15000", tip=10, memo="Bingsu").get_json()
    app.extensions["busanpay"].invoices.mark_status(shop["store"], sale["id"], "Settled")
    page = client.get(sale["receiptUrl"] + "?paper=58")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "paper-58" in html
    for text in ("Haeundae Coffee", "Bingsu", "₩15,000", "₩1,500", "₩16,500", "0.00011 BTC",
                 "Minji", sale["id"], f"/i/{sale['id']}", "receipt.css"):
        assert text in html, text
    qr = client.get(f"/pos/receipts/{sale['id']}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    payloads = [key[1] for key in app.extensions["busanpay_pos_qr"]._items if key[0][0] == "receipt"]
    assert payloads == [f"http://localhost/i/{sale['id']}"]


def test_the_print_css_sizes_the_page_for_58_and_80_mm_paper(app):
    css = open(app.static_folder + "/pos/receipt.css", encoding="utf-8").read()
    assert "@media print" in css
    assert re.search(r"@page receipt58 \{ size: 58mm", css)
    assert re.search(r"@page receipt80 \{ size: 80mm", css)


def test_recent_invoices_flag_the_exceptions(client, app, shop):
    csrf = sign_in_cashier(client, shop["store"])
    ok = charge(client, csrf, "1000").get_json()["id"]
    partial = charge(client, csrf, "2000").get_json()["id"]
    cancelled = charge(client, csrf, "3000").get_json()["id"]
    app.extensions["busanpay"].invoices.mark_status(shop["store"], ok, "Settled")
    _record_partial(app, partial, 100)
    client.post(f"/pos/invoices/{cancelled}/cancel", headers={"X-CSRFToken": csrf})
    everything = client.get("/pos/invoices").get_data(as_text=True)
    assert all(f"/pos/receipts/{i}" in everything for i in (ok, partial, cancelled))
    exceptions = client.get("/pos/invoices?show=exceptions&lang=en").get_data(as_text=True)
    assert f"/pos/receipts/{partial}" in exceptions and f"/pos/receipts/{cancelled}" in exceptions
    assert f"/pos/receipts/{ok}" not in exceptions
    assert "Partly paid" in exceptions
    assert shop["other_invoice"] not in everything


def test_the_pos_speaks_korean_english_chinese_and_japanese(client, shop):
    sign_in_cashier(client, shop["store"])
    english = client.get("/pos?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english and "Charge" in english
    korean = client.get("/pos?lang=ko").get_data(as_text=True)
    assert '<html lang="ko">' in korean and "₩0 결제" in korean and "팁 없음" in korean
    assert "收款 ₩0" in client.get("/pos?lang=zh").get_data(as_text=True)
    assert "₩0 を請求" in client.get("/pos?lang=ja").get_data(as_text=True)
    csrf = page_token(client)
    res = client.post("/pos/charge?lang=ko", json={"amount": "1.5"}, headers={"X-CSRFToken": csrf})
    assert res.get_json()["message"] == "원화에는 소수점이 없습니다. 원 단위 정수를 입력하세요."


def test_the_pwa_shell_is_public_and_the_worker_never_caches_live_data(client):
    manifest = client.get("/pos/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.mimetype == "application/manifest+json"
    body = manifest.get_json(force=True)
    assert body["start_url"] == "/pos" and body["display"] == "standalone"
    for icon in body["icons"]:
        res = client.get(icon["src"])
        assert res.status_code == 200 and res.mimetype == "image/png"
    worker = client.get("/pos/sw.js")
    assert worker.status_code == 200 and worker.headers["Service-Worker-Allowed"] == "/pos"
    shell = re.search(r"SHELL_FILES = \[(.*?)\];", worker.get_data(as_text=True), re.S).group(1)
    assert "status" not in shell and "/pos/invoices" not in shell and "/i/" not in shell
    assert client.get("/pos/offline").status_code == 200


def test_pos_pages_forbid_inline_scripts_and_caching(client, shop):
    sign_in_cashier(client, shop["store"])
    res = client.get("/pos")
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    assert res.headers["Cache-Control"] == "no-store"
    assert "<script>" not in res.get_data(as_text=True)
