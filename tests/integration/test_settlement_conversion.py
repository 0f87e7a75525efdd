"""Selling treasury BTC at an Upbit-compatible exchange double over HTTP; FX gains and losses."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlmodel import select

from settlement.conversion import ExchangeError, UpbitClient, bearer_token, convert
from tests.fakes.exchange_private import ExchangeFake
from tests.integration.test_settlement_support import (balance_of, new_store, post_all,
                                                       settled_invoice, sgateway)  # noqa: F401


@pytest.fixture
def exchange():
    with ExchangeFake(price=Decimal("150400000")) as fake:
        yield fake


def client_for(fake, secret=None) -> UpbitClient:
    return UpbitClient(fake.url, fake.access_key, secret or fake.secret_key, poll_seconds=0.01)


def test_the_jwt_is_hs256_over_the_access_key_a_fresh_nonce_and_a_sha512_query_hash():
    import base64
    import hashlib
    import hmac
    import json

    import jwt

    secret = "s" * 40  # Upbit's secret keys are 40 characters
    token = bearer_token("a", secret, {"uuid": "x"})
    head, body, sig = token.split(".")
    pad = lambda p: p + "=" * (-len(p) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(head))) == {"alg": "HS256", "typ": "JWT"}
    # the signature checked by hand, independently of the library that made it
    assert base64.urlsafe_b64decode(pad(sig)) == hmac.new(secret.encode(), f"{head}.{body}".encode(),
                                                         hashlib.sha256).digest()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims == {"access_key": "a", "nonce": claims["nonce"],
                      "query_hash": hashlib.sha512(b"uuid=x").hexdigest(),
                      "query_hash_alg": "SHA512"}
    again = jwt.decode(bearer_token("a", secret, {"uuid": "x"}), secret,
                       algorithms=["HS256"])
    assert again["nonce"] != claims["nonce"]
    assert "query_hash" not in jwt.decode(bearer_token("a", secret, None), secret,
                                            algorithms=["HS256"])


def test_selling_the_pool_books_the_executed_won_and_the_fx_gain(app, sgateway, exchange):
    store = new_store(app)
    settled_invoice(sgateway, store, 15_000)
    settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    result = convert(sgateway, client_for(exchange), min_sats=1)
    # 20,000 sats at 150,400,000 = ₩30,080, less the 0.05 % fee (₩15.04) = ₩30,064 (floored)
    assert result["sats"] == 20_000 and result["executedKrw"] == "30064"
    assert result["lockedKrw"] == "30000" and result["fx"] == "64"
    assert balance_of(sgateway, "conversion:btc") == 0 and balance_of(sgateway, "conversion:krw") == 0
    assert balance_of(sgateway, "treasury:btc") == 0
    assert balance_of(sgateway, "exchange:krw") == 30_064
    assert balance_of(sgateway, "fx:krw") == -64  # a credit: a gain
    assert balance_of(sgateway, f"merchant_payable:{store}") == -29_700  # merchants unaffected
    assert convert(sgateway, client_for(exchange), min_sats=1)["converted"] is None
    assert exchange.rejected == [] and len(exchange.orders) == 1
    from settlement.reconcile import check_ledger

    assert check_ledger(sgateway)["ok"]


def test_a_sale_at_a_lower_rate_is_an_fx_loss(app, sgateway):
    with ExchangeFake(price=Decimal("149000000"), fee_rate=Decimal("0")) as fake:
        settled_invoice(sgateway, new_store(app), 15_000)
        post_all(sgateway)
        result = convert(sgateway, client_for(fake), min_sats=1)
    assert result["fx"] == "-100" and balance_of(sgateway, "fx:krw") == 100


def test_an_exchange_error_after_the_order_was_made_never_sells_twice(app, sgateway, exchange):
    settled_invoice(sgateway, new_store(app), 15_000)
    post_all(sgateway)
    exchange.fail_next("500_after_create")
    client = client_for(exchange)
    first = convert(sgateway, client, min_sats=1)
    # the client looked the identifier up after the 500 and found the order
    assert first.get("sats") == 10_000 and len(exchange.orders) == 1
    assert convert(sgateway, client, min_sats=1)["converted"] is None
    assert len(exchange.orders) == 1


def test_a_crash_between_ordering_and_posting_resumes_with_the_same_identifier(app, sgateway, exchange):
    from settlement.models import Conversion

    settled_invoice(sgateway, new_store(app), 15_000)
    post_all(sgateway)

    class CrashingAfterSale:
        name = "upbit"

        def sell_btc(self, sats, identifier):
            client_for(exchange).sell_btc(sats, identifier)
            raise ExchangeError("connection lost after the sale")

    assert convert(sgateway, CrashingAfterSale(), min_sats=1)["converted"] is None
    with sgateway.db.read() as session:
        [pending] = session.exec(select(Conversion)).all()
    assert pending.status == "created" and len(exchange.orders) == 1
    done = convert(sgateway, client_for(exchange), min_sats=1)
    assert done["converted"] == pending.id and len(exchange.orders) == 1


def test_a_wrong_secret_is_refused_by_the_exchange(exchange):
    with pytest.raises(ExchangeError):
        client_for(exchange, secret="a-wrong-secret-key-of-forty-characters0").sell_btc(1000, "x1")
    assert exchange.rejected == ["bad signature"] and exchange.orders == {}
