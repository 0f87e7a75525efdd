"""The real HTTP rate sources against the fake exchanges on 127.0.0.1."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from payments.rates import (USER_AGENT, RateBoard, RateLimited, RateQuote, RateSourceError,
                            RateUnavailable, parse_sources)
from tests.fakes.exchanges import EXCHANGES, FakeExchanges

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta) -> None:
        with self._lock:
            self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fx(clock):
    with FakeExchanges(clock=clock) as fake:
        yield fake


def source(fx, name: str, clock, *, timeout: float = 2.0):
    [built] = parse_sources(fx.spec(name), "regtest", clock=clock, timeout=timeout)
    return built


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("style", ["number", "string", "exponent"])
def test_each_wire_format_is_read_over_http_whether_values_are_numbers_or_strings(
        fx, clock, exchange, style):
    fx.values_as(exchange, style)
    fx.set_price(exchange, Decimal("151234567.5"))
    fx.set_trade_time(exchange, T0 - timedelta(seconds=2, milliseconds=250))
    clock.advance(seconds=1)
    got = source(fx, exchange, clock).fetch()
    assert got == RateQuote(source=exchange, krw_per_btc=Decimal("151234567.5"),
                            fetched_at=T0 + timedelta(seconds=1),
                            exchange_time=T0 - timedelta(seconds=2, milliseconds=250))
    assert type(got.krw_per_btc) is Decimal


@pytest.mark.parametrize("exchange, path, query", [
    ("upbit", "/upbit/v1/ticker", {"markets": ["KRW-BTC"]}),
    ("bithumb", "/bithumb/v1/ticker", {"markets": ["KRW-BTC"]}),
    ("exchange", "/exchange/v1/ticker", {"markets": ["KRW-BTC"]}),
    ("korbit", "/korbit/v2/tickers", {"symbol": ["btc_krw"]}),
    ("coinone", "/coinone/public/v2/ticker_new/KRW/BTC", {}),
])
def test_each_source_asks_the_documented_endpoint_with_our_user_agent(fx, clock, exchange,
                                                                      path, query):
    source(fx, exchange, clock).fetch()
    [request] = fx.requests_to(exchange)
    assert (request.path, request.query) == (path, query)
    assert request.headers["User-Agent"] == USER_AGENT


def test_the_fake_serves_the_full_field_sets_of_the_real_tickers(fx):
    upbit = requests.get(fx.base_url("upbit") + "/v1/ticker?markets=KRW-BTC", timeout=2).json()[0]
    assert {"market", "trade_price", "trade_timestamp", "acc_trade_price_24h",
            "highest_52_week_price", "signed_change_rate", "timestamp"} <= set(upbit)
    korbit = requests.get(fx.base_url("korbit") + "/v2/tickers?symbol=btc_krw", timeout=2).json()
    assert korbit["success"] is True
    assert {"symbol", "close", "prevClose", "bestBidPrice", "bestAskPrice", "quoteVolume",
            "lastTradedAt"} <= set(korbit["data"][0])
    coinone = requests.get(fx.base_url("coinone") + "/public/v2/ticker_new/KRW/BTC",
                           timeout=2).json()
    assert (coinone["result"], coinone["error_code"]) == ("success", "0")
    assert {"quote_currency", "target_currency", "last", "best_asks", "best_bids",
            "quote_volume", "timestamp", "id"} <= set(coinone["tickers"][0])


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("break_it, message", [
    (lambda fx, ex: fx.fail(ex, status=500), "HTTP 500"),
    (lambda fx, ex: fx.fail(ex, status=503, body="<html>maintenance</html>"), "HTTP 503"),
    (lambda fx, ex: fx.malformed(ex), "not valid JSON"),
    (lambda fx, ex: fx.malformed(ex, '[{"market":"KRW-BTC","trade_price":NaN}]'),
     "not valid JSON"),
    (lambda fx, ex: fx.set_price(ex, 0), "not positive"),
    (lambda fx, ex: fx.set_price(ex, -150000000), "not positive"),
    (lambda fx, ex: fx.set_price(ex, None), "has no"),
    (lambda fx, ex: fx.empty(ex), "no .*ticker"),
])
def test_a_broken_answer_is_a_source_error_and_never_a_quote(fx, clock, exchange, break_it,
                                                              message):
    break_it(fx, exchange)
    with pytest.raises(RateSourceError, match=message):
        source(fx, exchange, clock).fetch()


@pytest.mark.parametrize("exchange", ["korbit", "coinone"])
def test_an_exchange_level_error_inside_a_200_answer_is_a_source_error(fx, clock, exchange):
    fx.fail(exchange, status=200)
    with pytest.raises(RateSourceError, match="reported an error"):
        source(fx, exchange, clock).fetch()


def test_a_slow_exchange_times_out_quickly_as_a_source_error(fx, clock):
    fx.slow("upbit", 3)
    started = time.monotonic()
    with pytest.raises(RateSourceError, match="no answer within 0.3 s"):
        source(fx, "upbit", clock, timeout=0.3).fetch()
    assert time.monotonic() - started < 2


def test_a_closed_port_is_a_source_error(clock):
    with FakeExchanges() as gone:
        spec = gone.spec("upbit")
    [upbit] = parse_sources(spec, "regtest", clock=clock, timeout=1)
    with pytest.raises(RateSourceError, match="request failed"):
        upbit.fetch()


def test_a_429_makes_the_source_back_off_for_retry_after_and_poll_once_skips_it(fx, clock):
    board = RateBoard(parse_sources(fx.spec("upbit", "bithumb"), "regtest", clock=clock),
                      clock=clock)
    fx.rate_limit("upbit", retry_after=20)
    results = board.poll_once()
    assert isinstance(results["upbit"], RateLimited) and "HTTP 429" in str(results["upbit"])
    assert isinstance(results["bithumb"], RateQuote)
    fx.recover("upbit")
    clock.advance(seconds=19)
    assert set(board.poll_once()) == {"bithumb"}
    assert len(fx.requests_to("upbit")) == 1
    assert board.health()[0]["backing_off_until"] == "2026-11-23T03:00:20+00:00"
    with pytest.raises(RateLimited, match="backing off"):
        board.primary.fetch()  # a direct fetch does not hit the exchange either
    assert len(fx.requests_to("upbit")) == 1
    clock.advance(seconds=1)
    assert isinstance(board.poll_once()["upbit"], RateQuote)
    assert len(fx.requests_to("upbit")) == 2
    assert board.health()[0]["backing_off_until"] is None


def test_without_retry_after_the_back_off_doubles_from_ten_seconds(fx, clock):
    [upbit] = parse_sources(fx.spec("upbit"), "regtest", clock=clock)
    fx.rate_limit("upbit")
    with pytest.raises(RateLimited) as first:
        upbit.fetch()
    assert first.value.retry_at == T0 + timedelta(seconds=10)
    clock.advance(seconds=10)
    with pytest.raises(RateLimited) as second:
        upbit.fetch()
    assert second.value.retry_at == T0 + timedelta(seconds=30)  # 10 s later + 20 s
    fx.recover("upbit")
    clock.advance(seconds=20)
    upbit.fetch()
    fx.rate_limit("upbit")
    clock.advance(seconds=1)
    with pytest.raises(RateLimited) as after_success:
        upbit.fetch()
    assert after_success.value.retry_at == clock() + timedelta(seconds=10)


def test_a_board_over_http_quotes_cross_checks_and_refuses_a_disagreeing_primary(fx, clock):
    spec = fx.spec("exchange", "upbit", "bithumb", "korbit", "coinone")
    board = RateBoard(parse_sources(spec, "regtest", clock=clock), clock=clock,
                      spread=Decimal("0.005"))
    fx.set_price("upbit", Decimal("151000000"))
    fx.set_price("bithumb", Decimal("149000000"))
    board.poll_once()
    locked = board.current()
    assert locked.raw_krw_per_btc == Decimal("150000000")
    assert locked.reference_median == Decimal("150000000")
    assert locked.krw_per_btc == Decimal("149250000")
    fx.set_price("exchange", Decimal("160000000"))
    clock.advance(seconds=15)
    board.poll_once()
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    assert "exchange" in caught.value.message and "160000000" in caught.value.message
    assert set(caught.value.details) == {"exchange", "upbit", "bithumb", "korbit", "coinone"}


def test_a_primary_failing_from_the_start_refuses_and_health_says_why(fx, clock):
    board = RateBoard(parse_sources(fx.spec("exchange", "upbit"), "regtest", clock=clock),
                      clock=clock)
    fx.fail("exchange", status=502)
    board.poll_once()
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    assert "exchange" in caught.value.message and "HTTP 502" in caught.value.message
    health = {row["name"]: row for row in board.health()}
    assert health["exchange"]["last_error"] == "exchange: HTTP 502"
    assert health["upbit"]["fresh"] is True and health["upbit"]["rate"] == "150000000"


def test_a_slow_reference_does_not_hold_up_the_others_because_polls_run_in_parallel(fx, clock):
    board = RateBoard(parse_sources(fx.spec("exchange", "upbit", "korbit"), "regtest",
                                    clock=clock, timeout=1.0), clock=clock)
    fx.slow("upbit", 3)
    fx.slow("korbit", 3)
    started = time.monotonic()
    results = board.poll_once()
    assert time.monotonic() - started < 1.9
    assert isinstance(results["exchange"], RateQuote)
    assert isinstance(results["upbit"], RateSourceError)
    assert board.current().reference_median is None
