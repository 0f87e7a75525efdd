"""The tourist's checkout page /i/<id>: the page, its QR, the polled status.json, languages."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from sqlalchemy import event

from payments.bip21 import payment_uri
from payments.models import Invoice, Payment
from tests.conftest import auth, make_merchant

ROOT = Path(__file__).resolve().parents[2]
LANGS = ("ko", "en", "zh", "ja")


def create_invoice(client, store_id, token, **extra) -> str:
    response = client.post(f"/api/v1/stores/{store_id}/invoices",
                           json={"amount": "15000", **extra}, headers=auth(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def invoice_id(client, merchant) -> str:
    store_id, token = merchant
    return create_invoice(client, store_id, token)


def page(client, invoice_id, lang="en", **headers):
    return client.get(f"/i/{invoice_id}", headers={"Accept-Language": lang, **headers})


def set_state(gateway, invoice_id, status, additional="None", paid=(), *, late=False,
              confirmed=False, store_paid_sats=True):
    """Put the invoice into a state as the watcher would (payments + decided status)."""
    with gateway.db.write() as session:
        invoice = session.get(Invoice, invoice_id)
        for n, sats in enumerate(paid):
            txid = hashlib.sha256(f"{invoice_id}:{n}".encode()).hexdigest()
            session.add(Payment(invoice_id=invoice_id, txid=txid, vout=n, address=invoice.address,
                                value_sats=sats, seen_at=gateway.clock(), late=late,
                                block_height=800_000 if confirmed else None))
        invoice.status, invoice.additional_status = status, additional
        invoice.paid_sats = sum(paid) if store_paid_sats else 0
        invoice.version += 1
        session.add(invoice)


def text_of(response) -> str:
    return response.get_data(as_text=True)


# -- the page -----------------------------------------------------------------------------

def test_the_page_shows_the_merchant_the_won_price_and_the_btc_amount(client, invoice_id, gateway):
    response = page(client, invoice_id)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = text_of(response)
    assert "Haeundae Coffee" in html
    assert "₩15,000" in html
    assert "0.0001 BTC" in html
    assert f'<img src="/i/{invoice_id}/qr.svg"' in html
    invoice = gateway.invoices.get(invoice_id)
    # The wallet link is the BIP21 URI with the lower-case address.
    link = payment_uri(invoice.address, invoice.due_sats, "Haeundae Coffee")
    assert link == link.lower().replace("haeundae%20coffee", "Haeundae%20Coffee")
    assert f'href="{link.replace("&", "&amp;")}"' in html
    assert f'data-copy="{invoice.address}"' in html and 'data-copy="0.0001"' in html
    assert "Waiting for your payment" in html
    assert 'data-countdown translate="no" aria-live="off">15:00<' in html
    assert 'name="viewport"' in html and '<html lang="en">' in html
    assert 'href="/source"' in html and "AGPL-3.0-or-later" in html  # the AGPL source offer
    assert response.headers["Cache-Control"].startswith("no-cache")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_an_unknown_invoice_gets_a_readable_404_page_not_json(client):
    response = page(client, "NoSuchInvoice123")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Invoice not found" in text_of(response)
    assert "<footer" in text_of(response)
    ja = page(client, "NoSuchInvoice123", lang="ja")
    assert ja.status_code == 404 and "請求書が見つかりません" in text_of(ja)
    too_long = page(client, "x" * 300)
    assert too_long.status_code == 404
    assert client.get("/i/NoSuchInvoice123/qr.png").status_code == 404
    status = client.get("/i/NoSuchInvoice123/status.json")
    assert status.status_code == 404 and status.get_json()["code"] == "invoice-not-found"


def test_the_shop_name_is_escaped_in_the_page(app, client):
    store_id, token = make_merchant(app, name='<script>alert("x")</script> & Co')
    html = text_of(page(client, create_invoice(client, store_id, token)))
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html


# -- the QR -------------------------------------------------------------------------------

def test_the_png_qr_decodes_to_the_bip21_uri_with_an_upper_case_address(client, invoice_id,
                                                                         gateway):
    from PIL import Image
    from pyzbar.pyzbar import decode

    response = client.get(f"/i/{invoice_id}/qr.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert "immutable" in response.headers["Cache-Control"]
    assert "max-age=31536000" in response.headers["Cache-Control"]
    symbols = decode(Image.open(io.BytesIO(response.data)))
    assert len(symbols) == 1
    payload = symbols[0].data.decode("utf-8")
    invoice = gateway.invoices.get(invoice_id)
    assert payload == payment_uri(invoice.address, invoice.due_sats, "Haeundae Coffee",
                                  for_qr=True)
    address = payload.split(":", 1)[1].split("?", 1)[0]
    assert address == invoice.address.upper() and address != invoice.address
    assert "amount=0.0001&" in payload


def test_the_svg_qr_is_served_as_svg_with_a_long_cache(client, invoice_id):
    response = client.get(f"/i/{invoice_id}/qr.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.data.lstrip().startswith(b"<?xml") or b"<svg" in response.data[:200]
    assert "immutable" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_qr_is_rendered_once_and_then_served_from_the_database(client, invoice_id,
                                                                    monkeypatch):
    import payments.service

    calls = []
    real = payments.service.render_png

    def counting(payload, *args, **kwargs):
        calls.append(payload)
        return real(payload, *args, **kwargs)

    monkeypatch.setattr(payments.service, "render_png", counting)
    first = client.get(f"/i/{invoice_id}/qr.png")
    second = client.get(f"/i/{invoice_id}/qr.png")
    svg = client.get(f"/i/{invoice_id}/qr.svg")
    assert first.status_code == second.status_code == svg.status_code == 200
    assert first.data == second.data
    assert len(calls) == 1


def test_after_a_partial_payment_the_page_asks_for_the_rest(client, invoice_id, gateway):
    set_state(gateway, invoice_id, "New", "PaidPartial", paid=[4_000])
    html = text_of(page(client, invoice_id))
    assert "Partly paid" in html
    assert re.search(r"You paid <b class=\"nowrap\"><span data-bind=\"paidBtc\">0.00004</span>"
                     r"&nbsp;BTC</b>\. Please send the remaining <b class=\"nowrap\">"
                     r"<span data-bind=\"remainingBtc\">0.00006</span>&nbsp;BTC</b>", html)
    assert "amount=0.00006&amp;" in html
    assert f'src="/i/{invoice_id}/qr/6000.svg"' in html
    rest = client.get(f"/i/{invoice_id}/qr/6000.svg")
    assert rest.status_code == 200 and rest.mimetype == "image/svg+xml"
    assert client.get(f"/i/{invoice_id}/qr/5000.svg").status_code == 404
    status = client.get(f"/i/{invoice_id}/status.json").get_json()
    assert (status["paidSats"], status["remainingSats"], status["remainingBtc"]) == \
        (4_000, 6_000, "0.00006")


def test_a_new_invoice_has_no_rest_qr(client, invoice_id):
    assert client.get(f"/i/{invoice_id}/qr/10000.svg").status_code == 404


# -- each state explained -----------------------------------------------------------------

@pytest.mark.parametrize("status, additional, paid, late, expected, absent", [
    ("Processing", "None", [10_000], False,
     ["Payment received", "waiting for confirmation"], ["Open in wallet"]),
    ("Processing", "PaidOver", [12_000], False,
     ["waiting for confirmation", "0.00002", "get the difference back"], []),
    ("Settled", "None", [10_000], False,
     ["Paid — thank you!", "Receipt", "November 23, 2026 12:00 (Korea time)",
      "₩150,000,000 per BTC", "0.0001 BTC"], ["Open in wallet", "refund"]),
    ("Expired", "None", [], False,
     ["This invoice expired", "ask the merchant for a new invoice"], ["Open in wallet", "refund"]),
    ("Expired", "PaidPartial", [3_000], False,
     ["This invoice expired", "0.00003", "less than the", "Contact the merchant for a refund"],
     ["Open in wallet"]),
    ("Expired", "PaidLate", [10_000], True,
     ["This invoice expired", "after the time limit", "Contact the merchant for a refund",
      "arrived late"], ["Open in wallet"]),
    ("Invalid", "None", [10_000], False,
     ["This invoice is invalid", "double-spent", "contact the merchant for a refund"],
     ["Open in wallet"]),
])
def test_each_state_is_explained_in_words(client, invoice_id, gateway, status, additional,
                                          paid, late, expected, absent):
    set_state(gateway, invoice_id, status, additional, paid=paid, late=late, confirmed=True,
              store_paid_sats=False)  # the page sums the payments itself
    html = text_of(page(client, invoice_id))
    for text in expected:
        assert text in html, text
    for text in absent:
        assert text not in html, text
    for n in range(len(paid)):  # every transaction id is shown
        assert hashlib.sha256(f"{invoice_id}:{n}".encode()).hexdigest() in html


def test_a_receipt_in_korean_shows_the_seoul_time(client, invoice_id, gateway):
    set_state(gateway, invoice_id, "Settled", "None", paid=[10_000], confirmed=True)
    html = text_of(page(client, invoice_id, lang="ko"))
    assert "결제 완료" in html and "영수증" in html
    assert "2026년 11월 23일 12:00 (한국 시간)" in html


def test_when_the_time_is_up_the_page_stops_asking_for_payment(client, invoice_id, clock):
    clock.advance(minutes=15, seconds=1)  # nobody has decided Expired yet
    html = text_of(page(client, invoice_id))
    assert re.search(r'<a class="qr" [^>]*data-pay\s+hidden>', html)
    assert re.search(r'<div class="fields" data-pay\s+hidden>', html)
    assert re.search(r"<div data-timeup\s*>", html)
    assert "Time is up" in html


# -- status.json --------------------------------------------------------------------------

def test_status_json_has_the_fields_the_page_needs(client, invoice_id, gateway, clock):
    response = client.get(f"/i/{invoice_id}/status.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    invoice = gateway.invoices.get(invoice_id)
    assert body == {
        "id": invoice_id, "status": "New", "additionalStatus": "None",
        "paidSats": 0, "dueSats": 10_000, "remainingSats": 10_000,
        "paidBtc": "0", "remainingBtc": "0.0001",
        "expirationTime": int(invoice.expires_at.timestamp()),
        "now": int(clock().timestamp()), "version": invoice.version,
    }
    assert body["expirationTime"] - body["now"] == 15 * 60
    assert response.headers["Cache-Control"] == "no-cache"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert invoice_id in etag


def test_status_json_answers_304_while_nothing_changed_and_a_new_etag_after(client, merchant,
                                                                             invoice_id):
    _, token = merchant
    first = client.get(f"/i/{invoice_id}/status.json")
    etag = first.headers["ETag"]
    again = client.get(f"/i/{invoice_id}/status.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "no-cache"

    marked = client.post(f"/api/v1/invoices/{invoice_id}/status", json={"status": "Settled"},
                         headers=auth(token))
    assert marked.status_code == 200
    changed = client.get(f"/i/{invoice_id}/status.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.get_json()["status"] == "Settled"
    assert changed.get_json()["additionalStatus"] == "Marked"
    assert client.get(f"/i/{invoice_id}/status.json",
                      headers={"If-None-Match": changed.headers["ETag"]}).status_code == 304


def test_status_json_is_one_primary_key_read_and_never_renders_a_qr(client, invoice_id, gateway,
                                                                    monkeypatch):
    import payments.checkout
    import payments.service

    def refuse(*_args, **_kwargs):
        raise AssertionError("status.json must not render a QR")

    for module in (payments.service, payments.checkout):
        for name in ("render_png", "render_svg"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    engine = gateway.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        etag = client.get(f"/i/{invoice_id}/status.json").headers["ETag"]
        client.get(f"/i/{invoice_id}/status.json", headers={"If-None-Match": etag})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, statements  # one per request
    assert all("FROM invoice" in s and "invoice.id = " in s for s in selects)


def test_status_json_sums_the_payments_when_the_invoice_row_has_no_total(client, invoice_id,
                                                                         gateway):
    set_state(gateway, invoice_id, "Processing", "None", paid=[7_000, 3_000],
              store_paid_sats=False)
    body = client.get(f"/i/{invoice_id}/status.json").get_json()
    assert (body["status"], body["paidSats"], body["remainingSats"], body["paidBtc"]) == \
        ("Processing", 10_000, 0, "0.0001")


# -- languages ----------------------------------------------------------------------------

def test_accept_language_picks_the_page_language(client, invoice_id):
    ja = text_of(page(client, invoice_id, lang="ja-JP,ja;q=0.9,en;q=0.5"))
    assert '<html lang="ja">' in ja and "お支払いをお待ちしています" in ja
    zh = text_of(page(client, invoice_id, lang="zh-CN,zh;q=0.9"))
    assert '<html lang="zh-Hans">' in zh and "等待您付款" in zh
    ko = text_of(page(client, invoice_id, lang="ko-KR"))
    assert '<html lang="ko">' in ko and "결제를 기다리고 있습니다" in ko
    en = text_of(page(client, invoice_id, lang="en-GB"))
    assert "Waiting for your payment" in en


def test_lang_parameter_wins_and_is_remembered_in_a_cookie(client, invoice_id):
    response = client.get(f"/i/{invoice_id}?lang=zh", headers={"Accept-Language": "ja"})
    html = text_of(response)
    assert '<html lang="zh-Hans">' in html and "等待您付款" in html
    assert "lang=zh" in " ".join(response.headers.getlist("Set-Cookie"))
    later = page(client, invoice_id, lang="ja")  # the test client keeps the cookie
    assert "等待您付款" in text_of(later)
    assert 'aria-current="true">简体中文' in re.sub(r"\s+", " ", text_of(later))
    client.get(f"/i/{invoice_id}?lang=en")
    assert "Waiting for your payment" in text_of(page(client, invoice_id, lang="ja"))


def test_without_a_usable_browser_language_the_invoice_default_then_korean_apply(client,
                                                                                  merchant):
    store_id, token = merchant
    japanese = create_invoice(client, store_id, token, checkout={"defaultLanguage": "ja"})
    assert "お支払いをお待ちしています" in text_of(page(client, japanese, lang="fr-FR, de"))
    plain = create_invoice(client, store_id, token)
    html = text_of(client.get(f"/i/{plain}"))
    assert '<html lang="ko">' in html and "결제를 기다리고 있습니다" in html


def test_the_language_switcher_links_every_language(client, invoice_id):
    html = text_of(page(client, invoice_id))
    for code, name in (("ko", "한국어"), ("en", "English"), ("zh", "简体中文"), ("ja", "日本語")):
        assert f'href="/i/{invoice_id}?lang={code}"' in html
        assert name in html


def _catalogue(lang):
    with open(ROOT / "translations" / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale=lang)


def _forms(value) -> tuple[str, ...]:
    """A message's id or string as a tuple (plural messages have several forms)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\((\w+)\)[sd]", text))


@pytest.mark.parametrize("lang", LANGS)
def test_every_catalogue_translates_every_message(lang):
    catalogue = _catalogue(lang)
    assert (ROOT / "translations" / lang / "LC_MESSAGES" / "messages.mo").is_file()
    messages = [m for m in catalogue if m.id]
    assert messages
    for message in messages:
        ids, strings = _forms(message.id), _forms(message.string)
        assert all(strings), f"{lang}: {ids[0]!r} is not translated"
        assert not message.fuzzy, f"{lang}: {ids[0]!r} is fuzzy"
        expected = _placeholders(ids[-1])
        for form in strings:
            assert _placeholders(form) <= expected | _placeholders(ids[0]), (lang, ids[0], form)
            if not message.pluralizable:
                assert _placeholders(form) == expected, (lang, ids[0], form)
        ours = any(path.startswith(("templates/checkout/", "templates/base.html",
                                    "payments/checkout.py")) for path, _line in message.locations)
        if lang != "en" and ours:
            assert strings[0] != ids[0], f"{lang}: {ids[0]!r} is left in English"


def test_every_text_of_the_checkout_templates_is_in_the_catalogues():
    method_map = [("checkout/**.html", "jinja2"), ("base.html", "jinja2")]
    used = {msgid for _f, _l, msgid, _c, _x in extract_from_dir(str(ROOT / "templates"),
                                                                method_map)}
    assert "Waiting for your payment" in used
    for lang in LANGS:
        known = {m.id for m in _catalogue(lang) if m.id}
        assert not used - known, f"{lang} lacks {sorted(used - known)}"
