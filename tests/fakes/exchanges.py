"""A fake of the Korean exchanges' public BTC/KRW tickers, over real HTTP on 127.0.0.1.

One server speaks all the wire formats at once, each under its own path prefix:

    {url}/upbit/v1/ticker?markets=KRW-BTC          Upbit (list of tickers, JSON numbers)
    {url}/bithumb/v1/ticker?markets=KRW-BTC        Bithumb v1 (same shape as Upbit)
    {url}/exchange/v1/ticker?markets=KRW-BTC       the partner exchange (Upbit-compatible)
    {url}/korbit/v2/tickers?symbol=btc_krw         Korbit v2 (strings, lastTradedAt)
    {url}/coinone/public/v2/ticker_new/KRW/BTC     Coinone public v2 (strings)

Payloads carry the full field sets of the real APIs, not just the fields we read.
Each exchange is controlled on its own: price, last-trade time, value style (JSON
number, string, or number in exponent notation), and failure modes (HTTP status with
the exchange's error body, 429 with Retry-After, malformed JSON, empty answer, missing
price, slow answer). Every request is logged in `.requests`.

    with FakeExchanges() as fx:
        fx.set_price("upbit", Decimal("151000000"))
        spec = fx.spec("exchange", "upbit", "bithumb")   # for BUSANPAY_RATE_SOURCES
        fx.fail("korbit", status=500)
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

EXCHANGES = ("upbit", "bithumb", "korbit", "coinone", "exchange")
UPBIT_LIKE = ("upbit", "bithumb", "exchange")
DEFAULT_PRICE = Decimal("150000000")
KST = timezone(timedelta(hours=9))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_PATHS = {
    "upbit": "/v1/ticker", "bithumb": "/v1/ticker", "exchange": "/v1/ticker",
    "korbit": "/v2/tickers", "coinone": "/public/v2/ticker_new/KRW/BTC",
}


@dataclass
class FakeRequest:
    exchange: str | None
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float  # time.monotonic() when received


@dataclass
class _Behaviour:
    price: Decimal | None = DEFAULT_PRICE   # None: the price field is left out
    trade_time: datetime | None = None     # None: "now" by the server's clock
    style: str | None = None               # "number" | "string" | "exponent"; None: the real one
    status: int = 200
    error: bool = False                    # answer with the exchange's error body
    retry_after: str | None = None
    body: bytes | None = None              # raw body override (malformed JSON, HTML, ...)
    empty: bool = False                    # a well-formed answer with no BTC ticker in it
    delay: float = 0.0                     # seconds before answering


class _RawNumber:
    """A Decimal to be written as a bare JSON number, exactly as given."""

    def __init__(self, text: str):
        self.text = text


def _dumps(value) -> str:
    if isinstance(value, _RawNumber):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        raise TypeError("wrap Decimals with the style helper")
    return json.dumps(value)


def _ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class FakeExchanges:
    """The fake ticker server. Use as a context manager, or start()/close()."""

    def __init__(self, price: Decimal | int | str = DEFAULT_PRICE, *,
                 clock: Callable[[], datetime] | None = None):
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._state = {name: _Behaviour(price=Decimal(str(price))) for name in EXCHANGES}
        self.requests: list[FakeRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FakeExchanges":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-exchanges", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "FakeExchanges":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, exchange: str) -> str:
        """The base URL a source for `exchange` should be configured with."""
        self._check(exchange)
        return f"{self.url}/{exchange}"

    def spec(self, *exchanges: str) -> str:
        """A BUSANPAY_RATE_SOURCES value pointing at this fake, primary first.
        Items may also be passed through verbatim, e.g. "fixed:150000000"."""
        parts = []
        for item in exchanges or ("exchange", "upbit", "bithumb"):
            parts.append(item if ":" in item else f"{item}={self.base_url(item)}")
        return ",".join(parts)

    # -- control -------------------------------------------------------------------------

    def _check(self, exchange: str) -> None:
        if exchange not in EXCHANGES:
            raise ValueError(f"unknown fake exchange {exchange!r}; known: {', '.join(EXCHANGES)}")

    def _update(self, exchange: str, **changes) -> None:
        targets = EXCHANGES if exchange == "*" else (exchange,)
        for name in targets:
            self._check(name)
        with self._lock:
            for name in targets:
                for key, value in changes.items():
                    setattr(self._state[name], key, value)

    def set_price(self, exchange: str, price: Decimal | int | str | None) -> None:
        """Set the last price ("*" for all). Zero and negative prices are served as given;
        None leaves the price field out of the ticker."""
        self._update(exchange, price=None if price is None else Decimal(str(price)))

    def set_trade_time(self, exchange: str, moment: datetime | None) -> None:
        """The exchange's last-trade time (None: now, by the fake's clock)."""
        self._update(exchange, trade_time=moment)

    set_timestamp = set_trade_time

    def values_as(self, exchange: str, style: str | None) -> None:
        """"number" (e.g. 150000000.0), "string" ("150000000"), "exponent" (1.5E+8),
        or None for what the real exchange sends (numbers: Upbit, Bithumb; strings: Korbit,
        Coinone)."""
        if style not in (None, "number", "string", "exponent"):
            raise ValueError(f"unknown value style {style!r}")
        self._update(exchange, style=style)

    def fail(self, exchange: str, status: int = 500, *, retry_after: int | str | None = None,
             body: bytes | str | None = None) -> None:
        """Answer with `status` and the exchange's own error body (or `body`). status=200
        gives an exchange-level error inside a 200 answer (Korbit/Coinone style)."""
        if isinstance(body, str):
            body = body.encode()
        self._update(exchange, status=status, body=body, error=True,
                     retry_after=None if retry_after is None else str(retry_after))

    def rate_limit(self, exchange: str, retry_after: int | str | None = None) -> None:
        self.fail(exchange, 429, retry_after=retry_after)

    def malformed(self, exchange: str, body: bytes | str = b'[{"market":"KRW-BTC","trade_price":') -> None:
        """Answer 200 with a body that is not valid JSON."""
        self._update(exchange, status=200, body=body.encode() if isinstance(body, str) else body)

    def empty(self, exchange: str, empty: bool = True) -> None:
        """Answer 200 with a well-formed payload that holds no BTC/KRW ticker."""
        self._update(exchange, empty=empty)

    def slow(self, exchange: str, seconds: float) -> None:
        """Wait `seconds` before answering (longer than the client timeout to time out)."""
        self._update(exchange, delay=float(seconds))

    def recover(self, exchange: str = "*") -> None:
        """Back to normal answers (keeps price, trade time and value style)."""
        self._update(exchange, status=200, body=None, error=False, retry_after=None, empty=False,
                     delay=0.0)

    def requests_to(self, exchange: str) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests if r.exchange == exchange]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- answers -------------------------------------------------------------------------

    def _log(self, request: FakeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _behaviour(self, exchange: str) -> _Behaviour:
        with self._lock:
            current = self._state[exchange]
            return _Behaviour(**current.__dict__)

    def _answer(self, exchange: str, query: dict[str, list[str]]) -> tuple[int, dict, bytes]:
        state = self._behaviour(exchange)
        if state.delay and self._closing.wait(state.delay):
            return 503, {}, b""
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        if exchange in UPBIT_LIKE:
            headers["Remaining-Req"] = "group=ticker; min=600; sec=9"
        if state.retry_after is not None:
            headers["Retry-After"] = state.retry_after
        if state.body is not None:
            return state.status, headers, state.body
        if state.error:
            return state.status, headers, _error_body(exchange, state.status).encode()
        if exchange == "korbit" and query.get("symbol") != ["btc_krw"]:
            return 200, headers, b'{"success":true,"data":[]}'
        now = self._clock()
        trade_time = state.trade_time or now
        style = state.style or ("number" if exchange in UPBIT_LIKE else "string")
        if exchange in UPBIT_LIKE:
            wanted = query.get("markets", [""])[0].upper().split(",")
            if "KRW-BTC" not in wanted:
                return 404, headers, _error_body(exchange, 404).encode()
            body = _upbit_payload(state, trade_time, now, style)
        elif exchange == "korbit":
            body = _korbit_payload(state, trade_time, now, style)
        else:
            body = _coinone_payload(state, trade_time, now, style)
        return 200, headers, body.encode()


def _styled(value: Decimal, style: str, *, places: int | None = None):
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if style == "string":
        return f"{value:f}"
    if style == "exponent":
        return _RawNumber(f"{value.normalize():E}")
    text = f"{value:f}"
    return _RawNumber(text if "." in text else text + ".0")


def _around(price: Decimal, factor: str) -> Decimal:
    return (price * Decimal(factor)).quantize(Decimal(1), rounding=ROUND_HALF_UP)


def _upbit_payload(state: _Behaviour, trade_time: datetime, now: datetime, style: str) -> str:
    if state.empty:
        return "[]"
    price = state.price if state.price is not None else DEFAULT_PRICE
    prev = _around(price, "0.985") if price > 0 else price
    change = price - prev
    kst = trade_time.astimezone(KST)
    utc = trade_time.astimezone(timezone.utc)
    ticker = {
        "market": "KRW-BTC",
        "trade_date": utc.strftime("%Y%m%d"),
        "trade_time": utc.strftime("%H%M%S"),
        "trade_date_kst": kst.strftime("%Y%m%d"),
        "trade_time_kst": kst.strftime("%H%M%S"),
        "trade_timestamp": _ms(trade_time),
        "opening_price": _styled(_around(price, "0.99"), style),
        "high_price": _styled(_around(price, "1.012"), style),
        "low_price": _styled(_around(price, "0.981"), style),
        "trade_price": _styled(price, style),
        "prev_closing_price": _styled(prev, style),
        "change": "RISE" if change > 0 else ("FALL" if change < 0 else "EVEN"),
        "change_price": _styled(abs(change), style),
        "change_rate": _styled(abs(change) / prev if prev else Decimal(0), style, places=10),
        "signed_change_price": _styled(change, style),
        "signed_change_rate": _styled(change / prev if prev else Decimal(0), style, places=10),
        "trade_volume": _styled(Decimal("0.00312"), style),
        "acc_trade_price": _styled(Decimal("98765432109.87654"), style),
        "acc_trade_price_24h": _styled(Decimal("201234567890.12345"), style),
        "acc_trade_volume": _styled(Decimal("662.41234567"), style),
        "acc_trade_volume_24h": _styled(Decimal("1351.09876543"), style),
        "highest_52_week_price": _styled(_around(price, "1.21"), style),
        "highest_52_week_date": "2026-03-14",
        "lowest_52_week_price": _styled(_around(price, "0.62"), style),
        "lowest_52_week_date": "2025-12-02",
        "timestamp": _ms(now),
    }
    if state.price is None:
        del ticker["trade_price"]
    return _dumps([ticker])


def _korbit_payload(state: _Behaviour, trade_time: datetime, now: datetime, style: str) -> str:
    if state.empty:
        return '{"success":true,"data":[]}'
    price = state.price if state.price is not None else DEFAULT_PRICE
    prev = _around(price, "0.985") if price > 0 else price
    ticker = {
        "symbol": "btc_krw",
        "open": _styled(_around(price, "0.99"), style),
        "high": _styled(_around(price, "1.012"), style),
        "low": _styled(_around(price, "0.981"), style),
        "close": _styled(price, style),
        "prevClose": _styled(prev, style),
        "priceChange": _styled(price - prev, style),
        "priceChangePercent": _styled((price - prev) * 100 / prev if prev else Decimal(0),
                                      style, places=2),
        "volume": _styled(Decimal("123.45678901"), style),
        "quoteVolume": _styled(Decimal("18518518351.5"), style),
        "bestBidPrice": _styled(price - 1000, style),
        "bestAskPrice": _styled(price + 1000, style),
        "lastTradedAt": _ms(trade_time),
    }
    if state.price is None:
        del ticker["close"]
    return _dumps({"success": True, "data": [ticker]})


def _coinone_payload(state: _Behaviour, trade_time: datetime, now: datetime, style: str) -> str:
    if state.empty:
        return _dumps({"result": "success", "error_code": "0", "server_time": _ms(now),
                       "tickers": []})
    price = state.price if state.price is not None else DEFAULT_PRICE
    ticker = {
        "quote_currency": "krw",
        "target_currency": "btc",
        "timestamp": _ms(trade_time),
        "high": _styled(_around(price, "1.012"), style),
        "low": _styled(_around(price, "0.981"), style),
        "first": _styled(_around(price, "0.99"), style),
        "last": _styled(price, style),
        "quote_volume": _styled(Decimal("35432109876.1234"), style),
        "target_volume": _styled(Decimal("236.21345678"), style),
        "best_asks": [{"price": _styled(price + 1000, style),
                       "qty": _styled(Decimal("0.0412"), style)}],
        "best_bids": [{"price": _styled(price - 1000, style),
                       "qty": _styled(Decimal("0.1033"), style)}],
        "id": str(_ms(trade_time) * 1000 + 1),
        "yesterday_high": _styled(_around(price, "1.02"), style),
        "yesterday_low": _styled(_around(price, "0.97"), style),
        "yesterday_first": _styled(_around(price, "0.98"), style),
        "yesterday_last": _styled(_around(price, "0.99"), style),
        "yesterday_quote_volume": _styled(Decimal("41234567890.5"), style),
        "yesterday_target_volume": _styled(Decimal("277.5"), style),
    }
    if state.price is None:
        del ticker["last"]
    return _dumps({"result": "success", "error_code": "0", "server_time": _ms(now),
                   "tickers": [ticker]})


def _error_body(exchange: str, status: int) -> str:
    if exchange in UPBIT_LIKE:
        name = {429: "too_many_requests", 404: "not_found"}.get(status, "server_error")
        return _dumps({"error": {"name": name, "message": f"HTTP {status} from the fake"}})
    if exchange == "korbit":
        return _dumps({"success": False, "error": {"code": "SERVER_ERROR" if status != 429
                                                   else "TOO_MANY_REQUESTS",
                                                   "message": f"HTTP {status} from the fake"}})
    return _dumps({"result": "error", "error_code": "4" if status == 429 else "107",
                   "error_msg": f"HTTP {status} from the fake"})


class _Handler(BaseHTTPRequestHandler):
    owner: FakeExchanges
    protocol_version = "HTTP/1.1"
    server_version = "FakeExchanges/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segments = parts.path.split("/", 2)  # "", exchange, rest
        exchange = segments[1] if len(segments) > 1 and segments[1] in EXCHANGES else None
        self.owner._log(FakeRequest(exchange=exchange, method="GET", path=parts.path, query=query,
                                    headers={k: v for k, v in self.headers.items()},
                                    at=time.monotonic()))
        rest = "/" + segments[2] if len(segments) > 2 else "/"
        if exchange is None or rest.rstrip("/") != _PATHS[exchange]:
            self._send(404, {"Content-Type": "application/json"},
                       b'{"error":{"name":"not_found","message":"no such endpoint"}}')
            return
        status, headers, body = self.owner._answer(exchange, query)
        self._send(status, headers, body)

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. timed out): nothing to tell it
