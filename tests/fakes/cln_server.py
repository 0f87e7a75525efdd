"""A fake Core Lightning REST server (the clnrest plugin), over real HTTP(S) on 127.0.0.1.

As clnrest answers: every method is `POST /v1/<method>` with a JSON object of named
parameters and the `Rune` header; other verbs get 405; a missing or foreign rune is a
401 with `{"code", "message"}`; an RPC error is HTTP 500 with lightningd's error object
(`{"code": 900, "message": "Duplicate label …"}`, `{"code": 904, "message": "Timed out"}`
when `waitanyinvoice` waits longer than its `timeout`). Amounts are integer msat
(`amount_msat`, `amount_received_msat`), times unix seconds, `pay_index` counts paid
invoices from 1.

    with FakeCln(rune=rune) as node:
        node.settle(payment_hash)          # the payer paid
        node.duplicate_next()              # the next waitanyinvoice repeats the last payment
        node.drop_streams()                # a waiting waitanyinvoice is cut off
        node.go_down(); node.come_back()   # refused connections, then up again
        node.serve_unavailable(True)       # 503 to everything
        node.calls                         # (method, params) in order
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field

from tests.fakes.node_http import FakeNodeServer, NodeRequest, bolt11_string, node_pubkey


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Invoice:
    label: str
    description: str
    amount_msat: int
    expires_at: int
    created_index: int
    preimage: bytes
    payment_secret: bytes
    bolt11: str = ""
    pay_index: int = 0
    paid_at: int = 0
    amount_received_msat: int = 0
    payment_hash: str = field(init=False)

    def __post_init__(self):
        self.payment_hash = hashlib.sha256(self.preimage).hexdigest()

    def status(self) -> str:
        if self.pay_index:
            return "paid"
        return "expired" if time.time() >= self.expires_at else "unpaid"

    def json(self) -> dict:
        out = {"label": self.label, "bolt11": self.bolt11, "payment_hash": self.payment_hash,
               "status": self.status(), "description": self.description,
               "expires_at": self.expires_at, "amount_msat": self.amount_msat,
               "created_index": self.created_index}
        if self.pay_index:
            out.update(pay_index=self.pay_index, amount_received_msat=self.amount_received_msat,
                       paid_at=self.paid_at, payment_preimage=self.preimage.hex(),
                       updated_index=self.pay_index)
        return out


class FakeCln(FakeNodeServer):
    name = "fake-cln"

    def __init__(self, *, rune: str | None = None, tls: tuple[str, str] | None = None,
                 alias: str = "busan-cln", blockheight: int = 840_000,
                 channels: list[tuple[int, int, str]] | None = None):
        """channels: (to_us_msat, total_msat, state) of each channel."""
        super().__init__(tls=tls)
        self.rune = rune or secrets.token_urlsafe(48)
        self.node_key = secrets.token_hex(32)
        self.alias = alias
        self.blockheight = blockheight
        self.channels = channels if channels is not None else [
            (1_500_000_000, 4_000_000_000, "CHANNELD_NORMAL"),
            (500_000_000, 3_000_000_000, "CHANNELD_NORMAL"),
            (9_000_000_000, 10_000_000_000, "CHANNELD_AWAITING_LOCKIN")]
        self.invoices: dict[str, _Invoice] = {}   # by label
        self.calls: list[tuple[str, dict]] = []
        self.pay_count = 0
        self._duplicate_next = False

    # -- test controls -----------------------------------------------------------------------

    def _by_hash(self, payment_hash: str) -> _Invoice:
        return next(i for i in self.invoices.values() if i.payment_hash == payment_hash)

    def settle(self, payment_hash: str, amount_msat: int | None = None) -> int:
        """The payer paid: returns the invoice's pay_index and wakes waitanyinvoice."""
        with self.changed:
            invoice = self._by_hash(payment_hash)
            if invoice.status() != "unpaid":
                raise ValueError(f"invoice is {invoice.status()}, it cannot be paid")
            self.pay_count += 1
            invoice.pay_index = self.pay_count
            invoice.paid_at = int(time.time())
            invoice.amount_received_msat = invoice.amount_msat if amount_msat is None else amount_msat
            self.changed.notify_all()
            return invoice.pay_index

    def duplicate_next(self) -> None:
        """The next waitanyinvoice answers the last paid invoice again (whatever it asked)."""
        self._duplicate_next = True

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, request: NodeRequest) -> None:
        if request.command != "POST" or not request.path.startswith("/v1/"):
            return request.send_json(405, {"code": 405, "message": "Method Not Allowed"})
        rune = request.headers.get("Rune")
        if not rune:
            return request.send_json(401, {"code": 1501, "message": "Not authorized: Missing rune"})
        if rune != self.rune:
            return request.send_json(401, {"code": 1502,
                                           "message": "Not authorized: Not derived from master"})
        method = request.path[len("/v1/"):].split("?")[0]
        try:
            params = request.json_body()
        except ValueError:
            return request.send_json(400, {"code": -32700, "message": "Parse error"})
        self.calls.append((method, params))
        handler = getattr(self, f"_rpc_{method}", None)
        if handler is None:
            return request.send_json(500, {"code": -32601, "message": f"Unknown command '{method}'"})
        try:
            result = handler(params, request)
        except RpcError as err:
            return request.send_json(500, {"code": err.code, "message": err.message})
        except OSError:
            request.close_connection = True
            return
        if result is not None:
            request.send_json(201, result)

    def _rpc_invoice(self, params: dict, request) -> dict:
        for name in ("amount_msat", "label", "description"):
            if name not in params:
                raise RpcError(-32602, f"missing required parameter: {name}")
        amount = params["amount_msat"]
        if not isinstance(amount, int) or amount <= 0:
            raise RpcError(-32602, "amount_msat: should be positive msat or 'any': invalid token")
        expiry = params.get("expiry", 604_800)  # lightningd's default: a week
        label = str(params["label"])
        now = int(time.time())
        with self.changed:
            if label in self.invoices:
                raise RpcError(900, f"Duplicate label '{label}'")
            invoice = _Invoice(label=label, description=params["description"], amount_msat=amount,
                               expires_at=now + int(expiry), created_index=len(self.invoices) + 1,
                               preimage=secrets.token_bytes(32), payment_secret=secrets.token_bytes(32))
            invoice.bolt11 = bolt11_string(
                self.node_key, amount_msat=amount, payment_hash=bytes.fromhex(invoice.payment_hash),
                payment_secret=invoice.payment_secret, description=invoice.description,
                expiry=int(expiry), created=now)
            self.invoices[label] = invoice
        return {"payment_hash": invoice.payment_hash, "expires_at": invoice.expires_at,
                "bolt11": invoice.bolt11, "payment_secret": invoice.payment_secret.hex(),
                "created_index": invoice.created_index}

    def _rpc_listinvoices(self, params: dict, request) -> dict:
        with self.lock:
            found = [i for i in self.invoices.values()
                     if all(value is None or str(getattr(i, key)) == str(value)
                            for key, value in params.items() if key in ("label", "payment_hash"))]
            return {"invoices": [i.json() for i in found]}

    def _rpc_waitanyinvoice(self, params: dict, request) -> dict | None:
        last = int(params.get("lastpay_index") or 0)
        timeout = params.get("timeout")
        if last < 0 or (timeout is not None and not isinstance(timeout, int)):
            raise RpcError(-32602, "lastpay_index/timeout: should be an unsigned 64 bit integer")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            generation = self.stream_generation
            while True:
                if self._duplicate_next and self.pay_count:
                    self._duplicate_next = False
                    return max(self.invoices.values(), key=lambda i: i.pay_index).json()
                paid = sorted((i for i in self.invoices.values() if i.pay_index > last),
                              key=lambda i: i.pay_index)
                if paid:
                    return paid[0].json()
                if generation != self.stream_generation:
                    request.cut()
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    raise RpcError(904, "Timed out")
                self.changed.wait(0.1)

    def _rpc_getinfo(self, params: dict, request) -> dict:
        normal = [c for c in self.channels if c[2] == "CHANNELD_NORMAL"]
        return {"id": node_pubkey(self.node_key), "alias": self.alias, "color": "02a0ff",
                "num_peers": len(self.channels), "num_pending_channels": len(self.channels) - len(normal),
                "num_active_channels": len(normal), "num_inactive_channels": 0, "address": [],
                "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 9735}],
                "version": "v24.11", "blockheight": self.blockheight, "network": "regtest",
                "fees_collected_msat": 0, "lightning-dir": "/var/lib/cln/regtest",
                "our_features": {"init": "08a0000a0a69a2", "node": "88a0000a0a69a2",
                                 "channel": "", "invoice": "02000002024100"}}

    def _channel_id(self, n: int) -> str:
        return hashlib.sha256(f"{self.node_key}{n}".encode()).hexdigest()

    def _rpc_listpeerchannels(self, params: dict, request) -> dict:
        channels = []
        for n, (to_us, total, state) in enumerate(self.channels):
            channels.append({
                "peer_id": "02" + self._channel_id(n)[:64], "peer_connected": True, "state": state,
                "short_channel_id": f"{100 + n}x1x0", "channel_id": self._channel_id(n),
                "funding_txid": self._channel_id(n + 100), "funding_outnum": 0, "private": False,
                "opener": "local", "total_msat": total, "to_us_msat": to_us,
                "spendable_msat": max(0, to_us - total // 100),
                "receivable_msat": max(0, total - to_us - total // 100),
                "min_to_us_msat": 0, "max_to_us_msat": to_us})
        return {"channels": channels}

    def _rpc_listfunds(self, params: dict, request) -> dict:
        return {"outputs": [], "channels": [
            {"peer_id": "02" + self._channel_id(n)[:64], "connected": True, "state": state,
             "short_channel_id": f"{100 + n}x1x0", "channel_id": self._channel_id(n),
             "our_amount_msat": to_us, "amount_msat": total,
             "funding_txid": self._channel_id(n + 100), "funding_output": 0}
            for n, (to_us, total, state) in enumerate(self.channels)]}
