"""A fake LND REST server (lnd's grpc-gateway), over real HTTP(S) on 127.0.0.1.

Wire shapes as the gateway writes them: int64/uint64 fields as JSON strings, bytes as
standard base64, enums as names (`"state": "SETTLED"`), errors `{"code", "message",
"details"}` with the HTTP status of the gRPC code (macaroon failures are gRPC Unknown,
so HTTP 500, as a real lnd answers), and `GET /v1/invoices/subscribe` as a chunked
stream held open with one `{"result": Invoice}` per line (`{"error": …}` on failure).
Subscribe replays settled invoices with `settle_index` greater than the one asked for
(0 means "only new ones", as lnd does) and added invoices after `add_index`;
`GET /v1/invoices` lists forward from `index_offset` (add_index), `num_max_invoices` a page.

    with FakeLnd(macaroon_hex=mac) as node:
        node.settle(payment_hash_hex)          # the payer paid (whole amount by default)
        node.drop_streams_after(1)             # the next stream breaks after 1 settlement
        node.duplicate_last_settlement()       # streams repeat the last settle event
        node.go_down(); node.come_back()       # refused connections, then up again
        node.serve_unavailable(True)           # 503 to everything
        node.created                           # raw JSON bodies of POST /v1/invoices
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.fakes.node_http import FakeNodeServer, NodeRequest, bolt11_string, node_pubkey



def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class _Invoice:
    memo: str
    preimage: bytes
    value_msat: int
    expiry: int
    private: bool
    add_index: int
    creation_date: int
    payment_addr: bytes
    payment_request: str = ""
    state: str = "OPEN"
    settle_index: int = 0
    settle_date: int = 0
    amt_paid_msat: int = 0
    r_hash: bytes = field(init=False)

    def __post_init__(self):
        self.r_hash = hashlib.sha256(self.preimage).digest()

    def current_state(self) -> str:
        if self.state == "OPEN" and time.time() >= self.creation_date + self.expiry:
            return "CANCELED"  # lnd cancels an invoice when it expires
        return self.state

    def json(self) -> dict:
        state = self.current_state()
        return {
            "memo": self.memo, "r_preimage": _b64(self.preimage), "r_hash": _b64(self.r_hash),
            "value": str(self.value_msat // 1000), "value_msat": str(self.value_msat),
            "settled": state == "SETTLED", "creation_date": str(self.creation_date),
            "settle_date": str(self.settle_date), "payment_request": self.payment_request,
            "description_hash": "", "expiry": str(self.expiry), "fallback_addr": "",
            "cltv_expiry": "80", "route_hints": [], "private": self.private,
            "add_index": str(self.add_index), "settle_index": str(self.settle_index),
            "amt_paid": str(self.amt_paid_msat), "amt_paid_sat": str(self.amt_paid_msat // 1000),
            "amt_paid_msat": str(self.amt_paid_msat), "state": state, "htlcs": [],
            "features": {}, "is_keysend": False, "payment_addr": _b64(self.payment_addr),
            "is_amp": False, "amp_invoice_state": {},
        }


class FakeLnd(FakeNodeServer):
    name = "fake-lnd"

    def __init__(self, *, macaroon_hex: str | None = None, tls: tuple[str, str] | None = None,
                 alias: str = "busan-lnd", block_height: int = 840_000,
                 local_balance_msat: int = 2_000_000_000, remote_balance_msat: int = 5_000_000_000):
        super().__init__(tls=tls)
        self.macaroon_hex = macaroon_hex or secrets.token_hex(64)
        self.node_key = secrets.token_hex(32)
        self.alias = alias
        self.block_height = block_height
        self.local_balance_msat = local_balance_msat
        self.remote_balance_msat = remote_balance_msat
        self.invoices: dict[str, _Invoice] = {}     # by payment hash hex
        self.created: list[dict] = []               # raw bodies of POST /v1/invoices
        self.events: list[dict] = []                # invoice snapshots streams send, in order
        self.settle_count = 0
        self._drop_after: int | None = None

    # -- test controls (the payer and the operator; not HTTP) ------------------------------

    def settle(self, payment_hash: str, amount_msat: int | None = None) -> int:
        """The payer paid: settle the invoice and notify the streams. Returns its settle_index."""
        with self.changed:
            invoice = self.invoices[payment_hash]
            if invoice.current_state() != "OPEN":
                raise ValueError(f"invoice is {invoice.current_state()}, it cannot be paid")
            self.settle_count += 1
            invoice.state = "SETTLED"
            invoice.settle_index = self.settle_count
            invoice.settle_date = int(time.time())
            invoice.amt_paid_msat = invoice.value_msat if amount_msat is None else amount_msat
            self.events.append(invoice.json())
            self.changed.notify_all()
            return invoice.settle_index

    def duplicate_last_settlement(self) -> None:
        with self.changed:
            last = max((i for i in self.invoices.values() if i.settle_index),
                       key=lambda i: i.settle_index)
            self.events.append(last.json())
            self.changed.notify_all()

    def drop_streams_after(self, settlements: int) -> None:
        """The next stream breaks (no chunk terminator) after sending this many settlements."""
        self._drop_after = settlements

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: NodeRequest) -> None:
        url = urlsplit(request.path)
        path, query = url.path, parse_qs(url.query)
        if request.headers.get("Grpc-Metadata-macaroon") is None:
            return self._error(request, 500, 2, "expected 1 macaroon, got 0")
        if request.headers.get("Grpc-Metadata-macaroon") != self.macaroon_hex:
            if path == "/v1/invoices/subscribe":  # stream errors come in the stream
                return self._stream_error(request, 2, "verification failed: signature mismatch "
                                                      "after caveat verification")
            return self._error(request, 500, 2,
                               "verification failed: signature mismatch after caveat verification")
        if request.command == "POST" and path == "/v1/invoices":
            return self._add_invoice(request)
        if request.command == "GET" and path.startswith("/v1/invoice/"):
            return self._lookup(request, path.rsplit("/", 1)[1])
        if request.command == "GET" and path == "/v1/invoices":
            return self._list(request, query)
        if request.command == "GET" and path == "/v1/invoices/subscribe":
            return self._subscribe(request, query)
        if request.command == "GET" and path == "/v1/getinfo":
            return request.send_json(200, self._getinfo())
        if request.command == "GET" and path == "/v1/balance/channels":
            return request.send_json(200, self._channel_balance())
        return self._error(request, 404, 5, "Not Found")

    def _error(self, request: NodeRequest, status: int, code: int, message: str) -> None:
        request.send_json(status, {"code": code, "message": message, "details": []})

    def _stream_error(self, request: NodeRequest, code: int, message: str) -> None:
        request.start_chunked()
        request.send_chunk(json.dumps({"error": {"code": code, "message": message,
                                                 "details": []}}).encode() + b"\n")
        request.end_chunked()

    def _add_invoice(self, request: NodeRequest) -> None:
        body = request.json_body()
        self.created.append(body)
        try:
            value_msat = int(body.get("value_msat") or 0)
            value = int(body.get("value") or 0)
            expiry = int(body.get("expiry") or 86400)
        except (TypeError, ValueError) as exc:
            return self._error(request, 400, 3, f"proto: syntax error: {exc}")
        if value and value_msat:
            return self._error(request, 500, 2, "value and value_msat are mutually exclusive")
        value_msat = value_msat or value * 1000
        if value_msat < 0:
            return self._error(request, 500, 2, "payment of negative value is not allowed")
        if expiry > 31_536_000:
            return self._error(request, 500, 2, "expiry of 31536001 seconds is greater than "
                                                "max allowed expiry")
        with self.changed:
            invoice = _Invoice(memo=body.get("memo", ""), preimage=secrets.token_bytes(32),
                               value_msat=value_msat, expiry=expiry,
                               private=bool(body.get("private")), add_index=len(self.invoices) + 1,
                               creation_date=int(time.time()), payment_addr=secrets.token_bytes(32))
            invoice.payment_request = bolt11_string(
                self.node_key, amount_msat=value_msat, payment_hash=invoice.r_hash,
                payment_secret=invoice.payment_addr, description=invoice.memo, expiry=expiry,
                created=invoice.creation_date)
            self.invoices[invoice.r_hash.hex()] = invoice
            self.events.append(invoice.json())
            self.changed.notify_all()
        request.send_json(200, {"r_hash": _b64(invoice.r_hash),
                                "payment_request": invoice.payment_request,
                                "add_index": str(invoice.add_index),
                                "payment_addr": _b64(invoice.payment_addr)})

    def _lookup(self, request: NodeRequest, r_hash_str: str) -> None:
        try:
            key = bytes.fromhex(r_hash_str).hex()
        except ValueError:
            return self._error(request, 500, 2, "encoding/hex: invalid byte")
        if len(key) != 64:
            return self._error(request, 500, 2, "payment hash must be exactly 32 bytes")
        with self.lock:
            invoice = self.invoices.get(key)
            if invoice is None:
                return self._error(request, 404, 5, "unable to locate invoice")
            request.send_json(200, invoice.json())

    def _list(self, request: NodeRequest, query: dict) -> None:
        """ListInvoices, forward only (`reversed=false`): add_index > index_offset."""
        offset = int(query.get("index_offset", ["0"])[0] or 0)
        limit = int(query.get("num_max_invoices", ["100"])[0] or 100)
        if query.get("reversed", ["false"])[0] not in ("false", "0"):
            return self._error(request, 501, 12, "the fake lists forward only")
        with self.lock:
            page = sorted((i for i in self.invoices.values() if i.add_index > offset),
                          key=lambda i: i.add_index)[:limit]
            request.send_json(200, {
                "invoices": [i.json() for i in page],
                "last_index_offset": str(page[-1].add_index if page else 0),
                "first_index_offset": str(page[0].add_index if page else 0)})

    def _subscribe(self, request: NodeRequest, query: dict) -> None:
        add_index = int(query.get("add_index", ["0"])[0] or 0)
        settle_index = int(query.get("settle_index", ["0"])[0] or 0)
        with self.lock:
            backlog = []
            if add_index:
                backlog += [i.json() for i in sorted(self.invoices.values(), key=lambda i: i.add_index)
                            if i.add_index > add_index]
            if settle_index:
                backlog += [i.json() for i in sorted(self.invoices.values(), key=lambda i: i.settle_index)
                            if i.settle_index > settle_index]
            position = len(self.events)
            generation = self.stream_generation
            drop_after, self._drop_after = self._drop_after, None
        request.start_chunked()
        settled_sent = 0
        try:
            pending = backlog
            while True:
                for invoice in pending:
                    request.send_chunk(json.dumps({"result": invoice}).encode() + b"\n")
                    if invoice["state"] == "SETTLED":
                        settled_sent += 1
                        if drop_after is not None and settled_sent >= drop_after:
                            return request.cut()
                with self.changed:
                    while len(self.events) == position and generation == self.stream_generation:
                        self.changed.wait(0.2)
                    if generation != self.stream_generation:
                        return request.cut()
                    pending = self.events[position:]
                    position = len(self.events)
        except OSError:  # the client went away
            request.close_connection = True

    def _getinfo(self) -> dict:
        return {
            "version": "0.18.3-beta commit=v0.18.3-beta", "commit_hash": "0" * 40,
            "identity_pubkey": node_pubkey(self.node_key), "alias": self.alias, "color": "#3399ff",
            "num_pending_channels": 0, "num_active_channels": 1, "num_inactive_channels": 0,
            "num_peers": 1, "block_height": self.block_height, "block_hash": "00" * 32,
            "best_header_timestamp": str(int(time.time())), "synced_to_chain": True,
            "synced_to_graph": True, "testnet": False,
            "chains": [{"chain": "bitcoin", "network": "regtest"}], "uris": [], "features": {},
            "require_htlc_interceptor": False, "store_final_htlc_resolutions": False,
        }

    def _channel_balance(self) -> dict:
        def amount(msat: int) -> dict:
            return {"sat": str(msat // 1000), "msat": str(msat)}
        zero = amount(0)
        return {"balance": str(self.local_balance_msat // 1000), "pending_open_balance": "0",
                "local_balance": amount(self.local_balance_msat),
                "remote_balance": amount(self.remote_balance_msat),
                "unsettled_local_balance": zero, "unsettled_remote_balance": zero,
                "pending_open_local_balance": zero, "pending_open_remote_balance": zero}
