"""Rate sources and the RateBoard cross-check: pure logic, fake sources, an injected clock."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import event, given, settings, strategies as st

from payments.rates import (
    BithumbSource, CoinoneSource, ExchangeSource, FixedSource, KorbitSource, LockedRate,
    RateBoard, RateLimited, RateQuote, RateSourceError, RateUnavailable, UpbitSource,
    check_rate, parse_coinone_ticker, parse_korbit_ticker, parse_sources, parse_upbit_ticker)

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


class StubSource:
    """A polled source whose next answer the test sets: a rate or an error."""

    always_fresh = False

    def __init__(self, name: str, clock: Clock, rate: str | None = None):
        self.name = name
        self.clock = clock
        self.answer: str | Exception | None = rate
        self.calls = 0
        self.next_allowed_at: datetime | None = None

    def fetch(self) -> RateQuote:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is None:
            raise RateSourceError(f"{self.name}: nothing to say")
        return RateQuote(self.name, Decimal(self.answer), self.clock(), None)


def quote(source: str, rate: str, at: datetime) -> RateQuote:
    return RateQuote(source=source, krw_per_btc=Decimal(rate), fetched_at=at, exchange_time=None)


def board_with(clock: Clock, *rates: str | None, **options) -> tuple[RateBoard, list[StubSource]]:
    """A board whose sources are primary, ref1, ref2, ... polled once with the given rates."""
    names = ["primary"] + [f"ref{i}" for i in range(1, len(rates))]
    sources = [StubSource(name, clock, rate) for name, rate in zip(names, rates)]
    board = RateBoard(sources, clock=clock, **options)
    board.poll_once()
    return board, sources


# -- parse_sources ---------------------------------------------------------------------

def test_every_exchange_name_builds_its_source_with_the_public_api_host_by_default():
    sources = parse_sources("upbit, bithumb ,korbit,coinone", "bitcoin")
    assert [type(s) for s in sources] == [UpbitSource, BithumbSource, KorbitSource, CoinoneSource]
    assert [s.url for s in sources] == [
        "https://api.upbit.com/v1/ticker?markets=KRW-BTC",
        "https://api.bithumb.com/v1/ticker?markets=KRW-BTC",
        "https://api.korbit.co.kr/v2/tickers?symbol=btc_krw",
        "https://api.coinone.co.kr/public/v2/ticker_new/KRW/BTC",
    ]
    assert len({id(s.session) for s in sources}) == 1  # one shared requests.Session


def test_a_base_url_override_and_the_partner_exchange_prefix_are_honoured():
    sources = parse_sources("exchange=https://partner.example/api/,upbit=http://127.0.0.1:1234",
                            "regtest")
    assert isinstance(sources[0], ExchangeSource) and sources[0].name == "exchange"
    assert sources[0].url == "https://partner.example/api/v1/ticker?markets=KRW-BTC"
    assert sources[1].url == "http://127.0.0.1:1234/v1/ticker?markets=KRW-BTC"


def test_a_fixed_rate_is_always_fresh_and_exact():
    [fixed] = parse_sources("fixed:150000000", "regtest", clock=Clock())
    assert isinstance(fixed, FixedSource) and fixed.always_fresh and fixed.name == "fixed"
    assert fixed.fetch() == quote("fixed", "150000000", T0)


def test_a_fixed_rate_is_refused_on_mainnet_with_a_clear_message():
    with pytest.raises(ValueError, match="fixed rate is refused on bitcoin mainnet"):
        parse_sources("upbit,fixed:150000000", "bitcoin")


@pytest.mark.parametrize("spec, message", [
    ("", "no rate sources configured"),
    ("   ", "no rate sources configured"),
    ("upbit,,bithumb", "is empty"),
    ("binance", "unknown rate source 'binance'"),
    ("upbit,bithumb,upbit=http://127.0.0.1:1", "listed twice"),
    ("exchange", "needs its URL"),
    ("exchange=", "empty URL"),
    ("upbit=ftp://x", "not an http"),
    ("upbit=https://x/?a=1", "without query"),
    ("fixed:0", "must be a positive decimal"),
    ("fixed:-5", "must be a positive decimal"),
    ("fixed:abc", "must be a positive decimal"),
    ("fixed:NaN", "must be a positive decimal"),
    ("fixed=150000000", "fixed:150000000"),
])
def test_a_malformed_source_spec_is_refused_with_a_message_that_says_why(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_sources(spec, "regtest")


def test_plain_http_to_a_remote_host_is_refused_on_mainnet_but_loopback_is_allowed():
    with pytest.raises(ValueError, match="plain http"):
        parse_sources("exchange=http://partner.example", "bitcoin")
    assert parse_sources("exchange=http://127.0.0.1:8080", "bitcoin")[0].name == "exchange"


# -- values and wire formats -----------------------------------------------------------

@pytest.mark.parametrize("bad", ["0", "-1", "0.000", "NaN", "sNaN", "Infinity", "-Infinity",
                                 1.5e8, None, True, "", "abc", "1e15", "1e-19", [1]])
def test_zero_negative_non_finite_float_and_absurd_rates_are_never_accepted(bad):
    with pytest.raises(ValueError):
        check_rate(bad)
    with pytest.raises((ValueError, TypeError)):
        RateQuote("upbit", bad, T0, None)


def test_rates_keep_their_exact_value_with_a_canonical_text():
    assert str(check_rate("150000000.0")) == "150000000"
    assert str(check_rate(Decimal("1.5E+8"))) == "150000000"
    assert str(check_rate(" 150000000.50 ")) == "150000000.5"
    assert str(check_rate(150000000)) == "150000000"


def test_a_quote_needs_an_aware_time_and_is_kept_in_utc():
    with pytest.raises(ValueError, match="timezone-aware"):
        RateQuote("upbit", Decimal("1"), datetime(2026, 1, 1), None)
    seoul = T0.astimezone(timezone(timedelta(hours=9)))
    assert RateQuote("upbit", Decimal("1"), seoul, None).fetched_at.tzinfo == timezone.utc


def test_the_upbit_shape_reads_trade_price_and_trade_timestamp_as_numbers_or_strings():
    for value in (Decimal("150000000.0"), "150000000", 150000000):
        rate, when = parse_upbit_ticker([{"market": "KRW-ETH", "trade_price": 1},
                                         {"market": "KRW-BTC", "trade_price": value,
                                          "trade_timestamp": 1732000000000}])
        assert rate == Decimal("150000000")
        assert when == datetime(2024, 11, 19, 7, 6, 40, tzinfo=timezone.utc)


def test_korbit_accepts_last_traded_at_or_timestamp_and_coinone_its_tickers_list():
    data = {"success": True, "data": [{"symbol": "btc_krw", "close": "150000000",
                                       "timestamp": 1732000000000}]}
    assert parse_korbit_ticker(data)[1] == datetime(2024, 11, 19, 7, 6, 40, tzinfo=timezone.utc)
    coinone = {"result": "success", "error_code": "0", "timestamp": 1732000000000,
               "tickers": [{"quote_currency": "KRW", "target_currency": "BTC", "last": "1.5E8"}]}
    assert parse_coinone_ticker(coinone) == (Decimal("150000000"),
                                             datetime(2024, 11, 19, 7, 6, 40, tzinfo=timezone.utc))


@pytest.mark.parametrize("parser, payload, message", [
    (parse_upbit_ticker, [], "no KRW-BTC ticker"),
    (parse_upbit_ticker, {"error": {"name": "x", "message": "boom"}}, "boom"),
    (parse_upbit_ticker, [{"market": "KRW-BTC"}], "no 'trade_price'"),
    (parse_upbit_ticker, [{"market": "KRW-BTC", "trade_price": 0}], "not positive"),
    (parse_korbit_ticker, {"success": False, "error": {"message": "nope"}}, "nope"),
    (parse_korbit_ticker, {"success": True, "data": [{"symbol": "btc_krw", "close": "-1"}]},
     "not positive"),
    (parse_coinone_ticker, {"result": "error", "error_code": "107"}, "107"),
    (parse_coinone_ticker, {"result": "success", "error_code": "0", "tickers": []},
     "no KRW/BTC ticker"),
])
def test_an_unusable_ticker_is_a_source_error(parser, payload, message):
    with pytest.raises(RateSourceError, match=message):
        parser(payload)


# -- the board: what current() accepts -------------------------------------------------

def test_a_fresh_primary_that_agrees_with_the_references_is_locked():
    clock = Clock()
    board, _ = board_with(clock, "150000000", "151000000", "149000000")
    locked = board.current()
    assert locked == LockedRate(krw_per_btc=Decimal("150000000"), source="primary",
                                fetched_at=T0, raw_krw_per_btc=Decimal("150000000"),
                                reference_median=Decimal("150000000"),
                                references=("ref1", "ref2"))


def test_a_primary_within_tolerance_of_the_median_is_accepted_right_up_to_the_limit():
    clock = Clock()
    board, _ = board_with(clock, "102", "100", tolerance=Decimal("0.02"))
    assert board.current().raw_krw_per_btc == Decimal("102")
    board, _ = board_with(clock, "98", "100", tolerance=Decimal("0.02"))
    assert board.current().raw_krw_per_btc == Decimal("98")


def test_a_primary_that_disagrees_beyond_tolerance_is_refused_naming_values_and_sources():
    clock = Clock()
    board, _ = board_with(clock, "160000000", "150000000", "150000000", tolerance=Decimal("0.02"))
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    err = caught.value
    assert "primary" in err.message and "160000000" in err.message
    assert "150000000" in err.message and "ref1, ref2" in err.message and "2.00%" in err.message
    assert set(err.details) == {"primary", "ref1", "ref2"}
    assert "6.67%" in err.details["primary"]


def test_the_median_of_an_even_number_of_references_is_the_mean_of_the_middle_two():
    clock = Clock()
    board, _ = board_with(clock, "150", "100", "151", "149", "300", tolerance=Decimal("0"))
    locked = board.current()
    assert locked.reference_median == Decimal("150")  # (149 + 151) / 2
    board, _ = board_with(clock, "150.5", "150", "151", tolerance=Decimal("0"))
    assert board.current().reference_median == Decimal("150.5")


def test_a_lone_primary_is_used_when_no_reference_is_fresh_and_health_shows_them_stale():
    clock = Clock()
    board, sources = board_with(clock, "150000000", "90000000")
    clock.advance(seconds=61)
    sources[0].answer = "150000000"
    sources[1].answer = RateSourceError("ref1: HTTP 500")
    board.poll_once()
    locked = board.current()
    assert locked.raw_krw_per_btc == Decimal("150000000") and locked.reference_median is None
    ref = board.health()[1]
    assert ref["fresh"] is False and ref["last_error"] == "ref1: HTTP 500"
    assert ref["rate"] == "90000000" and ref["age_seconds"] == 61


def test_a_stale_reference_is_ignored_and_a_fresh_one_still_checks_the_primary():
    clock = Clock()
    board, sources = board_with(clock, "150000000", "90000000", "150100000")
    clock.advance(seconds=30)
    sources[0].answer, sources[1].answer, sources[2].answer = "150000000", None, "150200000"
    board.poll_once()
    clock.advance(seconds=31)  # ref1's quote is now 61 s old, the others 31 s
    locked = board.current()
    assert locked.reference_median == Decimal("150200000") and locked.references == ("ref2",)


def test_a_stale_primary_refuses_to_quote_and_names_the_source():
    clock = Clock()
    board, sources = board_with(clock, "150000000", "150000000")
    clock.advance(seconds=61)
    sources[0].answer = RateSourceError("primary: no answer within 5 s")
    board.poll_once()
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    assert "primary source primary is stale" in caught.value.message
    assert "61 s ago" in caught.value.details["primary"]


def test_a_quote_exactly_max_age_old_is_still_fresh():
    clock = Clock()
    board, _ = board_with(clock, "150000000")
    clock.advance(seconds=60)
    assert board.current().raw_krw_per_btc == Decimal("150000000")


def test_a_primary_that_never_answered_refuses_with_its_error():
    clock = Clock()
    board, _ = board_with(clock, None, "150000000")
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    assert "primary" in caught.value.message and "failing" in caught.value.message
    assert "nothing to say" in caught.value.details["primary"]


def test_a_recent_good_quote_stays_usable_after_one_failed_poll_until_max_age():
    clock = Clock()
    board, sources = board_with(clock, "150000000")
    clock.advance(seconds=15)
    sources[0].answer = RateSourceError("primary: HTTP 502")
    board.poll_once()
    assert board.current().raw_krw_per_btc == Decimal("150000000")
    assert board.health()[0]["last_error"] == "primary: HTTP 502"
    clock.advance(seconds=46)
    with pytest.raises(RateUnavailable, match="stale.*HTTP 502"):
        board.current()


def test_there_is_never_a_fallback_rate_not_even_a_fresh_reference_or_a_fixed_rate():
    clock = Clock()
    with pytest.raises(RateUnavailable, match="no rate received yet"):
        RateBoard([StubSource("upbit", clock)], clock=clock).current()
    primary = StubSource("upbit", clock, None)
    board = RateBoard([primary, FixedSource("150000000", clock=clock)], clock=clock)
    board.poll_once()
    with pytest.raises(RateUnavailable) as caught:
        board.current()
    assert "upbit" in caught.value.message


def test_the_spread_is_applied_exactly_on_the_bid_side():
    clock = Clock()
    board, _ = board_with(clock, "151234567.89", spread=Decimal("0.0035"))
    locked = board.current()
    assert locked.raw_krw_per_btc == Decimal("151234567.89")
    assert locked.krw_per_btc == Decimal("151234567.89") * (1 - Decimal("0.0035"))
    assert locked.krw_per_btc == Decimal("150705246.902385")
    assert locked.krw_per_btc < locked.raw_krw_per_btc


@pytest.mark.parametrize("option", [{"spread": Decimal("1")}, {"spread": Decimal("-0.01")},
                                    {"tolerance": Decimal("-0.1")}, {"tolerance": Decimal("NaN")},
                                    {"max_age": timedelta(0)}])
def test_nonsensical_board_settings_are_refused(option):
    with pytest.raises(ValueError):
        RateBoard([StubSource("a", Clock())], clock=Clock(), **option)


def test_a_board_refuses_no_sources_or_two_sources_with_one_name():
    with pytest.raises(ValueError):
        RateBoard([], clock=Clock())
    with pytest.raises(ValueError, match="unique"):
        RateBoard([StubSource("a", Clock()), StubSource("a", Clock())], clock=Clock())


# -- the board: feeding it -------------------------------------------------------------

def test_record_ignores_a_quote_older_than_the_one_held_and_unknown_sources():
    clock = Clock()
    board = RateBoard([StubSource("upbit", clock)], clock=clock)
    board.record(quote("upbit", "150000000", T0))
    board.record(quote("upbit", "1", T0 - timedelta(seconds=1)))
    board.record(quote("elsewhere", "2", T0))
    assert board.current().raw_krw_per_btc == Decimal("150000000")
    assert [row["name"] for row in board.health()] == ["upbit"]


def test_poll_once_returns_quotes_and_errors_and_remembers_the_last_error_per_source():
    clock = Clock()
    board, sources = board_with(clock, "150000000", None)
    sources[1].answer = ValueError("a bug in a source")
    results = board.poll_once()
    assert isinstance(results["primary"], RateQuote)
    assert isinstance(results["ref1"], RateSourceError)
    assert "unexpected ValueError" in board.health()[1]["last_error"]
    sources[1].answer = "150000000"
    board.poll_once()
    assert board.health()[1]["last_error"] is None


def test_poll_once_skips_a_source_that_is_backing_off_and_always_fresh_ones():
    clock = Clock()
    backing_off = StubSource("upbit", clock, "150000000")
    backing_off.next_allowed_at = T0 + timedelta(seconds=30)
    fixed = FixedSource("150000000", clock=clock)
    board = RateBoard([backing_off, fixed], clock=clock)
    assert board.poll_once() == {}
    assert backing_off.calls == 0
    clock.advance(seconds=30)
    assert set(board.poll_once()) == {"upbit"} and backing_off.calls == 1


def test_an_always_fresh_source_is_fetched_on_demand_by_current():
    clock = Clock()
    board = RateBoard(parse_sources("fixed:150000000", "regtest", clock=clock), clock=clock)
    clock.advance(hours=5)
    locked = board.current()
    assert locked.source == "fixed" and locked.fetched_at == clock()


def test_health_lists_every_source_primary_first_with_its_state():
    clock = Clock()
    board, sources = board_with(clock, "150000000", None)
    clock.advance(seconds=7)
    assert board.health() == [
        {"name": "primary", "role": "primary", "rate": "150000000",
         "fetched_at": "2026-11-23T03:00:00+00:00", "exchange_time": None, "age_seconds": 7,
         "fresh": True, "last_error": None, "backing_off_until": None},
        {"name": "ref1", "role": "reference", "rate": None, "fetched_at": None,
         "exchange_time": None, "age_seconds": None, "fresh": False,
         "last_error": "ref1: nothing to say", "backing_off_until": None},
    ]


def test_a_rate_limited_source_shows_until_when_it_backs_off():
    clock = Clock()
    source = StubSource("upbit", clock)
    source.answer = RateLimited("upbit: HTTP 429", retry_at=T0 + timedelta(seconds=10))
    source.next_allowed_at = T0 + timedelta(seconds=10)
    board = RateBoard([source], clock=clock)
    board.health()
    assert board.health()[0]["backing_off_until"] == "2026-11-23T03:00:10+00:00"


def test_recording_polling_and_quoting_from_many_threads_stays_consistent():
    clock = Clock()
    board, sources = board_with(clock, "150000000", "150000000", "150000000")
    errors: list[BaseException] = []

    def writer(offset: int):
        for i in range(200):
            board.record(quote("ref1", str(150000000 + (i % 5)), T0 + timedelta(microseconds=i)))

    def reader():
        for _ in range(200):
            try:
                assert board.current().raw_krw_per_btc == Decimal("150000000")
                board.health()
            except BaseException as err:  # collected and re-raised in the main thread
                errors.append(err)

    def poller():
        for _ in range(20):
            board.poll_once()

    threads = [threading.Thread(target=f, args=a) for f, a in
               [(writer, (1,)), (writer, (2,)), (reader, ()), (reader, ()), (poller, ())]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sources[0].calls == 21


# -- the property ----------------------------------------------------------------------

positive_rates = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("999999999999.99"),
                             allow_nan=False, allow_infinity=False, places=6)


@st.composite
def primary_and_references(draw):
    """A primary rate and up to five others: some anywhere, some within a few % of it."""
    primary = draw(positive_rates)
    near = st.decimals(min_value=Decimal("-0.05"), max_value=Decimal("0.05"), places=4).map(
        lambda d: max((primary * (1 + d)).quantize(Decimal("0.000001")), Decimal("0.000001")))
    return primary, draw(st.lists(st.one_of(positive_rates, near), max_size=5))


@settings(max_examples=400, deadline=None)
@given(rates=primary_and_references(),
       stale=st.lists(st.booleans(), min_size=5, max_size=5),
       tolerance=st.decimals(min_value=0, max_value=Decimal("0.5"), places=4),
       spread=st.decimals(min_value=0, max_value=Decimal("0.1"), places=5))
def test_any_positive_rates_give_a_refusal_or_an_exact_rate_within_tolerance_of_the_median(
        rates, stale, tolerance, spread):
    primary, references = rates
    clock = Clock()
    sources = [StubSource("primary", clock)] + [StubSource(f"r{i}", clock)
                                                for i in range(len(references))]
    board = RateBoard(sources, clock=clock, tolerance=tolerance, spread=spread)
    board.record(quote("primary", str(primary), T0))
    fresh = []
    for i, rate in enumerate(references):
        old = stale[i]
        board.record(quote(f"r{i}", str(rate), T0 - timedelta(seconds=61 if old else 0)))
        if not old:
            fresh.append(rate)
    try:
        locked = board.current()
    except RateUnavailable as err:
        event("refused")
        assert fresh and err.details and "primary" in err.message
        ordered = sorted(fresh)
        n = len(ordered)
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        assert abs(primary - median) > tolerance * median
        return
    event("locked against references" if fresh else "locked alone")
    assert locked.raw_krw_per_btc == primary
    assert locked.krw_per_btc == primary * (1 - spread)  # exact: values fit the context
    if fresh:
        median = locked.reference_median
        assert min(fresh) <= median <= max(fresh)
        assert abs(primary - median) <= tolerance * median
    else:
        assert locked.reference_median is None
