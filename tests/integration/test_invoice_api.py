"""The Greenfield-compatible invoice API, through HTTP, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlmodel import func, select

from payments.models import IdempotencyRecord, Invoice, InvoiceEvent
from tests.conftest import auth, make_merchant


def create(client, store_id, token, body, **headers):
    return client.post(f"/api/v1/stores/{store_id}/invoices", json=body,
                       headers={**auth(token), **headers})


def count_invoices(gateway) -> int:
    with gateway.db.read() as session:
        return session.exec(select(func.count()).select_from(Invoice)).one()


def test_a_won_invoice_is_quoted_in_whole_satoshis_at_the_locked_rate(client, merchant, gateway, clock):
    store_id, token = merchant
    res = create(client, store_id, token, {"amount": "15000", "currency": "KRW",
                                           "metadata": {"orderId": "A-1", "note": 1.5}})
    assert res.status_code == 200, res.get_json()
    body = res.get_json()
    assert body["storeId"] == store_id
    assert body["amount"] == "15000" and body["currency"] == "KRW" and body["type"] == "Standard"
    assert body["status"] == "New" and body["additionalStatus"] == "None"
    assert body["createdTime"] == int(clock().timestamp())
    assert body["expirationTime"] - body["createdTime"] == 15 * 60
    assert body["monitoringExpiration"] - body["expirationTime"] == 24 * 3600
    assert body["metadata"] == {"orderId": "A-1", "note": 1.5}
    assert body["checkoutLink"].endswith(f"/i/{body['id']}")
    assert set(body["availableStatusesForManualMarking"]) == {"Settled", "Invalid"}
    methods = client.get(f"/api/v1/invoices/{body['id']}/payment-methods", headers=auth(token)).get_json()
    assert methods[0]["amount"] == "0.0001"  # 15,000 won at 150,000,000 won/BTC = 10,000 sats
    assert methods[0]["rate"] == "150000000"
    assert methods[0]["destination"].startswith("bcrt1")
    assert methods[0]["paymentLink"] == f"bitcoin:{methods[0]['destination']}?amount=0.0001&label=Haeundae%20Coffee"
    with gateway.db.read() as session:
        invoice = session.get(Invoice, body["id"])
        assert invoice.due_sats == 10_000 and invoice.rate_source == "fixed"
        assert invoice.rate == Decimal("150000000")
        events = session.exec(select(InvoiceEvent).where(InvoiceEvent.invoice_id == body["id"])).all()
        assert [e.event_type for e in events] == ["InvoiceCreated"]


def test_invoice_ids_are_random_and_addresses_consecutive(client, merchant, gateway):
    store_id, token = merchant
    ids = [create(client, store_id, token, {"amount": 1000}).get_json()["id"] for _ in range(5)]
    assert len(set(ids)) == 5 and all(len(i) == 22 for i in ids)
    with gateway.db.read() as session:
        rows = session.exec(select(Invoice.key_index, Invoice.address).order_by(Invoice.key_index)).all()
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0][1] == "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"  # BIP84 demo vpub, receive 0
    assert len({r[1] for r in rows}) == 5


@pytest.mark.parametrize("body,path", [
    ({"amount": "12.5"}, "amount"),
    ({"amount": -100}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": "1e15"}, "amount"),
    ({"amount": "ten"}, "amount"),
    ({"amount": [1]}, "amount"),
    ({"amount": True}, "amount"),
    ({"amount": 100, "currency": "USD"}, "currency"),
    ({"amount": 100, "currency": 5}, "currency"),
    ({"amount": 100, "checkout": {"speedPolicy": "Warp"}}, "checkout.speedPolicy"),
    ({"amount": 100, "checkout": {"expirationMinutes": -5}}, "checkout.expirationMinutes"),
    ({"amount": 100, "checkout": {"expirationMinutes": "soon"}}, "checkout.expirationMinutes"),
    ({"amount": 100, "checkout": {"paymentTolerance": 101}}, "checkout.paymentTolerance"),
    ({"amount": 100, "checkout": {"redirectURL": "javascript:alert(1)"}}, "checkout.redirectURL"),
    ({"amount": 100, "checkout": {"defaultLanguage": "xx"}}, "checkout.defaultLanguage"),
    ({"amount": 100, "checkout": "fast"}, "checkout"),
    ({"amount": 100, "metadata": "order 5"}, "metadata"),
    ({"amount": 100, "metadata": {"orderId": {"nested": 1}}}, "metadata.orderId"),
    ({"amount": 100, "surprise": 1}, "surprise"),
    ({"amount": "0.000000001", "currency": "BTC"}, "amount"),
])
def test_bad_fields_get_422_with_the_path_and_nothing_is_written(client, merchant, gateway, body, path):
    store_id, token = merchant
    res = create(client, store_id, token, body)
    assert res.status_code == 422
    errors = res.get_json()
    assert isinstance(errors, list) and errors
    assert path in [e["path"] for e in errors]
    assert all(e["message"] for e in errors)
    assert count_invoices(gateway) == 0


def test_every_problem_is_reported_at_once(client, merchant):
    store_id, token = merchant
    res = create(client, store_id, token, {"amount": "-1", "currency": "EUR",
                                           "checkout": {"speedPolicy": "x"}})
    assert {e["path"] for e in res.get_json()} == {"amount", "currency", "checkout.speedPolicy"}


@pytest.mark.parametrize("data,content_type,status,code", [
    (b"{not json", "application/json", 400, "invalid-json"),
    (b'{"amount": 100}', "text/plain", 400, "unsupported-content-type"),
    (b"", "application/json", 400, "missing-body"),
    (b"[1,2]", "application/json", 422, None),
])
def test_malformed_bodies_are_refused_clearly(client, merchant, gateway, data, content_type, status, code):
    store_id, token = merchant
    res = client.post(f"/api/v1/stores/{store_id}/invoices", data=data,
                      headers={**auth(token), "Content-Type": content_type})
    assert res.status_code == status
    if code:
        assert res.get_json()["code"] == code and res.get_json()["message"]
    assert count_invoices(gateway) == 0


def test_an_oversized_body_is_413(client, merchant, gateway):
    store_id, token = merchant
    big = json.dumps({"amount": 100, "metadata": {"x": "y" * 100_000}})
    res = client.post(f"/api/v1/stores/{store_id}/invoices", data=big,
                      headers={**auth(token), "Content-Type": "application/json"})
    assert res.status_code == 413
    assert res.get_json()["code"] == "body-too-large"
    assert count_invoices(gateway) == 0


def test_amounts_as_strings_or_numbers_and_btc_and_sats_prices(client, merchant, gateway):
    store_id, token = merchant
    as_number = create(client, store_id, token, {"amount": 15000}).get_json()
    as_btc = create(client, store_id, token, {"amount": "0.0015", "currency": "btc"}).get_json()
    as_sats = create(client, store_id, token, {"amount": 2500, "currency": "SATS"}).get_json()
    with gateway.db.read() as session:
        assert session.get(Invoice, as_number["id"]).due_sats == 10_000
        btc = session.get(Invoice, as_btc["id"])
        assert btc.due_sats == 150_000 and btc.amount_krw == 225_000 and btc.currency == "BTC"
        assert session.get(Invoice, as_sats["id"]).due_sats == 2500


def test_a_missing_amount_makes_a_top_up_invoice(client, merchant):
    store_id, token = merchant
    body = create(client, store_id, token, {"metadata": {"orderId": "tip-jar"}}).get_json()
    assert body["type"] == "TopUp" and body["amount"] == "0" and body["currency"] == "KRW"
    in_btc = create(client, store_id, token, {"currency": "BTC"}).get_json()
    assert in_btc["type"] == "TopUp" and in_btc["currency"] == "BTC"


def test_without_a_key_it_is_401_and_with_the_wrong_store_403(client, app, merchant):
    store_id, token = merchant
    other_store, other_token = make_merchant(app, name="Jagalchi Fish")
    assert client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 1}).status_code == 401
    res = create(client, store_id, other_token, {"amount": 1000})
    assert res.status_code == 403 and res.get_json()["code"] == "missing-permission"
    res = client.get(f"/api/v1/stores/{store_id}/invoices", headers=auth("not-a-key"))
    assert res.status_code == 401


def test_another_stores_invoice_is_a_404(client, app, merchant):
    store_id, token = merchant
    invoice = create(client, store_id, token, {"amount": 1000}).get_json()
    _, other_token = make_merchant(app, name="Jagalchi Fish")
    res = client.get(f"/api/v1/invoices/{invoice['id']}", headers=auth(other_token))
    assert res.status_code == 404 and res.get_json()["code"] == "invoice-not-found"
    res = client.get(f"/api/v1/invoices/{invoice['id']}/payment-methods", headers=auth(other_token))
    assert res.status_code == 404
    res = client.post(f"/api/v1/invoices/{invoice['id']}/status", json={"status": "Settled"},
                      headers=auth(other_token))
    assert res.status_code == 404


def test_a_key_without_the_permission_gets_403(client, app):
    from merchants.service import CAN_VIEW_INVOICES

    store_id, token = make_merchant(app, permissions=[CAN_VIEW_INVOICES])
    res = create(client, store_id, token, {"amount": 1000})
    assert res.status_code == 403
    body = res.get_json()
    assert body["code"] == "missing-permission" and "cancreateinvoice" in body["message"]
    assert client.get(f"/api/v1/stores/{store_id}/invoices", headers=auth(token)).status_code == 200


def test_a_revoked_key_stops_working(client, app, merchant, gateway):
    from merchants.models import ApiKey
    from merchants.service import revoke_api_key

    store_id, token = merchant
    with gateway.db.write() as session:
        key = session.exec(select(ApiKey).where(ApiKey.store_id == store_id)).one()
        assert revoke_api_key(session, store_id, key.id)
    assert create(client, store_id, token, {"amount": 1000}).status_code == 401


def test_get_works_on_both_paths_with_and_without_trailing_slash(client, merchant):
    store_id, token = merchant
    invoice = create(client, store_id, token, {"amount": 1000}).get_json()
    for path in (f"/api/v1/invoices/{invoice['id']}", f"/api/v1/invoices/{invoice['id']}/",
                 f"/api/v1/stores/{store_id}/invoices/{invoice['id']}",
                 f"/api/v1/stores/{store_id}/invoices/{invoice['id']}/"):
        res = client.get(path, headers=auth(token))
        assert res.status_code == 200, path
        assert res.get_json()["id"] == invoice["id"]
    res = client.post(f"/api/v1/stores/{store_id}/invoices/", json={"amount": 5},
                      headers=auth(token))
    assert res.status_code == 200
    assert client.get("/api/v1/invoices/nope", headers=auth(token)).get_json()["code"] == "invoice-not-found"


def test_listing_filters_by_status_order_id_dates_and_pages(client, merchant, clock):
    store_id, token = merchant
    first = create(client, store_id, token, {"amount": 1000, "metadata": {"orderId": "o-1"}}).get_json()
    clock.advance(hours=1)
    second = create(client, store_id, token, {"amount": 2000, "metadata": {"orderId": "o-2"}}).get_json()
    client.post(f"/api/v1/invoices/{second['id']}/status", json={"status": "settled"}, headers=auth(token))
    url = f"/api/v1/stores/{store_id}/invoices"

    def ids(query=""):
        res = client.get(url + query, headers=auth(token))
        assert res.status_code == 200, res.get_json()
        return [i["id"] for i in res.get_json()]

    assert ids() == [second["id"], first["id"]]
    assert ids("?status=SETTLED") == [second["id"]]
    assert ids("?status=new&status=Settled") == [second["id"], first["id"]]
    assert ids("?orderId=o-1") == [first["id"]]
    assert ids(f"?startDate={first['createdTime'] + 1}") == [second["id"]]
    assert ids(f"?endDate={first['createdTime']}") == [first["id"]]
    assert ids("?skip=1&take=1") == [first["id"]]
    assert client.get(url + "?status=Paid", headers=auth(token)).status_code == 422
    assert client.get(url + "?take=lots", headers=auth(token)).status_code == 422


def test_marking_status_accepts_any_case_and_records_the_event(client, merchant, gateway):
    store_id, token = merchant
    invoice = create(client, store_id, token, {"amount": 1000}).get_json()
    res = client.post(f"/api/v1/stores/{store_id}/invoices/{invoice['id']}/status",
                      json={"status": "iNvAlId"}, headers=auth(token))
    assert res.status_code == 200
    assert res.get_json()["status"] == "Invalid" and res.get_json()["additionalStatus"] == "Marked"
    with gateway.db.read() as session:
        types = [e.event_type for e in session.exec(select(InvoiceEvent).order_by(InvoiceEvent.id))]
    assert types == ["InvoiceCreated", "InvoiceInvalid"]


@pytest.mark.parametrize("data", [b"", b"null", b"{}", b'{"status": "Paid"}', b'{"status": 3}'])
def test_marking_with_an_empty_null_or_bad_body_is_a_clear_422(client, merchant, data):
    store_id, token = merchant
    invoice = create(client, store_id, token, {"amount": 1000}).get_json()
    res = client.post(f"/api/v1/invoices/{invoice['id']}/status", data=data,
                      headers={**auth(token), "Content-Type": "application/json"})
    assert res.status_code == 422
    assert res.get_json()[0]["path"] == "status"


def test_archive_hides_an_invoice_from_the_list_and_unarchive_accepts_an_empty_body(client, merchant):
    store_id, token = merchant
    invoice = create(client, store_id, token, {"amount": 1000}).get_json()
    assert client.delete(f"/api/v1/stores/{store_id}/invoices/{invoice['id']}",
                         headers=auth(token)).status_code == 200
    listed = client.get(f"/api/v1/stores/{store_id}/invoices", headers=auth(token)).get_json()
    assert listed == []
    res = client.post(f"/api/v1/invoices/{invoice['id']}/unarchive", data=b"null",
                      headers={**auth(token), "Content-Type": "application/json"})
    assert res.status_code == 200 and res.get_json()["archived"] is False


def test_an_idempotency_key_replays_the_first_answer_and_refuses_a_different_body(client, merchant, gateway):
    store_id, token = merchant
    first = create(client, store_id, token, {"amount": 1000}, **{"Idempotency-Key": "k-1"})
    again = create(client, store_id, token, {"amount": 1000}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = create(client, store_id, token, {"amount": 2000}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and other.get_json()["code"] == "idempotency-key-reused"
    assert count_invoices(gateway) == 1
    with gateway.db.read() as session:
        assert session.exec(select(func.count()).select_from(IdempotencyRecord)).one() == 1


def test_merchant_create_cli_prints_store_and_key_that_work(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["merchant", "create", "--name", "Gamcheon Gallery",
                                 "--district", "saha-gu"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    res = create(client, created["storeId"], created["apiKey"], {"amount": 5000})
    assert res.status_code == 200
    bad = runner.invoke(args=["merchant", "create", "--name", "X", "--district", "Tokyo"])
    assert bad.exit_code != 0 and "unknown district" in bad.output


def test_wallet_gap_reports_highest_index_and_needed_gap(app, client, merchant):
    store_id, token = merchant
    for _ in range(3):
        create(client, store_id, token, {"amount": 1000})
    result = app.test_cli_runner().invoke(args=["wallet", "gap"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    treasury = [r for r in rows if r["owner"] == "treasury"][0]
    assert treasury["highestIndexUsed"] == 2 and treasury["addressesIssued"] == 3
    assert treasury["gapLimitNeeded"] >= 20
