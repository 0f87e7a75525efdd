"""Logs a city operator can use: JSON lines with the request id, route template, store and
invoice ids; no API key, Authorization header, refund token or configured secret, ever."""
from __future__ import annotations

import io
import json
import logging

import pytest

from operations import secrets_of
from operations.logs import configure_logging
from tests.conftest import auth
from tests.integration.test_accounts_login import csrf_token
from tests.integration.test_payment_scenarios import demo_chain  # noqa: F401
from tests.integration.test_refund_pages import open_claim, overpaid, payer, world  # noqa: F401


@pytest.fixture
def logs(gateway):
    stream = io.StringIO()
    handler = configure_logging("json", secrets_of(gateway.settings), stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_request_is_one_json_line_with_its_id_route_and_store(client, merchant, logs):
    store_id, token = merchant
    res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "15000"},
                      headers={**auth(token), "X-Request-Id": "nginx-4f2a"})
    assert res.status_code == 200 and res.headers["X-Request-Id"] == "nginx-4f2a"
    invoice_id = res.get_json()["id"]
    res = client.get(f"/api/v1/invoices/{invoice_id}", headers=auth(token))
    fresh_id = res.headers["X-Request-Id"]
    assert len(fresh_id) == 32  # none offered: a new one
    create, read = [l for l in lines(logs) if l["message"] == "request"]
    assert create["timestamp"].endswith("Z") and create["level"] == "INFO"
    assert {k: create[k] for k in ("request_id", "route", "method", "status", "store_id")} == {
        "request_id": "nginx-4f2a", "route": "/api/v1/stores/<store_id>/invoices",
        "method": "POST", "status": 200, "store_id": store_id}
    assert {k: read.get(k) for k in ("request_id", "route", "invoice_id", "store_id")} == {
        "request_id": fresh_id, "route": "/api/v1/invoices/<invoice_id>",
        "invoice_id": invoice_id, "store_id": store_id}
    assert token not in logs.getvalue()


def test_a_request_id_that_is_not_a_plain_token_is_replaced(client, logs):
    res = client.get("/api/v1/openapi.json", headers={"X-Request-Id": "a b\"}{" * 3})
    assert res.headers["X-Request-Id"] != "a b\"}{" * 3 and len(res.headers["X-Request-Id"]) == 32


def test_secrets_are_redacted_wherever_they_appear_in_a_message(app, client, merchant, logs):
    store_id, token = merchant
    log = logging.getLogger("busanpay.test")
    secret = app.extensions["busanpay"].settings.secret_key
    log.warning("upstream said: %s", {"Authorization": f"token {token}", "X-Other": "1"})
    log.warning("Authorization: Bearer %s", "abcdefghijklmnop")
    log.warning("retrying with token %s", token)
    log.warning("api_key=%s; secret %s", token, secret)
    try:
        raise RuntimeError(f"failed: Authorization: token {token}")
    except RuntimeError:
        log.exception("boom")
    with app.test_request_context("/api/v1/invoices/x", headers=auth(token)):
        log.error("the key %s was refused", token)  # the request's own credential
    out = logs.getvalue()
    assert token not in out and secret not in out and "abcdefghijklmnop" not in out
    assert out.count("[redacted]") >= 7
    assert "X-Other" in out  # the rest of the message stays


def test_a_refund_claim_token_never_reaches_the_logs(app, world, logs):
    invoice_id = overpaid(world)
    tourist = payer(app)
    link = open_claim(tourist, invoice_id)  # /refund/<claim_id>: the id is no secret
    from settlement.refund_pages import KEY_COOKIE

    key = tourist.get_cookie(KEY_COOKIE, path=link.removeprefix("http://localhost")).value
    assert len(key) >= 40
    assert tourist.get(link).status_code == 200
    # the saved link's key, posted from another browser, is in a body, never a URL or a log
    other = payer(app)
    csrf = csrf_token(other, link)
    assert other.post(f"{link}/key", data={"csrf_token": csrf, "key": key}).status_code in (200, 303)
    logging.getLogger("werkzeug").info('127.0.0.1 - - "GET %s HTTP/1.1" 200 -', link)
    out = logs.getvalue()
    assert key not in out
    routes = [l.get("route") for l in lines(logs) if l["message"] == "request"]
    assert "/refund/<claim_id>" in routes and "/refund/<claim_id>/key" in routes


def test_text_format_carries_the_same_context(client, merchant, gateway):
    stream = io.StringIO()
    handler = configure_logging("text", secrets_of(gateway.settings), stream=stream)
    try:
        store_id, token = merchant
        client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "15000"},
                    headers=auth(token))
    finally:
        logging.getLogger().removeHandler(handler)
    line = [l for l in stream.getvalue().splitlines() if "busanpay.access" in l][0]
    assert "INFO busanpay.access: request [" in line and f"store_id={store_id}" in line
    assert "route=/api/v1/stores/<store_id>/invoices" in line and token not in stream.getvalue()


def test_an_unknown_log_format_is_refused_at_start():
    from settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="BUSANPAY_LOG_FORMAT"):
        Settings.from_env({"BUSANPAY_LOG_FORMAT": "xml"}, instance_path="/tmp/x")
