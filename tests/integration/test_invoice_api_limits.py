"""Invoice creation refuses to quote without a good rate, and is rate limited per key."""
from __future__ import annotations

import pytest
from sqlmodel import func, select

from payments.models import Invoice
from tests.conftest import auth, make_merchant


@pytest.fixture
def app_config(app_config):
    app_config["invoice_rate_limit"] = "3 per minute"
    return app_config


def test_a_fourth_invoice_in_a_minute_is_429_for_that_key_only(client, app, merchant, gateway):
    store_id, token = merchant
    url = f"/api/v1/stores/{store_id}/invoices"
    codes = [client.post(url, json={"amount": 1000}, headers=auth(token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    res = client.post(url, json={"amount": 1000}, headers=auth(token))
    assert res.get_json()["code"] == "rate-limited" and res.headers.get("Retry-After")
    other_store, other_token = make_merchant(app, name="Other")
    assert client.post(f"/api/v1/stores/{other_store}/invoices", json={"amount": 1000},
                       headers=auth(other_token)).status_code == 200
    with gateway.db.read() as session:
        assert session.exec(select(func.count()).select_from(Invoice)).one() == 4


def test_with_no_fresh_primary_rate_creation_is_503_and_nothing_is_written(app_config, db_url):
    from app import create_app
    from tests.conftest import wipe

    app_config["rate_sources"] = "exchange=http://127.0.0.1:9,upbit=http://127.0.0.1:9"
    application = create_app(app_config)
    try:
        store_id, token = make_merchant(application)
        client = application.test_client()
        application.extensions["busanpay"].rates.poll_and_store()  # both sources refuse
        res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 1000},
                          headers=auth(token))
        assert res.status_code == 503
        body = res.get_json()
        assert body["code"] == "rate-unavailable" and "exchange" in body["message"]
        with application.extensions["busanpay"].db.read() as session:
            assert session.exec(select(func.count()).select_from(Invoice)).one() == 0
    finally:
        application.extensions["busanpay"].close()
        wipe(db_url)
