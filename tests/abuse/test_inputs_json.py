"""Abuse: JSON bodies a client crafts to break the server (issue 9, finding 10).

Every JSON endpoint answers a deeply nested body, a NUL or lone surrogate in a string and
NaN/Infinity in metadata with a clear 400/422, on SQLite and PostgreSQL, and changes nothing.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlmodel import select

from accounts.service import create_user
from payments.models import Invoice
from tests.conftest import auth, make_merchant
from tests.integration.test_pos import CASHIER_PIN, page_token, sign_in_cashier

DEEP = 20_000  # far beyond Python's recursion limit, and still under the 64 KiB body limit


def deep_body(depth: int = DEEP) -> bytes:
    return b'{"metadata": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def shop(app, client):
    """A store with a key, an invoice (with an orderId), a webhook and a cashier."""
    store_id, token = make_merchant(app, name="Haeundae Coffee")
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin=CASHIER_PIN, display_name="Minji")
    res = client.post(f"/api/v1/stores/{store_id}/invoices", headers=auth(token),
                      json={"amount": "15000", "metadata": {"orderId": "A-1", "n": 1.5}})
    assert res.status_code == 200, res.get_data(as_text=True)
    invoice_id = res.get_json()["id"]
    res = client.post(f"/api/v1/stores/{store_id}/webhooks", headers=auth(token),
                      json={"url": "https://shop.example/hook"})
    assert res.status_code == 200, res.get_data(as_text=True)
    return {"store": store_id, "token": token, "invoice": invoice_id,
            "webhook": res.get_json()["id"]}


def snapshot(app) -> dict:
    """What a refused request must leave untouched: invoices (with their metadata and order
    ids) and webhooks."""
    from webhooks.models import Webhook

    with app.extensions["busanpay"].db.read() as s:
        invoices = sorted((i.id, i.order_id, i.metadata_json, i.status, i.archived)
                          for i in s.exec(select(Invoice)))
        hooks = sorted((h.id, h.url, h.secret, h.enabled) for h in s.exec(select(Webhook)))
    return {"invoices": invoices, "webhooks": hooks}


def json_routes(app):
    """Every API route that takes a body (POST/PUT/PATCH), and the POS's /pos/charge."""
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & {"POST", "PUT", "PATCH"}
        if methods and (rule.rule.startswith("/api/") or rule.rule == "/pos/charge"):
            for method in sorted(methods):
                yield rule, method


def fill(rule, shop) -> tuple[str, bool]:
    """The rule's URL with our objects' ids; False when it names an object we do not have
    (an endpoint added later: it must still not fail, but may answer 404 first)."""
    known = {"store_id": shop["store"], "invoice_id": shop["invoice"],
             "webhook_id": shop["webhook"], "delivery_id": "nodelivery"}
    values = {name: known.get(name, "unknown") for name in rule.arguments}
    url = rule.rule
    for name, value in values.items():
        url = re.sub(rf"<(?:[^:<>]+:)?{name}>", value, url)
    everything_known = set(rule.arguments) <= {"store_id", "invoice_id", "webhook_id"}
    return url, everything_known


def test_a_deeply_nested_body_is_400_on_every_json_endpoint_and_changes_nothing(app, client, shop):
    before = snapshot(app)
    routes = list(json_routes(app))
    assert len(routes) >= 9, routes  # invoices (create, update, unarchive, status), webhooks, POS
    for rule, method in routes:
        url, known = fill(rule, shop)
        if rule.rule == "/pos/charge":
            continue  # below, signed in as the cashier
        res = client.open(url, method=method, data=deep_body(), headers={
            **auth(shop["token"]), "Content-Type": "application/json"})
        assert res.status_code != 500, (method, url)
        if known:
            assert res.status_code == 400, (method, url, res.get_data(as_text=True))
            body = res.get_json()
            assert body["code"] == "invalid-json" and "nested" in body["message"], body
        else:
            assert res.status_code in (400, 403, 404, 422), (method, url, res.status_code)
    assert snapshot(app) == before


def test_nesting_just_past_the_limit_is_refused_and_just_under_it_is_read(app, client, shop):
    from untrusted import MAX_JSON_DEPTH

    url = f"/api/v1/stores/{shop['store']}/invoices/{shop['invoice']}"
    nested = {"a": 1}
    for _ in range(MAX_JSON_DEPTH - 2):  # the body and metadata are two levels
        nested = {"a": nested}
    res = client.put(url, headers=auth(shop["token"]), json={"metadata": nested})
    assert res.status_code == 200, res.get_data(as_text=True)
    res = client.put(url, headers=auth(shop["token"]), json={"metadata": {"a": nested}})
    assert res.status_code == 400 and "nested" in res.get_json()["message"]


def test_a_deeply_nested_charge_on_the_pos_is_400_and_no_sale_is_made(app, client, shop):
    csrf = sign_in_cashier(client, shop["store"])
    before = snapshot(app)
    for body in (b"[" * DEEP + b"]" * DEEP, b'{"amount": "1000", "memo": ' + b"[" * DEEP + b"]" * DEEP + b"}"):
        res = client.post("/pos/charge", data=body, headers={
            "X-CSRFToken": csrf, "Content-Type": "application/json"})
        assert res.status_code == 400, res.get_data(as_text=True)
        assert res.get_json()["code"] == "invalid-json"
    assert snapshot(app) == before
    # and a good sale still goes through afterwards
    res = client.post("/pos/charge", json={"amount": "1000"}, headers={"X-CSRFToken": page_token(client)})
    assert res.status_code == 201, res.get_data(as_text=True)


@pytest.mark.parametrize("text", ["a\\u0000b", "\\ud800", "x\\udfff"])
def test_a_nul_or_a_lone_surrogate_in_any_json_string_is_400_and_stores_nothing(app, client, shop, text):
    before = snapshot(app)
    store, token, invoice = shop["store"], shop["token"], shop["invoice"]
    bodies = [
        ("POST", f"/api/v1/stores/{store}/invoices", f'{{"amount": "1000", "metadata": {{"orderId": "{text}"}}}}'),
        ("POST", f"/api/v1/stores/{store}/invoices", f'{{"amount": "1000", "metadata": {{"{text}": 1}}}}'),
        ("PUT", f"/api/v1/stores/{store}/invoices/{invoice}", f'{{"metadata": {{"orderId": "{text}"}}}}'),
        ("PUT", f"/api/v1/invoices/{invoice}", f'{{"metadata": {{"list": ["ok", "{text}"]}}}}'),
        ("POST", f"/api/v1/stores/{store}/webhooks", f'{{"url": "https://shop.example/{text}"}}'),
        ("PUT", f"/api/v1/stores/{store}/webhooks/{shop['webhook']}",
         f'{{"url": "https://shop.example/", "secret": "{text}"}}'),
        ("POST", f"/api/v1/stores/{store}/invoices/{invoice}/status", f'{{"status": "{text}"}}'),
    ]
    for method, url, body in bodies:
        res = client.open(url, method=method, data=body.encode(),
                          headers={**auth(token), "Content-Type": "application/json"})
        assert res.status_code == 400, (method, url, res.get_data(as_text=True))
        assert res.get_json()["code"] == "invalid-json"
        assert "U+0000" in res.get_json()["message"] or "surrogate" in res.get_json()["message"]
    assert snapshot(app) == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+999999999"])
def test_a_number_that_json_cannot_carry_in_metadata_is_422_on_create_and_update(app, client, shop, number):
    before = snapshot(app)
    store, token, invoice = shop["store"], shop["token"], shop["invoice"]
    headers = {**auth(token), "Content-Type": "application/json"}
    res = client.post(f"/api/v1/stores/{store}/invoices", headers=headers,
                      data=f'{{"amount": "1000", "metadata": {{"deep": {{"x": [1, {number}]}}}}}}')
    assert res.status_code == 422, res.get_data(as_text=True)
    assert [e["path"] for e in res.get_json()] == ["metadata.deep.x[1]"]
    res = client.put(f"/api/v1/invoices/{invoice}", headers=headers,
                     data=f'{{"metadata": {{"total": {number}}}}}')
    assert res.status_code == 422, res.get_data(as_text=True)
    assert [e["path"] for e in res.get_json()] == ["metadata.total"]
    assert snapshot(app) == before
    # what is stored is still strict JSON when read back
    res = client.get(f"/api/v1/invoices/{invoice}", headers=auth(token))
    json.loads(res.get_data(as_text=True), parse_constant=lambda c: pytest.fail(f"sent back {c}"))


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e999999999"])
def test_a_bare_nan_or_overflowing_json_number_as_the_amount_is_422(app, client, shop, amount):
    before = snapshot(app)
    for currency in ("KRW", "BTC", "SATS"):
        res = client.post(f"/api/v1/stores/{shop['store']}/invoices",
                          data=f'{{"amount": {amount}, "currency": "{currency}"}}',
                          headers={**auth(shop["token"]), "Content-Type": "application/json"})
        assert res.status_code == 422, (currency, res.get_data(as_text=True))
        assert [e["path"] for e in res.get_json()] == ["amount"]
    assert snapshot(app) == before


def test_metadata_numbers_are_kept_as_sent(app, client, shop):
    res = client.put(f"/api/v1/invoices/{shop['invoice']}", headers=auth(shop["token"]),
                     data=b'{"metadata": {"orderId": 7, "price": 1.25, "big": 12345678901234567890, '
                          b'"tiny": 1e-5, "neg": -0.5}}',
                     content_type="application/json")
    assert res.status_code == 200, res.get_data(as_text=True)
    metadata = res.get_json()["metadata"]
    assert metadata == {"orderId": 7, "price": 1.25, "big": 12345678901234567890, "tiny": 1e-05,
                        "neg": -0.5}
    assert all(type(metadata[k]) is float for k in ("price", "tiny", "neg"))


@pytest.mark.parametrize("order_id,fragment", [
    ({"a": 1}, "string"), (["A-1"], "string"), (True, "string"), (1.5, "string"),
    ("x" * 201, "200"),
])
def test_put_metadata_refuses_an_order_id_that_create_refuses(app, client, shop, order_id, fragment):
    before = snapshot(app)
    store, token = shop["store"], shop["token"]
    created = client.post(f"/api/v1/stores/{store}/invoices", headers=auth(token),
                          json={"amount": "1000", "metadata": {"orderId": order_id}})
    updated = client.put(f"/api/v1/stores/{store}/invoices/{shop['invoice']}", headers=auth(token),
                         json={"metadata": {"orderId": order_id}})
    for res in (created, updated):
        assert res.status_code == 422, res.get_data(as_text=True)
        errors = res.get_json()
        assert [e["path"] for e in errors] == ["metadata.orderId"] and fragment in errors[0]["message"]
    assert snapshot(app) == before


def test_put_metadata_refuses_metadata_larger_than_create_allows(app, client, shop):
    before = snapshot(app)
    res = client.put(f"/api/v1/invoices/{shop['invoice']}", headers=auth(shop["token"]),
                     json={"metadata": {"note": "x" * 20_000}})
    assert res.status_code == 422 and res.get_json()[0]["path"] == "metadata"
    assert snapshot(app) == before


def test_put_metadata_with_a_good_order_id_updates_it_for_the_order_id_search(app, client, shop):
    store, token = shop["store"], shop["token"]
    res = client.put(f"/api/v1/invoices/{shop['invoice']}", headers=auth(token),
                     json={"metadata": {"orderId": 1002}})
    assert res.status_code == 200
    found = client.get(f"/api/v1/stores/{store}/invoices?orderId=1002", headers=auth(token))
    assert [i["id"] for i in found.get_json()] == [shop["invoice"]]

