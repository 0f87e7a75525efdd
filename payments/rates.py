"""Exchange rates: KRW per BTC from Korean exchanges, cross-checked before any quote.

Sources are polled in the background (`RateBoard.poll_once`), never per invoice. An
invoice may only be quoted from the primary source's rate when that rate is fresh
(fetched within `max_age`) and, if any other source is fresh too, within `tolerance`
of the median of those others. Anything else raises `RateUnavailable`: there is no
fallback rate, ever.

Exactness rules (rates are `Decimal`, never float):

* JSON is parsed with `parse_float=Decimal`; string values go straight to `Decimal`.
* A usable rate is finite, positive, below 10**15 KRW/BTC, at most 60 digits as sent and
  at most 18 decimal places; anything else is refused at the source (`RateSourceError`). These bounds keep
  every later computation exact in the 200-digit context used here (`Inexact` traps).
* Rates are normalised without changing their value: an integral rate is written
  without a fraction ("150000000.0" -> "150000000"), other rates lose trailing zeros.
* The locked rate is `raw * (1 - spread)`, computed exactly and not rounded (the bid
  side: a positive spread lowers the won per BTC, so the payer sends slightly more
  satoshis and the merchant is protected). Rounding happens once, later, in quoting.

Pure of Flask and of the database; `requests` is the only outside dependency.
"""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import (Context, Decimal, DivisionByZero, Inexact, InvalidOperation,
                     Overflow, Underflow, localcontext)
from typing import Any, Callable, Protocol, runtime_checkable
from urllib.parse import urlsplit

import requests

from untrusted import retry_after_seconds

__all__ = [
    "RateSourceError", "RateLimited", "RateUnavailable", "RateQuote", "LockedRate",
    "RateSource", "UpbitSource", "BithumbSource", "KorbitSource", "CoinoneSource",
    "ExchangeSource", "FixedSource", "parse_sources", "RateBoard", "utc_now",
    "parse_upbit_ticker", "parse_korbit_ticker", "parse_coinone_ticker", "check_rate",
]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

USER_AGENT = "BusanPay/0.1 (+rates; KRW-BTC ticker poller)"
MAX_RATE = Decimal(10) ** 15
MAX_PLACES = 18
MAX_DIGITS = 60  # of the text as sent, before trailing zeros are dropped
#: Back-off after HTTP 429/418 when the exchange gives no usable Retry-After:
#: 10 s, doubling per consecutive refusal, at most 5 minutes.
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_MAX = timedelta(minutes=5)
RETRY_AFTER_MAX = timedelta(hours=1)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Every rate computation runs here: wide enough that bounded inputs never round, and
#: trapping Inexact so that a rounding would be a loud bug, not a silent one.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow,
                                  Underflow])
_MAINNETS = frozenset({"bitcoin", "mainnet", "main"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- errors ------------------------------------------------------------------------

class RateSourceError(Exception):
    """A source could not give a usable rate (HTTP error, timeout, bad JSON, bad value)."""

    def __init__(self, message: str, *, source: str | None = None):
        super().__init__(message)
        self.source = source
        self.message = message


class RateLimited(RateSourceError):
    """The exchange answered 429 (or Upbit's 418); the source waits until `retry_at`."""

    def __init__(self, message: str, *, source: str | None = None,
                 retry_at: datetime | None = None):
        super().__init__(message, source=source)
        self.retry_at = retry_at


class RateUnavailable(Exception):
    """No rate may be quoted now. `message` is one human sentence; `details` maps each
    source involved to the reason (stale, failing, disagreeing, or its value)."""

    def __init__(self, message: str, details: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = dict(details or {})


# -- values ------------------------------------------------------------------------

def _tidy(value: Decimal) -> Decimal:
    """Same value, canonical text: no fraction when integral, no trailing zeros."""
    with localcontext(_EXACT):
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()


def check_rate(value: object, what: str = "rate") -> Decimal:
    """A usable KRW/BTC rate as an exact Decimal, or ValueError saying why not.

    Accepts Decimal, int or a decimal string (exchanges send both); refuses float,
    bool, None, NaN, infinities, zero, negatives and implausible magnitudes."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is missing or not a number: {value!r}")
    if isinstance(value, float):
        raise ValueError(f"{what} is a binary float ({value!r}); rates must be exact decimals")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            raise ValueError(f"{what} is not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"{what} has an unexpected type {type(value).__name__}: {value!r}")
    if not number.is_finite():
        raise ValueError(f"{what} is not finite: {value!r}")
    if number <= 0:
        raise ValueError(f"{what} is not positive: {value!r}")
    if number >= MAX_RATE:
        raise ValueError(f"{what} is implausibly large: {value!r}")
    if len(number.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"{what} has more than {MAX_DIGITS} digits: {value!r}")
    number = _tidy(number)
    if number.as_tuple().exponent < -MAX_PLACES:
        raise ValueError(f"{what} has more than {MAX_PLACES} decimal places: {value!r}")
    return number


def _aware_utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None \
            or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(timezone.utc)


def _from_millis(value: object) -> datetime | None:
    """Exchange timestamps are ms since the epoch; anything unusable is simply None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            value = int(value.strip())
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                return None
            value = int(value)
        if not isinstance(value, int) or value <= 0:
            return None
        return _EPOCH + timedelta(milliseconds=value)
    except (ValueError, OverflowError, InvalidOperation):
        return None


def _reject_constant(name: str):
    raise ValueError(f"non-finite JSON constant {name}")


def _loads(body: bytes | str) -> Any:
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


# -- quotes ------------------------------------------------------------------------

@dataclass(frozen=True)
class RateQuote:
    """One observation of a source: its rate and when we fetched it (and, when the
    exchange says so, when its last trade happened)."""

    source: str
    krw_per_btc: Decimal
    fetched_at: datetime
    exchange_time: datetime | None = None

    def __post_init__(self):
        object.__setattr__(self, "krw_per_btc", check_rate(self.krw_per_btc, f"{self.source} rate"))
        object.__setattr__(self, "fetched_at", _aware_utc(self.fetched_at, "fetched_at"))
        if self.exchange_time is not None:
            object.__setattr__(self, "exchange_time",
                               _aware_utc(self.exchange_time, "exchange_time"))


@dataclass(frozen=True)
class LockedRate:
    """The rate an invoice is quoted at, with what it was derived from (for audit)."""

    krw_per_btc: Decimal            # after spread: raw * (1 - spread), exact
    source: str
    fetched_at: datetime
    raw_krw_per_btc: Decimal        # the primary's rate as fetched
    reference_median: Decimal | None  # median of the fresh other sources, None if none
    references: tuple[str, ...] = field(default=())  # the sources behind that median


# -- wire formats (pure: payload -> rate, exchange time) ---------------------------

def _value(item: dict, key: str, source: str) -> Decimal:
    if key not in item:
        raise RateSourceError(f"{source}: the ticker has no {key!r}", source=source)
    try:
        return check_rate(item[key], f"{source} {key}")
    except ValueError as err:
        raise RateSourceError(str(err), source=source) from None


def parse_upbit_ticker(payload: Any, source: str = "upbit") -> tuple[Decimal, datetime | None]:
    """Upbit / Bithumb v1: `[{"market": "KRW-BTC", "trade_price": …, "trade_timestamp": ms}]`."""
    if isinstance(payload, dict) and "error" in payload:
        error = payload.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        raise RateSourceError(f"{source}: the exchange reported an error: {message}", source=source)
    if not isinstance(payload, list):
        raise RateSourceError(f"{source}: expected a JSON list of tickers", source=source)
    for item in payload:
        if isinstance(item, dict) and str(item.get("market", "")).upper() == "KRW-BTC":
            rate = _value(item, "trade_price", source)
            when = _from_millis(item.get("trade_timestamp", item.get("timestamp")))
            return rate, when
    raise RateSourceError(f"{source}: no KRW-BTC ticker in the answer", source=source)


def parse_korbit_ticker(payload: Any, source: str = "korbit") -> tuple[Decimal, datetime | None]:
    """Korbit v2: `{"success": true, "data": [{"symbol": "btc_krw", "close": "…", …}]}`.

    The last-trade time is `lastTradedAt` in Korbit's v2 docs; `timestamp` is accepted too."""
    if not isinstance(payload, dict):
        raise RateSourceError(f"{source}: expected a JSON object", source=source)
    if payload.get("success") is not True:
        error = payload.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        raise RateSourceError(f"{source}: the exchange reported an error: {message}", source=source)
    data = payload.get("data")
    if not isinstance(data, list):
        raise RateSourceError(f"{source}: the answer has no data list", source=source)
    for item in data:
        if isinstance(item, dict) and str(item.get("symbol", "")).lower() == "btc_krw":
            rate = _value(item, "close", source)
            when = _from_millis(item.get("lastTradedAt", item.get("timestamp")))
            return rate, when
    raise RateSourceError(f"{source}: no btc_krw ticker in the answer", source=source)


def parse_coinone_ticker(payload: Any, source: str = "coinone") -> tuple[Decimal, datetime | None]:
    """Coinone public v2: `{"result": "success", "error_code": "0", "tickers": [{…, "last": "…"}]}`."""
    if not isinstance(payload, dict):
        raise RateSourceError(f"{source}: expected a JSON object", source=source)
    if payload.get("result") != "success" or str(payload.get("error_code", "0")) != "0":
        raise RateSourceError(
            f"{source}: the exchange reported an error: code {payload.get('error_code')!r}"
            f" {payload.get('error_msg', '')}".rstrip(), source=source)
    tickers = payload.get("tickers")
    if not isinstance(tickers, list):
        raise RateSourceError(f"{source}: the answer has no tickers list", source=source)
    for item in tickers:
        if (isinstance(item, dict) and str(item.get("quote_currency", "")).lower() == "krw"
                and str(item.get("target_currency", "")).lower() == "btc"):
            rate = _value(item, "last", source)
            when = _from_millis(item.get("timestamp", payload.get("timestamp",
                                                                  payload.get("server_time"))))
            return rate, when
    raise RateSourceError(f"{source}: no KRW/BTC ticker in the answer", source=source)


# -- sources -----------------------------------------------------------------------

@runtime_checkable
class RateSource(Protocol):
    name: str
    always_fresh: bool

    def fetch(self) -> RateQuote: ...


class FixedSource:
    """A constant rate for development and demos; refused on mainnet by parse_sources."""

    always_fresh = True

    def __init__(self, krw_per_btc: Decimal | int | str, *, clock: Clock = utc_now,
                 name: str = "fixed"):
        self.name = name
        self.krw_per_btc = check_rate(krw_per_btc, "fixed rate")
        self._clock = clock

    def fetch(self) -> RateQuote:
        return RateQuote(source=self.name, krw_per_btc=self.krw_per_btc,
                         fetched_at=self._clock(), exchange_time=None)

    def __repr__(self) -> str:
        return f"FixedSource({self.krw_per_btc})"


class _HttpTickerSource:
    """A public ticker over HTTPS: one GET, a timeout, and back-off when rate limited."""

    always_fresh = False
    name = "?"
    default_base_url = ""
    path = ""
    parser: Callable[[Any, str], tuple[Decimal, datetime | None]]

    def __init__(self, base_url: str | None = None, *, session: requests.Session | None = None,
                 timeout: float = 5.0, clock: Clock = utc_now, name: str | None = None):
        if name is not None:
            self.name = name
        base = base_url or self.default_base_url
        if not base:
            raise ValueError(f"rate source {self.name!r} needs a base URL")
        self.base_url = base.rstrip("/")
        self.url = self.base_url + self.path
        self.session = session if session is not None else _new_session()
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._retry_at: datetime | None = None
        self._strikes = 0

    @property
    def next_allowed_at(self) -> datetime | None:
        """While backing off after a 429, the time before which no request is sent."""
        with self._lock:
            return self._retry_at

    def fetch(self) -> RateQuote:
        now = self._clock()
        with self._lock:
            retry_at = self._retry_at
        if retry_at is not None and now < retry_at:
            raise RateLimited(f"{self.name}: rate limited by the exchange, backing off until "
                              f"{retry_at.isoformat()}", source=self.name, retry_at=retry_at)
        try:
            response = self.session.get(
                self.url, timeout=self.timeout, allow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT})
        except requests.Timeout:
            raise RateSourceError(f"{self.name}: no answer within {self.timeout:g} s",
                                  source=self.name) from None
        except requests.RequestException as err:
            raise RateSourceError(f"{self.name}: request failed ({type(err).__name__})",
                                  source=self.name) from None
        if response.status_code in (418, 429):
            retry_at = self._back_off(response.headers.get("Retry-After"))
            raise RateLimited(f"{self.name}: HTTP {response.status_code} (rate limited), "
                              f"backing off until {retry_at.isoformat()}",
                              source=self.name, retry_at=retry_at)
        if response.status_code != 200:
            raise RateSourceError(f"{self.name}: HTTP {response.status_code}", source=self.name)
        try:
            payload = _loads(response.content)
        except ValueError:
            raise RateSourceError(f"{self.name}: the answer is not valid JSON",
                                  source=self.name) from None
        rate, exchange_time = type(self).parser(payload, self.name)
        with self._lock:
            self._strikes = 0
            self._retry_at = None
        return RateQuote(source=self.name, krw_per_btc=rate, fetched_at=self._clock(),
                         exchange_time=exchange_time)

    def _back_off(self, retry_after: str | None) -> datetime:
        now = self._clock()
        with self._lock:
            self._strikes += 1
            seconds = retry_after_seconds(retry_after, cap=int(RETRY_AFTER_MAX.total_seconds()))
            delay = None if seconds is None else timedelta(seconds=max(1, seconds))
            if delay is None:
                delay = min(BACKOFF_BASE * (2 ** min(self._strikes - 1, 16)), BACKOFF_MAX)
            self._retry_at = now + delay
            return self._retry_at

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


class UpbitSource(_HttpTickerSource):
    name = "upbit"
    default_base_url = "https://api.upbit.com"
    path = "/v1/ticker?markets=KRW-BTC"
    parser = staticmethod(parse_upbit_ticker)


class BithumbSource(_HttpTickerSource):
    name = "bithumb"
    default_base_url = "https://api.bithumb.com"
    path = "/v1/ticker?markets=KRW-BTC"
    parser = staticmethod(parse_upbit_ticker)


class KorbitSource(_HttpTickerSource):
    name = "korbit"
    default_base_url = "https://api.korbit.co.kr"
    path = "/v2/tickers?symbol=btc_krw"
    parser = staticmethod(parse_korbit_ticker)


class CoinoneSource(_HttpTickerSource):
    name = "coinone"
    default_base_url = "https://api.coinone.co.kr"
    path = "/public/v2/ticker_new/KRW/BTC"
    parser = staticmethod(parse_coinone_ticker)


class ExchangeSource(_HttpTickerSource):
    """The partner exchange: an Upbit-compatible ticker under a configured URL prefix."""

    name = "exchange"
    path = "/v1/ticker?markets=KRW-BTC"
    parser = staticmethod(parse_upbit_ticker)

    def __init__(self, base_url: str, **kwargs):
        if not base_url:
            raise ValueError("rate source 'exchange' needs a URL: exchange=https://host/prefix")
        super().__init__(base_url, **kwargs)


_HTTP_SOURCES: dict[str, type[_HttpTickerSource]] = {
    "upbit": UpbitSource, "bithumb": BithumbSource, "korbit": KorbitSource,
    "coinone": CoinoneSource, "exchange": ExchangeSource,
}


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


def _check_url(name: str, url: str, mainnet: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"rate source {name!r}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"rate source {name!r}: give a base URL without query or fragment, "
                         f"got {url!r}")
    if mainnet and parts.scheme != "https" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"rate source {name!r}: refusing plain http on bitcoin mainnet "
                         f"({url!r}); use https")
    return url.rstrip("/")


def parse_sources(spec: str, network: str, *, clock: Clock = utc_now, timeout: float = 5.0,
                  session: requests.Session | None = None) -> list[RateSource]:
    """Build sources from BUSANPAY_RATE_SOURCES, primary first.

    Items, comma separated: `fixed:150000000`, `exchange=https://host/prefix`, `upbit`,
    `upbit=http://127.0.0.1:1234` (same for bithumb, korbit, coinone). All HTTP sources
    share one requests.Session."""
    mainnet = (network or "").strip().lower() in _MAINNETS
    if spec is None or not spec.strip():
        raise ValueError("no rate sources configured: set BUSANPAY_RATE_SOURCES, e.g. "
                         "'exchange=https://partner.example/api,upbit,bithumb'")
    shared = session if session is not None else _new_session()
    sources: list[RateSource] = []
    seen: set[str] = set()
    for position, raw in enumerate(spec.split(","), start=1):
        item = raw.strip()
        if not item:
            raise ValueError(f"rate source #{position} in {spec!r} is empty (stray comma?)")
        if item.lower().startswith("fixed"):
            name, _, value = item.partition(":")
            if name.strip().lower() != "fixed" or not _:
                raise ValueError(f"write a fixed rate as 'fixed:150000000', got {item!r}")
            if mainnet:
                raise ValueError("a fixed rate is refused on bitcoin mainnet: configure real "
                                 "exchanges in BUSANPAY_RATE_SOURCES")
            try:
                source: RateSource = FixedSource(value.strip(), clock=clock)
            except ValueError as err:
                raise ValueError(f"fixed rate {value.strip()!r} must be a positive decimal "
                                 f"number of won per BTC ({err})") from None
        else:
            name, has_url, url = item.partition("=")
            name = name.strip().lower()
            if name not in _HTTP_SOURCES:
                raise ValueError(f"unknown rate source {name!r} in {spec!r}; known: fixed:<rate>, "
                                 + ", ".join(sorted(_HTTP_SOURCES)))
            url = url.strip()
            if has_url and not url:
                raise ValueError(f"rate source {name!r}: empty URL after '='")
            if name == "exchange" and not url:
                raise ValueError("rate source 'exchange' needs its URL: "
                                 "exchange=https://host/path-prefix")
            base = _check_url(name, url, mainnet) if url else None
            source = _HTTP_SOURCES[name](base, session=shared, timeout=timeout, clock=clock)
        if source.name in seen:
            raise ValueError(f"rate source {source.name!r} is listed twice in {spec!r}")
        seen.add(source.name)
        sources.append(source)
    return sources


# -- the board ---------------------------------------------------------------------

def _median(values: list[Decimal]) -> Decimal:
    """Exact median; for an even count, the mean of the two middle values."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    with localcontext(_EXACT):
        return _tidy((ordered[middle - 1] + ordered[middle]) / 2)


def _percent(part: Decimal, whole: Decimal) -> str:
    return f"{(part / whole * 100).quantize(Decimal('0.01'))}%"


def _age(now: datetime, then: datetime) -> timedelta:
    return max(now - then, timedelta(0))


class RateBoard:
    """The latest quote of every source and the rule that turns them into a rate.

    Thread-safe: `record`, `current`, `poll_once` and `health` may run in any threads."""

    def __init__(self, sources: list[RateSource], *, clock: Clock,
                 max_age: timedelta = timedelta(seconds=60), tolerance: Decimal = Decimal("0.02"),
                 spread: Decimal = Decimal("0")):
        if not sources:
            raise ValueError("a RateBoard needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"rate source names must be unique, got {names}")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        tolerance, spread = Decimal(tolerance), Decimal(spread)
        if not tolerance.is_finite() or tolerance < 0:
            raise ValueError(f"tolerance must be a non-negative decimal, got {tolerance}")
        if not spread.is_finite() or not (0 <= spread < 1):
            raise ValueError(f"spread must be a decimal in [0, 1), got {spread}")
        if spread.as_tuple().exponent < -MAX_PLACES or tolerance.as_tuple().exponent < -MAX_PLACES:
            raise ValueError(f"spread and tolerance take at most {MAX_PLACES} decimal places")
        self.sources = list(sources)
        self.primary = self.sources[0]
        self._by_name = {s.name: s for s in self.sources}
        self._clock = clock
        self.max_age = max_age
        self.tolerance = tolerance
        self.spread = spread
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._quotes: dict[str, RateQuote] = {}
        self._errors: dict[str, tuple[str, datetime]] = {}

    # -- feeding ---------------------------------------------------------------------

    def record(self, quote: RateQuote) -> None:
        """Keep the quote unless one fetched later is already held (or the source is
        not on this board)."""
        if quote.source not in self._by_name:
            return
        with self._lock:
            held = self._quotes.get(quote.source)
            if held is not None and quote.fetched_at < held.fetched_at:
                return
            self._quotes[quote.source] = quote

    def _fail(self, name: str, error: RateSourceError) -> None:
        with self._lock:
            self._errors[name] = (str(error), self._clock())

    def _succeed(self, quote: RateQuote) -> None:
        self.record(quote)
        with self._lock:
            self._errors.pop(quote.source, None)

    def _fetch(self, source: RateSource) -> RateQuote | RateSourceError:
        try:
            quote = source.fetch()
            if quote.source != source.name:
                raise RateSourceError(f"{source.name}: returned a quote for {quote.source!r}",
                                      source=source.name)
        except RateSourceError as err:
            self._fail(source.name, err)
            return err
        except Exception as err:  # a bug or an unexpected library error: never crash polling
            log.exception("rate source %s failed unexpectedly", source.name)
            wrapped = RateSourceError(f"{source.name}: unexpected {type(err).__name__}: {err}",
                                      source=source.name)
            self._fail(source.name, wrapped)
            return wrapped
        self._succeed(quote)
        return quote

    def poll_once(self) -> dict[str, RateQuote | RateSourceError]:
        """Fetch every polled source (in parallel), skipping those backing off after a 429."""
        with self._poll_lock:
            now = self._clock()
            due = []
            for source in self.sources:
                if source.always_fresh:
                    continue
                retry_at = getattr(source, "next_allowed_at", None)
                if retry_at is not None and now < retry_at:
                    continue
                due.append(source)
            if not due:
                return {}
            if len(due) == 1:
                return {due[0].name: self._fetch(due[0])}
            with ThreadPoolExecutor(max_workers=len(due), thread_name_prefix="rates") as pool:
                outcomes = list(pool.map(self._fetch, due))
            return {source.name: outcome for source, outcome in zip(due, outcomes)}

    def _refresh_always_fresh(self) -> None:
        for source in self.sources:
            if source.always_fresh:
                self._fetch(source)

    # -- reading ---------------------------------------------------------------------

    def _snapshot(self) -> tuple[dict[str, RateQuote], dict[str, tuple[str, datetime]]]:
        with self._lock:
            return dict(self._quotes), dict(self._errors)

    def _status(self, name: str, now: datetime, quotes, errors) -> tuple[bool, str]:
        """(fresh, reason) for one source."""
        quote = quotes.get(name)
        error = errors.get(name)
        failing = f"; its last fetch failed: {error[0]}" if error else ""
        if quote is None:
            if error:
                return False, f"failing ({error[0]}) and no rate received yet"
            return False, "no rate received yet"
        age = _age(now, quote.fetched_at)
        if now - quote.fetched_at > self.max_age:
            return False, (f"stale: last rate {quote.krw_per_btc} fetched {int(age.total_seconds())} s "
                           f"ago, older than {int(self.max_age.total_seconds())} s{failing}")
        return True, f"{quote.krw_per_btc}"

    def current(self) -> LockedRate:
        """The rate to lock for a new invoice, or RateUnavailable saying why not."""
        self._refresh_always_fresh()
        now = self._clock()
        quotes, errors = self._snapshot()
        primary = self.primary.name
        fresh, reason = self._status(primary, now, quotes, errors)
        others = {s.name: self._status(s.name, now, quotes, errors) for s in self.sources[1:]}
        if not fresh:
            details = {primary: reason}
            details.update({name: why for name, (ok, why) in others.items() if not ok})
            raise RateUnavailable(
                f"No exchange rate: the primary source {primary} is {reason}.", details)
        raw = quotes[primary].krw_per_btc
        references = [name for name, (ok, _) in others.items() if ok]
        median = None
        if references:
            median = _median([quotes[name].krw_per_btc for name in references])
            with localcontext(_EXACT):
                gap = abs(raw - median)
                agrees = gap <= self.tolerance * median
            if not agrees:
                details = {primary: f"{raw}, {_percent(gap, median)} from the reference median "
                                    f"{median}"}
                details.update({name: f"{quotes[name].krw_per_btc}" for name in references})
                details.update({name: why for name, (ok, why) in others.items() if not ok})
                raise RateUnavailable(
                    f"No exchange rate: the primary source {primary} says {raw} KRW/BTC, "
                    f"{_percent(gap, median)} away from the median {median} of "
                    f"{', '.join(references)}, beyond the {_percent(self.tolerance, Decimal(1))} "
                    f"tolerance.", details)
        with localcontext(_EXACT):
            locked = _tidy(raw * (1 - self.spread))
        return LockedRate(krw_per_btc=locked, source=primary,
                          fetched_at=quotes[primary].fetched_at, raw_krw_per_btc=raw,
                          reference_median=median, references=tuple(references))

    def health(self) -> list[dict]:
        """Per source, primary first: name, role, rate (str), fetched_at (ISO 8601 UTC),
        exchange_time, age_seconds (int), fresh (bool), last_error, backing_off_until."""
        self._refresh_always_fresh()
        now = self._clock()
        quotes, errors = self._snapshot()
        rows = []
        for index, source in enumerate(self.sources):
            quote = quotes.get(source.name)
            error = errors.get(source.name)
            retry_at = getattr(source, "next_allowed_at", None)
            fresh, _ = self._status(source.name, now, quotes, errors)
            rows.append({
                "name": source.name,
                "role": "primary" if index == 0 else "reference",
                "rate": str(quote.krw_per_btc) if quote else None,
                "fetched_at": quote.fetched_at.isoformat() if quote else None,
                "exchange_time": quote.exchange_time.isoformat()
                if quote and quote.exchange_time else None,
                "age_seconds": int(_age(now, quote.fetched_at).total_seconds()) if quote else None,
                "fresh": fresh,
                "last_error": error[0] if error else None,
                "backing_off_until": retry_at.isoformat()
                if retry_at is not None and now < retry_at else None,
            })
        return rows
