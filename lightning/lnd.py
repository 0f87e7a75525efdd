"""LND over its REST gateway (`lnd --restlisten`), authenticated with a hex macaroon.

The gateway writes int64 fields as JSON strings and bytes as base64; both are turned into
ints and hex here. Settlements come from `GET /v1/invoices/subscribe?settle_index=N`, an
NDJSON stream that first replays the invoices settled after N and then stays open for new
ones. lnd treats `settle_index=0` as "only new ones", so from 0 the settled invoices are
first read with `GET /v1/invoices` (paged by add_index) and the stream resumes after them
(when none is settled yet, one that settles between that list and the subscription would
be missed: only before the node's very first settlement, and `lookup_invoice` finds it).

What the caller can rely on:
- `settlements()` yields only settlements with index > `after_index`, each index once per
  call and in increasing order: a notification lnd repeats (same settle_index) is dropped
  here. Across calls the caller passes its last stored index, so nothing repeats either;
  the listener still records by payment hash, which makes any repeat harmless.
- nothing new for `timeout` seconds (a read timeout on the stream) ends the iteration
  normally; a refused connection, a broken stream, HTTP 5xx or an `{"error": …}` line
  raises LightningUnavailable; a refused macaroon or a certificate that does not match
  raises LightningError (a configuration fault that waiting will not heal).
- the macaroon is sent only as a header; it appears in no message, log line or repr.
"""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from typing import Iterator

import requests
from urllib3.exceptions import ReadTimeoutError

from lightning.backend import (LightningError, LightningUnavailable, LnInvoice, LnSettlement,
                               LnState, NodeInfo)
from lightning.http import NodeSession, body as bounded_body, lines as bounded_lines

__all__ = ["LndRestBackend"]

#: The shortest stream read timeout (requests refuses 0).
MIN_WAIT = 0.05
_STATES = {"OPEN": LnState.OPEN, "SETTLED": LnState.SETTLED, "CANCELED": LnState.CANCELED,
           "ACCEPTED": LnState.ACCEPTED}
# lnd reports macaroon problems as gRPC Unknown (HTTP 500); these texts tell them apart
# from a node that is merely down or still starting.
_AUTH_TEXTS = ("macaroon", "verification failed", "permission denied", "cannot get macaroon",
               "unauthorized")


def _utc(seconds) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


def _int(value) -> int:
    """An int64 the gateway sent as a string ("" or absent means 0)."""
    return int(value or 0)


class LndRestBackend(NodeSession):
    name = "lnd"
    list_page_size = 500  # invoices per `GET /v1/invoices` page

    def __init__(self, url: str, macaroon_hex: str, cert_path: str | None = None, *,
                 timeout: float = 10.0):
        # lnd signs its own tls.cert: `cert_path` trusts exactly that file when given.
        super().__init__(url, "Grpc-Metadata-macaroon", macaroon_hex, cert_path, timeout)

    # -- HTTP ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, body: dict | None = None,
              params: dict | None = None, stream: bool = False,
              read_timeout: float | None = None) -> requests.Response:
        deadline = time.monotonic() + self.timeout
        try:
            response = self._session.request(
                method, self.url + path, json=body, params=params, stream=True,
                verify=self._verify,  # per request: REQUESTS_CA_BUNDLE would override a session's
                timeout=(self.timeout, read_timeout if read_timeout is not None else self.timeout))
            # A whole answer within `timeout` (the read timeout alone is per socket read).
            return response if stream else bounded_body(response, deadline, f"LND at {self.url}")
        except requests.exceptions.SSLError as exc:
            raise LightningError(f"LND at {self.url}: TLS verification failed (is BUSANPAY_LND_CERT "
                                 f"the node's tls.cert?): {self._clean(str(exc.args[0] if exc.args else exc))}"
                                 ) from None
        except requests.exceptions.RequestException as exc:
            raise LightningUnavailable(f"LND at {self.url} is unreachable: "
                                       f"{type(exc).__name__}") from None

    def _refusal(self, status: int, message: str) -> LightningError:
        message = self._clean(message)
        if status in (401, 403) or any(t in message.lower() for t in _AUTH_TEXTS):
            return LightningError(f"LND refused the macaroon (it needs invoices:read, "
                                  f"invoices:write, info:read, offchain:read): {message}")
        if status >= 500:
            return LightningUnavailable(f"LND answered HTTP {status}: {message}")
        return LightningError(f"LND refused the request (HTTP {status}): {message}")

    def _json(self, response: requests.Response) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code == 200 and isinstance(data, dict):
            return data
        message = data.get("message", "") if isinstance(data, dict) else response.text[:200]
        if response.status_code == 200:
            raise LightningUnavailable(f"LND answered something that is not JSON: {message!r}")
        raise self._refusal(response.status_code, str(message))

    def _get(self, path: str) -> dict:
        return self._json(self._send("GET", path))

    # -- the interface ---------------------------------------------------------------------

    def create_invoice(self, amount_msat: int, description: str, expiry_seconds: int,
                       *, label: str) -> LnInvoice:
        if amount_msat <= 0 or expiry_seconds <= 0:
            raise ValueError("amount_msat and expiry_seconds must be positive")
        # lnd has no labels; `private` adds route hints, needed when the node's inbound
        # channels are unannounced (typical with an LSP) and harmless otherwise.
        added = self._json(self._send("POST", "/v1/invoices", body={
            "value_msat": str(amount_msat), "memo": description,
            "expiry": str(expiry_seconds), "private": True}))
        payment_hash = base64.b64decode(added["r_hash"]).hex()
        # The node's own creation time and expiry, so expires_at is exactly the BOLT11's.
        invoice = self.lookup_invoice(payment_hash)
        if invoice is None:
            raise LightningUnavailable("LND lost the invoice it just created")
        return invoice

    def lookup_invoice(self, payment_hash: str) -> LnInvoice | None:
        response = self._send("GET", f"/v1/invoice/{payment_hash.lower()}")
        if response.status_code == 404 or (
                response.status_code == 500 and "unable to locate invoice" in response.text):
            return None  # older lnd versions answer 500 for an unknown hash
        return self._invoice(self._json(response))

    @staticmethod
    def _invoice(data: dict) -> LnInvoice:
        state = _STATES.get(data.get("state", "OPEN"), LnState.OPEN)
        settled = state is LnState.SETTLED
        return LnInvoice(
            payment_hash=base64.b64decode(data["r_hash"]).hex(),
            bolt11=data.get("payment_request", "").lower(),
            amount_msat=_int(data.get("value_msat")),
            expires_at=_utc(_int(data.get("creation_date")) + _int(data.get("expiry"))),
            state=state,
            amount_paid_msat=_int(data.get("amt_paid_msat")),
            settled_at=_utc(data["settle_date"]) if settled and _int(data.get("settle_date")) else None,
            settle_index=_int(data.get("settle_index")) or None,
        )

    def settlements(self, after_index: int, *, timeout: float) -> Iterator[LnSettlement]:
        timeout = max(timeout, MIN_WAIT)  # 0: what is there now (requests refuses a 0 timeout)
        last = after_index
        if after_index == 0:  # lnd cannot replay from 0: read what is settled already
            for invoice in self._settled_invoices():
                settlement = self._settlement(invoice)
                last = settlement.index
                yield settlement
        response = self._send("GET", "/v1/invoices/subscribe", stream=True, read_timeout=timeout,
                              params={"settle_index": str(last)})
        if response.status_code != 200:
            try:
                self._json(response)
            finally:
                response.close()
        quiet_until = time.monotonic() + timeout
        try:
            for line in bounded_lines(response, f"LND at {self.url}"):
                if line:
                    message = json.loads(line)
                    if "error" in message:
                        error = message["error"] or {}
                        refusal = self._refusal(int(error.get("http_code") or 500),
                                                str(error.get("message", "")))
                        if type(refusal) is LightningError:
                            raise refusal
                        raise LightningUnavailable(f"LND's invoice stream failed: {refusal}")
                    invoice = message.get("result") or {}
                    index = _int(invoice.get("settle_index"))
                    if invoice.get("state") == "SETTLED" and index > last:
                        last = index
                        yield self._settlement(invoice)
                        quiet_until = time.monotonic() + timeout
                if time.monotonic() >= quiet_until:  # only non-settle events came
                    return
            raise LightningUnavailable("LND closed the invoice stream")
        except requests.exceptions.ConnectionError as exc:
            if any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
                return  # nothing new within `timeout`: the caller stores progress and returns
            raise LightningUnavailable(f"LND's invoice stream broke: {type(exc).__name__}") from None
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError,
                AttributeError) as exc:  # also what no settlement of LND's looks like
            raise LightningUnavailable(f"LND's invoice stream broke: {type(exc).__name__}") from None
        finally:
            response.close()

    @staticmethod
    def _settlement(invoice: dict) -> LnSettlement:
        return LnSettlement(payment_hash=base64.b64decode(invoice["r_hash"]).hex(),
                            amount_paid_msat=_int(invoice.get("amt_paid_msat")),
                            settled_at=_utc(invoice.get("settle_date")),
                            index=_int(invoice.get("settle_index")))

    def _settled_invoices(self) -> list[dict]:
        """Every settled invoice, in settle order (`GET /v1/invoices`, forward by add_index).
        Only needed until the listener has stored its first index."""
        settled, offset = [], 0
        while True:
            page = self._json(self._send("GET", "/v1/invoices", params={
                "index_offset": str(offset), "num_max_invoices": str(self.list_page_size), "reversed": "false"}))
            invoices = page.get("invoices") or []
            if not invoices:
                return sorted(settled, key=lambda i: _int(i.get("settle_index")))
            settled += [i for i in invoices
                        if i.get("state") == "SETTLED" and _int(i.get("settle_index"))]
            offset = _int(page.get("last_index_offset"))

    def node_info(self) -> NodeInfo:
        try:
            info = self._get("/v1/getinfo")
            balance = self._get("/v1/balance/channels")
            return NodeInfo(
                backend=self.name, reachable=True, alias=info.get("alias", ""),
                node_id=info.get("identity_pubkey", ""),
                block_height=info.get("block_height"),
                local_balance_msat=_int((balance.get("local_balance") or {}).get("msat")),
                inbound_msat=_int((balance.get("remote_balance") or {}).get("msat")),
                error=None if info.get("synced_to_chain", True) else "not synced to chain yet")
        except (LightningError, KeyError, ValueError, TypeError) as exc:
            return NodeInfo(backend=self.name, reachable=False, error=self._clean(str(exc)),
                            down=isinstance(exc, LightningUnavailable))
