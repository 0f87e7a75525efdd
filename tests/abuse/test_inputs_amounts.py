"""Abuse: amounts that are not plain decimal numbers (issue 9, finding 10).

Decimal's traps (huge exponents, NaN, sNaN, Infinity, -0), underscores and digits from other
scripts (full-width, Arabic-Indic, superscript) are refused with 422 naming `amount`, on the
API and on the POS, and no invoice is created.
"""
from __future__ import annotations

import pytest
from sqlmodel import func, select

from payments.models import Invoice
from tests.abuse.test_inputs_json import shop  # noqa: F401 (fixture)
from tests.conftest import auth
from tests.integration.test_pos import sign_in_cashier

NOT_AMOUNTS = [
    "1e999999999", "1E+999999999", "-1e999999999", "1e-999999999", "9" * 400, "0." + "0" * 60 + "1",
    "NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-0", "-0.0", "0e5",
    "１２０００", "١٢٠٠٠", "۱۲۰۰۰", "12000²", "१२०००", "12_000", "1 000", "0x10", "+1000",
    "1,000", "", " ", "1e", ".", "--1",
]


def invoice_count(app) -> int:
    with app.extensions["busanpay"].db.read() as s:
        return s.exec(select(func.count()).select_from(Invoice)).one()


@pytest.mark.parametrize("currency", ["KRW", "BTC", "SATS"])
def test_no_decimal_trap_or_foreign_digit_is_an_amount_on_the_api(app, client, shop, currency):
    before = invoice_count(app)
    for amount in NOT_AMOUNTS:
        res = client.post(f"/api/v1/stores/{shop['store']}/invoices", headers=auth(shop["token"]),
                          json={"amount": amount, "currency": currency})
        assert res.status_code == 422, (amount, res.status_code, res.get_data(as_text=True))
        errors = res.get_json()
        assert [e["path"] for e in errors] == ["amount"], (amount, errors)
        assert errors[0]["message"], amount
    assert invoice_count(app) == before


@pytest.mark.parametrize("amount,fragment", [
    ("1e999999999", "too large"), ("1e-999999999", "decimal places"), ("-0", "greater than zero"),
    ("sNaN", "finite"), ("Infinity", "finite"), ("١٢٠٠٠", "ASCII"), ("１２０００", "ASCII"),
])
def test_the_refusal_says_what_is_wrong_with_the_amount(client, shop, amount, fragment):
    res = client.post(f"/api/v1/stores/{shop['store']}/invoices", headers=auth(shop["token"]),
                      json={"amount": amount, "currency": "BTC"})
    assert res.status_code == 422 and fragment in res.get_json()[0]["message"], res.get_json()


def test_plain_amounts_with_exponents_and_trailing_zeros_still_work(client, shop):
    for amount, currency, field, value in [("1.5e4", "KRW", "amount", "15000"),
                                           ("0.00010000", "BTC", "amount", "0.0001"),
                                           ("15000.00", "KRW", "amount", "15000"),
                                           (15000, "SATS", "amount", "15000")]:
        res = client.post(f"/api/v1/stores/{shop['store']}/invoices", headers=auth(shop["token"]),
                          json={"amount": amount, "currency": currency})
        assert res.status_code == 200, (amount, res.get_data(as_text=True))
        assert res.get_json()[field] == value


def test_the_pos_refuses_foreign_digits_in_the_amount_and_the_tip(app, client, shop):
    csrf = sign_in_cashier(client, shop["store"])
    before = invoice_count(app)
    for body in ({"amount": "１２０００"}, {"amount": "١٢٠٠٠"}, {"amount": "₩١٢,٠٠٠"},
                 {"amount": "12000", "tipPercent": "²"}, {"amount": "12000", "tipPercent": "١٠"},
                 {"amount": "12000", "tipPercent": "１０"}):
        res = client.post("/pos/charge", json=body, headers={"X-CSRFToken": csrf})
        assert res.status_code == 422, (body, res.get_data(as_text=True))
        assert res.get_json()["code"] == "invalid-charge"
    for text in (b'{"amount": NaN}', b'{"amount": Infinity}', b'{"amount": 1e999999999}',
                 b'{"amount": 12000, "tipPercent": NaN}'):
        res = client.post("/pos/charge", data=text, headers={
            "X-CSRFToken": csrf, "Content-Type": "application/json"})
        assert res.status_code == 422, (text, res.get_data(as_text=True))
    assert invoice_count(app) == before
    res = client.post("/pos/charge", json={"amount": "12,000", "tipPercent": "10"},
                      headers={"X-CSRFToken": csrf})
    assert res.status_code == 201 and res.get_json()["amountKrw"] == "13200", res.get_json()


def test_a_payment_tolerance_takes_ascii_digits_only(app, client, shop):
    before = invoice_count(app)
    for tolerance in ("５", "٥", "1e999999999", "NaN", "Infinity", True, [], {}, "101", "-1"):
        res = client.post(f"/api/v1/stores/{shop['store']}/invoices", headers=auth(shop["token"]),
                          json={"amount": "15000", "checkout": {"paymentTolerance": tolerance}})
        assert res.status_code == 422, (tolerance, res.get_data(as_text=True))
        assert [e["path"] for e in res.get_json()] == ["checkout.paymentTolerance"], tolerance
    assert invoice_count(app) == before
