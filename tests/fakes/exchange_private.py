"""An Upbit-compatible private API double over HTTP on 127.0.0.1 (market sells of BTC).

Every request must carry `Authorization: Bearer <JWT>` signed HS256 (verified with PyJWT) with the secret key
of a known access key; the payload's `nonce` must be new and, when there are parameters,
`query_hash` must be the SHA-512 of the unquoted urlencoded parameters
(`query_hash_alg` SHA512). Errors look like Upbit's: `{"error": {"name", "message"}}`.

`POST /v1/orders` (market ask on KRW-BTC with `volume`) answers the order in state
`wait`; `GET /v1/order?uuid=…|identifier=…` answers it `done` with its trades, filled at
`price` with a `fee_rate` fee. An identifier can be used once. `fail_next("500_after_create")`
creates the order and then answers 500; `fail_next("503_before_create")` answers 503
without creating it. `GET /v1/accounts` answers the KRW balance: the
won of filled sells, net of fees, plus `balance_offset` (to make it disagree with our
books); and the BTC balance: each unfilled order's volume as `locked` (the deposit made
for it), plus `btc_offset` as `balance`. `down = True` answers 503 to everything (a venue
failing mid-day); `refuse = True` answers 400 to new orders; `hold_fills = True` leaves
new orders unfilled (state `wait`) until it is set back.

`dialect="bithumb"` speaks Bithumb's 2.x private API instead: the JWT must also carry an
integer `timestamp` (milliseconds, within a minute of now); `POST /v1/orders` refuses an
`identifier` (it has no client id); `POST /v2/orders` takes `client_order_id` and answers
`order_id` + `client_order_id`; `GET /v1/order` finds an order by `uuid` or
`client_order_id`, and orders show `client_order_id` where Upbit's show `identifier`.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt


class ExchangeFake:
    def __init__(self, access_key: str = "upbit-access", secret_key: str = "upbit-secret-key-of-forty-characters-00",
                 price: Decimal = Decimal("150400000"), fee_rate: Decimal = Decimal("0.0005"),
                 dialect: str = "upbit"):
        self.dialect = dialect
        self.id_field = "client_order_id" if dialect == "bithumb" else "identifier"
        self.keys = {access_key: secret_key}
        self.access_key, self.secret_key = access_key, secret_key
        self.price, self.fee_rate = price, fee_rate
        self.orders: dict[str, dict] = {}
        self.by_identifier: dict[str, str] = {}
        self.nonces: set[str] = set()
        self.rejected: list[str] = []
        self._faults: list[str] = []
        self.balance_offset = Decimal(0)
        self.btc_offset = Decimal(0)
        self.hold_fills = False
        self.down = False
        self.refuse = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "ExchangeFake":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def fail_next(self, *faults: str) -> None:
        with self._lock:
            self._faults.extend(faults)

    # -- HTTP -------------------------------------------------------------------------
    def _send(self, handler, status: int, body) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    @staticmethod
    def _error(status: int, name: str, message: str):
        return status, {"error": {"name": name, "message": message}}

    def _authenticate(self, header: str | None, params: dict) -> str | None:
        """None when the JWT is good, else the reason."""
        if not header or not header.startswith("Bearer "):
            return "no bearer token"
        token = header[7:]
        try:
            if jwt.get_unverified_header(token).get("alg") != "HS256":
                return "alg must be HS256"
            access_key = jwt.decode(token, options={"verify_signature": False}).get("access_key")
        except jwt.InvalidTokenError:
            return "malformed JWT"
        secret = self.keys.get(access_key)
        if secret is None:
            return "unknown access key"
        try:
            payload = jwt.decode(token, secret, algorithms=["HS256"])
        except jwt.InvalidSignatureError:
            return "bad signature"
        except jwt.InvalidTokenError:
            return "malformed JWT"
        if self.dialect == "bithumb":
            stamp = payload.get("timestamp")
            if not isinstance(stamp, int) or abs(stamp - time.time() * 1000) > 60_000:
                return "timestamp missing or not within a minute"
        nonce = payload.get("nonce")
        with self._lock:
            if not nonce or nonce in self.nonces:
                return "nonce reused"
            self.nonces.add(nonce)
        if params:
            wanted = hashlib.sha512(unquote(urlencode(params, doseq=True)).encode()).hexdigest()
            if payload.get("query_hash") != wanted or payload.get("query_hash_alg") != "SHA512":
                return "query_hash does not match"
        return None

    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if method == "GET":
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
        else:
            try:
                params = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self._send(handler, *self._error(400, "invalid_body", "JSON body expected"))
        if self.down:
            return self._send(handler, *self._error(503, "service_unavailable", "maintenance"))
        reason = self._authenticate(handler.headers.get("Authorization"), params)
        if reason:
            self.rejected.append(reason)
            return self._send(handler, *self._error(401, "jwt_verification", reason))
        if method == "POST" and parts.path == "/v1/orders":
            if self.dialect == "bithumb" and "identifier" in params:
                return self._send(handler, *self._error(400, "invalid_parameter",
                                                        "unknown parameter: identifier"))
            return self._create(handler, params)
        if method == "POST" and parts.path == "/v2/orders" and self.dialect == "bithumb":
            return self._create(handler, params)
        if method == "GET" and parts.path == "/v1/order":
            return self._send(handler, *self._get(params))
        if method == "GET" and parts.path == "/v1/accounts":
            return self._send(handler, 200, self._accounts())
        return self._send(handler, *self._error(404, "not_found", parts.path))

    def _accounts(self) -> list[dict]:
        with self._lock:
            krw = sum((o["_fill"]["funds"] - o["_fill"]["fee"] for o in self.orders.values()
                       if o["state"] == "done"), Decimal(0)) + self.balance_offset
            locked = sum((Decimal(o["volume"]) for o in self.orders.values()
                          if o["state"] == "wait"), Decimal(0))
        return [{"currency": "KRW", "balance": str(krw), "locked": "0",
                 "avg_buy_price": "0", "avg_buy_price_modified": False, "unit_currency": "KRW"},
                {"currency": "BTC", "balance": str(self.btc_offset), "locked": str(locked),
                 "avg_buy_price": "0", "avg_buy_price_modified": False, "unit_currency": "KRW"}]

    def _create(self, handler, params: dict) -> None:
        if self.refuse:
            return self._send(handler, *self._error(400, "insufficient_funds_ask",
                                                    "주문가능한 금액(BTC)이 부족합니다."))
        if (params.get("market"), params.get("side"), params.get("ord_type")) != ("KRW-BTC", "ask", "market"):
            return self._send(handler, *self._error(400, "invalid_parameter",
                                                    "only market asks on KRW-BTC"))
        try:
            volume = Decimal(params["volume"])
        except Exception:
            return self._send(handler, *self._error(400, "invalid_volume", "volume"))
        identifier = params.get(self.id_field)
        with self._lock:
            if self._faults and self._faults[0] == "503_before_create":
                self._faults.pop(0)
                return self._send(handler, *self._error(503, "service_unavailable", "injected"))
            if identifier and identifier in self.by_identifier:
                return self._send(handler, *self._error(400, "duplicate_identifier",
                                                        "identifier already used"))
            fault = self._faults.pop(0) if self._faults else None
            order_id = str(uuid.uuid4())
            now = datetime.now(timezone.utc).isoformat()
            funds = (volume * self.price).quantize(Decimal("0.0001"), ROUND_HALF_UP)
            order = {"uuid": order_id, "side": "ask", "ord_type": "market", "price": None,
                     "state": "wait", "market": "KRW-BTC", "created_at": now,
                     "volume": str(volume), "remaining_volume": str(volume), "reserved_fee": "0",
                     "remaining_fee": "0", "paid_fee": "0", "locked": str(volume),
                     "executed_volume": "0", "trades_count": 0, self.id_field: identifier,
                     "_fill": {"funds": funds, "fee": (funds * self.fee_rate).quantize(
                         Decimal("0.0001"), ROUND_HALF_UP), "at": now}}
            self.orders[order_id] = order
            if identifier:
                self.by_identifier[identifier] = order_id
        if fault == "500_after_create":
            return self._send(handler, *self._error(500, "server_error", "injected"))
        if self.dialect == "bithumb":
            return self._send(handler, 201, {"order_id": order_id, "client_order_id": identifier,
                                             "market": "KRW-BTC", "side": "ask",
                                             "ord_type": "market", "created_at": now})
        return self._send(handler, 201, self._public(order))

    def _get(self, params: dict):
        with self._lock:
            if not (params.get("uuid") or params.get(self.id_field)):
                return self._error(400, "invalid_parameter", f"uuid or {self.id_field} required")
            order_id = params.get("uuid") or self.by_identifier.get(params.get(self.id_field) or "")
            order = self.orders.get(order_id or "")
            if order is None:
                return self._error(404, "order_not_found", "주문을 찾지 못했습니다.")
            if order["state"] == "wait" and not self.hold_fills:  # a market order fills at once
                fill = order["_fill"]
                order.update(state="done", remaining_volume="0", locked="0",
                             executed_volume=order["volume"], trades_count=1,
                             paid_fee=str(fill["fee"]))
                order["trades"] = [{"market": "KRW-BTC", "uuid": str(uuid.uuid4()),
                                    "price": str(self.price), "volume": order["volume"],
                                    "funds": str(fill["funds"]), "side": "ask",
                                    "created_at": fill["at"]}]
            return 200, self._public(order)

    @staticmethod
    def _public(order: dict) -> dict:
        return {k: v for k, v in order.items() if not k.startswith("_")}
