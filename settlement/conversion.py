"""Conversion: the treasury sells recognised BTC for won at a venue behind an interface.

`Exchange.sell_btc(sats, identifier)` returns the fill (sats sold, won received net of the
venue's fee, average executed rate). `UpbitClient` speaks the Upbit-compatible private
API: JWT HS256 bearer tokens (made by PyJWT) carrying `access_key`, a fresh `nonce` and `query_hash`
(SHA-512 of the query string, `query_hash_alg` SHA512); `POST /v1/orders` with
`market=KRW-BTC, side=ask, ord_type=market, volume, identifier`; `GET /v1/order` by
`uuid` or `identifier`. The identifier is our conversion id, so a retry after a lost
answer finds the first order instead of selling twice.

`convert(gateway)` creates the conversion row first (crash-safe) together with its
`venue_deposit:<id>` entry (the sats leave `treasury:btc` for `venue_btc:<venue>`: from
then until the fill the venue holds them, a counterparty exposure counted against its
cap), sells, then posts the `conversion:<id>` entry: the sats sold leave the venue's BTC
account, the locked won value of the sats sold (their share of the unconverted pool, half
up) leaves `conversion:krw`, the executed won lands in `exchange:krw`, the difference is
FX gain (credit) or loss (debit) on `fx:krw`. Deposited sats a sale did not sell (a
refusal, a partial fill) come back in `venue_return:<id>`. A deposit takes the Lightning
node's sats (`treasury_ln:btc`) first, then the on-chain wallet's; returns come back on-chain.
Rounding: the won received is floored to whole won (never book won we do not have).
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Callable, Protocol
from urllib.parse import unquote, urlencode

import jwt
import requests
from sqlalchemy import func, select

from merchants.service import random_id
from payments.bip21 import format_btc
from settlement.ledger import balance, lock, post
from settlement.models import Conversion, JournalEntry
from settlement.rules import (CONVERSION_BTC, CONVERSION_KRW, TREASURY_LN, conversion_entry,
                              locked_share, venue_deposit_entry, venue_return_entry)

SATS_PER_BTC = 100_000_000
LOCK = "busanpay:conversion"


class ExchangeError(RuntimeError):
    pass


class ExchangeUnavailable(ExchangeError):
    """The venue did not answer (or answered 5xx): try again later, same identifier."""


@dataclass(frozen=True)
class Fill:
    order_id: str
    sats: int
    krw: int  # whole won received, net of the venue's fee (floored)
    rate: Decimal  # average executed KRW/BTC, before fees
    fee_krw: Decimal


class Exchange(Protocol):
    name: str

    def sell_btc(self, sats: int, identifier: str) -> Fill: ...


# -- JWT (HS256, signed by PyJWT) ----------------------------------------------------------

def bearer_token(access_key: str, secret_key: str, params: dict | None,
                 extra: dict | None = None) -> str:
    """Upbit's private-API token: HS256 over `access_key`, a fresh `nonce` and, when the
    request has parameters, their SHA-512 `query_hash` (`extra`: claims a venue adds)."""
    payload = {"access_key": access_key, "nonce": str(uuid.uuid4()), **(extra or {})}
    if params:
        payload.update(query_hash=query_hash(params), query_hash_alg="SHA512")
    return jwt.encode(payload, secret_key, algorithm="HS256")


def query_string(params: dict) -> str:
    """The string Upbit hashes: the urlencoded parameters, unquoted."""
    return unquote(urlencode(params, doseq=True))


def query_hash(params: dict) -> str:
    return hashlib.sha512(query_string(params).encode("utf-8")).hexdigest()


class UpbitClient:
    """An Upbit-compatible private API client (market sells of BTC for KRW)."""

    ORDER_PATH = "/v1/orders"  # where a sale is placed
    ID_FIELD = "identifier"  # our conversion id, on the order and to look it up

    def __init__(self, base_url: str, access_key: str, secret_key: str, *, name: str = "upbit",
                 timeout: float = 10.0, poll_seconds: float = 0.2, poll_tries: int = 25,
                 session: requests.Session | None = None):
        if not (base_url and access_key and secret_key):
            raise ExchangeError("the exchange needs a URL, an access key and a secret key")
        self.base_url = base_url.rstrip("/")
        self.access_key, self.secret_key = access_key, secret_key
        self.name, self.timeout = name, timeout
        self.poll_seconds, self.poll_tries = poll_seconds, poll_tries
        self.http = session or requests.Session()

    def _claims(self) -> dict:
        return {}

    def _headers(self, params: dict | None) -> dict:
        token = bearer_token(self.access_key, self.secret_key, params, self._claims())
        return {"Authorization": f"Bearer {token}",
                "Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}

    def _call(self, method: str, path: str, params: dict) -> requests.Response:
        try:
            if method == "GET":
                return self.http.get(self.base_url + path, params=params,
                                     headers=self._headers(params), timeout=self.timeout)
            return self.http.post(self.base_url + path, json=params,
                                  headers=self._headers(params), timeout=self.timeout)
        except requests.RequestException as err:
            raise ExchangeUnavailable(f"{self.name}: {type(err).__name__}: {err}") from None

    def order(self, *, uuid_: str | None = None, identifier: str | None = None) -> dict | None:
        params = {"uuid": uuid_} if uuid_ else {self.ID_FIELD: identifier}
        res = self._call("GET", "/v1/order", params)
        if res.status_code == 404:
            return None
        if res.status_code >= 500:
            raise ExchangeUnavailable(f"{self.name}: HTTP {res.status_code}")
        if res.status_code != 200:
            raise ExchangeError(f"{self.name}: HTTP {res.status_code}: {res.text[:200]}")
        return res.json()

    def sell_btc(self, sats: int, identifier: str) -> Fill:
        if sats <= 0:
            raise ExchangeError("sell a positive number of sats")
        order = self.order(identifier=identifier)
        if order is None:
            params = {"market": "KRW-BTC", "side": "ask", "volume": format_btc(sats),
                      "ord_type": "market", self.ID_FIELD: identifier}
            try:
                res = self._call("POST", self.ORDER_PATH, params)
                if res.status_code >= 500:
                    raise ExchangeUnavailable(f"{self.name}: HTTP {res.status_code}")
                if res.status_code not in (200, 201):
                    raise ExchangeError(f"{self.name}: HTTP {res.status_code}: {res.text[:200]}")
                order = res.json()
            except ExchangeUnavailable:
                order = self.order(identifier=identifier)  # did it go through anyway?
                if order is None:
                    raise
        for _ in range(self.poll_tries):
            if order.get("state") in ("done", "cancel") and order.get("trades") is not None:
                return self._fill(order)
            time.sleep(self.poll_seconds)
            # A placement answer without `uuid` (Bithumb's v2) is read back by our id.
            order = (self.order(uuid_=order["uuid"]) if order.get("uuid")
                     else self.order(identifier=identifier)) or order
        raise ExchangeUnavailable(f"{self.name}: order {order.get('uuid') or identifier} "
                                  "not filled yet")

    def balances(self) -> dict[str, Decimal]:
        """`GET /v1/accounts`: balance + locked per currency (for reconciliation)."""
        res = self._call("GET", "/v1/accounts", {})
        if res.status_code >= 500:
            raise ExchangeUnavailable(f"{self.name}: HTTP {res.status_code}")
        if res.status_code != 200:
            raise ExchangeError(f"{self.name}: HTTP {res.status_code}: {res.text[:200]}")
        return {a["currency"]: Decimal(str(a.get("balance") or "0")) +
                Decimal(str(a.get("locked") or "0")) for a in res.json()}

    @staticmethod
    def _fill(order: dict) -> Fill:
        trades = order.get("trades") or []
        funds = sum((Decimal(str(t["funds"])) for t in trades), Decimal(0))
        volume = sum((Decimal(str(t["volume"])) for t in trades), Decimal(0))
        fee = Decimal(str(order.get("paid_fee") or "0"))
        sats = int((volume * SATS_PER_BTC).to_integral_value())
        if sats == 0:
            raise ExchangeError(f"order {order.get('uuid')} executed nothing")
        krw = int((funds - fee).to_integral_value(rounding=ROUND_FLOOR))
        rate = (funds / volume).quantize(Decimal("0.01"))
        return Fill(order["uuid"], sats, krw, rate, fee)


class BithumbClient(UpbitClient):
    """Bithumb's private API (2.x, base URL https://api.bithumb.com): Upbit's shape with
    three differences. The JWT also carries `timestamp` (milliseconds, required on every
    call); `POST /v1/orders` takes no client identifier, so a sale is placed with
    `POST /v2/orders` and `client_order_id` (our conversion id; its answer names the order
    `order_id`, so the order is read back with `GET /v1/order?client_order_id=`); and
    lookups use `client_order_id` where Upbit's use `identifier`. `GET /v1/accounts` and
    the order read back (`uuid`, `state`, `trades`, `paid_fee`) are Upbit's."""

    ORDER_PATH = "/v2/orders"
    ID_FIELD = "client_order_id"

    def __init__(self, base_url: str, access_key: str, secret_key: str, *,
                 name: str = "bithumb", **kwargs):
        super().__init__(base_url, access_key, secret_key, name=name, **kwargs)

    def _claims(self) -> dict:
        return {"timestamp": int(time.time() * 1000)}


def _order_absent(exchange, identifier: str) -> bool:
    finder = getattr(exchange, "order", None)
    if finder is None:
        return False
    try:
        return finder(identifier=identifier) is None
    except ExchangeError:
        return False


def exchange_for(gateway) -> Exchange | None:
    from settlement.config import settlement_config

    if "exchange" in gateway.extras:
        return gateway.extras["exchange"]
    cfg = settlement_config(gateway)
    exchange = None
    if cfg.exchange_url:
        exchange = UpbitClient(cfg.exchange_url, cfg.exchange_access_key, cfg.exchange_secret_key,
                               name=cfg.exchange_name)
    gateway.extras["exchange"] = exchange
    return exchange


def unconverted(session) -> tuple[int, int]:
    """(sats recognised and not yet sold, their locked won value)."""
    return -balance(session, CONVERSION_BTC), balance(session, CONVERSION_KRW)


def pending_sats(session) -> int:
    """Sats in sales started and not finished: reserved for their venue."""
    return int(session.execute(select(func.coalesce(func.sum(Conversion.sats), 0)).where(
        Conversion.status == "created")).scalar_one())


def _deposit(session, conv: Conversion) -> None:
    """Book the sale's deposit at its venue once (a sale from before deposits were booked
    gets its deposit when it finishes)."""
    key = f"venue_deposit:{conv.id}"
    if session.execute(select(JournalEntry.id).where(JournalEntry.business_key == key)).first():
        return
    # The Lightning node's sats go first: selling them frees the node's inbound liquidity
    # and keeps the on-chain sats for refunds, which are sent on-chain.
    from_lightning = min(max(balance(session, TREASURY_LN), 0), conv.sats)
    post(session, venue_deposit_entry(conv.id, conv.venue, conv.sats, moment=conv.created_at,
                                      from_lightning=from_lightning))


def _post_return(session, conv: Conversion, sats: int, why: str, moment) -> None:
    entry = venue_return_entry(conv.id, conv.venue, sats, why, moment=moment)
    if entry is not None:
        post(session, entry)


def convert(gateway, exchange: Exchange | None = None, *, min_sats: int | None = None,
            limit: Callable[[object, int], int] | None = None) -> dict:
    """Sell the unconverted pool at `exchange` (sats another venue's unfinished sale holds
    are not offered; `limit(session, sats)` may lower the amount, under the conversion
    lock, e.g. to keep the venue under its cap), or first finish this venue's interrupted
    sale. Returns a summary."""
    from settlement.config import settlement_config

    exchange = exchange or exchange_for(gateway)
    if exchange is None:
        return {"converted": None, "reason": "no exchange configured"}
    min_sats = settlement_config(gateway).conversion_min_sats if min_sats is None else min_sats
    with gateway.db.write() as session:
        lock(session, LOCK)
        conv = session.execute(select(Conversion).where(Conversion.status == "created",
                                                        Conversion.venue == exchange.name)
                               .order_by(Conversion.created_at)).scalars().first()
        if conv is None:
            sats = unconverted(session)[0] - pending_sats(session)
            if limit is not None and sats > 0:
                sats = min(sats, limit(session, sats))
            if sats < max(min_sats, 1):
                return {"converted": None, "reason": f"{sats} sats to sell"}
            now = gateway.clock()
            conv = Conversion(id=random_id(24), venue=exchange.name, sats=sats, status="created",
                              created_at=now, updated_at=now)
            session.add(conv)
            _deposit(session, conv)
    try:
        fill = exchange.sell_btc(conv.sats, conv.id)
    except ExchangeError as err:
        # A refusal (not an outage) of an order the venue does not have releases its sats
        # for another venue; anything uncertain stays bound to this venue and its identifier.
        refused = not isinstance(err, ExchangeUnavailable) and _order_absent(exchange, conv.id)
        with gateway.db.write() as session:
            lock(session, LOCK)
            row = session.get(Conversion, conv.id)
            row.attempts += 1
            if refused:
                row.status = "failed"
                _deposit(session, row)
                _post_return(session, row, row.sats, "refused", gateway.clock())
            row.last_error = f"{type(err).__name__}: {err}"[:1000]
            row.updated_at = gateway.clock()
            session.add(row)
        return {"converted": None, "conversionId": conv.id, "error": row.last_error}
    with gateway.db.write() as session:
        lock(session, LOCK)
        row = session.get(Conversion, conv.id, populate_existing=True)
        if row.status == "done":
            return {"converted": row.id, "duplicate": True}
        pool_sats, pool_krw = unconverted(session)
        locked = locked_share(fill.sats, pool_sats, pool_krw)
        now = gateway.clock()
        if fill.sats > row.sats:
            raise ExchangeError(f"{exchange.name} sold {fill.sats} sats of a {row.sats}-sat sale")
        _deposit(session, row)
        post(session, conversion_entry(row.id, fill.sats, fill.krw, locked, fill.rate,
                                       venue=row.venue, moment=now))
        _post_return(session, row, row.sats - fill.sats, "filled in part", now)
        row.status, row.sats, row.executed_krw = "done", fill.sats, fill.krw
        row.rate, row.locked_krw, row.external_id = fill.rate, locked, fill.order_id
        row.attempts += 1
        row.updated_at = now
        session.add(row)
        return {"converted": row.id, "sats": fill.sats, "executedKrw": str(fill.krw),
                "lockedKrw": str(locked), "fx": str(fill.krw - locked), "rate": str(fill.rate)}
