"""Core Lightning over its REST plugin (clnrest), authenticated with a rune.

Every call is `POST /v1/<method>` with named parameters as a JSON object and the rune in
the `Rune` header. lightningd's RPC errors come back as HTTP 500 with `{"code", "message"}`.
Settlements come from `waitanyinvoice {lastpay_index, timeout}` called in a loop: it
answers at once with the first invoice paid after `lastpay_index` (so payments made while
nobody listened come first), or waits; after `timeout` seconds it fails with code 904
"Timed out", which here means "nothing new" and ends the iteration normally.

What the caller can rely on:
- `settlements()` yields only pay_index > `after_index`, increasing, each once per call; an
  answer that repeats an index already seen is dropped. The listener still records by
  payment hash.
- CLN's timeout is whole seconds, so the iteration may last up to a second longer than
  `timeout`.
- `create_invoice` is idempotent per label: the same label, amount and description give
  the same unpaid invoice back (a retry after a lost answer); anything else with a used
  label is refused ("Duplicate label").
- a refused connection, a cut connection or an HTTP error without lightningd's error
  object raises LightningUnavailable; an RPC error (duplicate label, bad amount) and a
  refused rune raise LightningError; the rune appears in no message, log line or repr.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Iterator

import requests

from lightning.backend import (LightningError, LightningUnavailable, LnInvoice, LnSettlement,
                               LnState, NodeInfo)
from lightning.http import NodeSession, body as bounded_body

__all__ = ["ClnRestBackend"]

TIMED_OUT = 904  # waitanyinvoice: nothing was paid within `timeout`
DUPLICATE_LABEL = 900
_RUNE_CODES = (1501, 1502)  # clnrest: missing rune, rune not authorized
_STATES = {"unpaid": LnState.OPEN, "paid": LnState.SETTLED, "expired": LnState.CANCELED}


class _RpcError(LightningError):
    """lightningd refused the call; `code` is its JSON-RPC error code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _msat(value) -> int:
    """An msat amount: an int in current CLN, "123msat" in releases before v23.02."""
    if isinstance(value, str):
        value = value.removesuffix("msat")
    return int(value or 0)


def _utc(seconds) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


class ClnRestBackend(NodeSession):
    name = "cln"

    def __init__(self, url: str, rune: str, cert_path: str | None = None, *, timeout: float = 10.0):
        super().__init__(url, "Rune", rune, cert_path, timeout)

    def _call(self, method: str, params: dict, *, read_timeout: float | None = None) -> dict:
        read = read_timeout if read_timeout is not None else self.timeout
        deadline = time.monotonic() + max(read, self.timeout)
        try:
            response = self._session.post(
                f"{self.url}/v1/{method}", json=params, verify=self._verify, stream=True,
                timeout=(self.timeout, read))
            # A whole answer by the deadline (the read timeout alone is per socket read).
            response = bounded_body(response, deadline, f"CLN at {self.url} ({method})")
        except requests.exceptions.SSLError as exc:
            raise LightningError(f"CLN at {self.url}: TLS verification failed (is the certificate "
                                 f"file clnrest's own?): {self._clean(str(exc.args[0] if exc.args else exc))}"
                                 ) from None
        except requests.exceptions.RequestException as exc:
            raise LightningUnavailable(f"CLN at {self.url} is unreachable ({method}): "
                                       f"{type(exc).__name__}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if 200 <= response.status_code < 300 and isinstance(data, dict):
            return data
        error = data if isinstance(data, dict) else {}
        if isinstance(error.get("error"), dict):  # older clnrest wrapped the error object
            error = error["error"]
        message = self._clean(str(error.get("message") or response.text[:200]))
        code = error.get("code")
        if response.status_code in (401, 403) or code in _RUNE_CODES:
            raise LightningError(f"CLN refused the rune ({method}; it needs method=invoice|"
                                 f"listinvoices|waitanyinvoice|getinfo|listfunds|listpeerchannels): "
                                 f"{message}")
        if response.status_code == 500 and isinstance(code, int):
            raise _RpcError(code, f"CLN refused {method} (code {code}): {message}")
        if response.status_code >= 500 or 200 <= response.status_code < 300:
            raise LightningUnavailable(f"CLN answered HTTP {response.status_code} to {method}: {message}")
        raise LightningError(f"CLN refused {method} (HTTP {response.status_code}): {message}")

    # -- the interface ---------------------------------------------------------------------

    def create_invoice(self, amount_msat: int, description: str, expiry_seconds: int,
                       *, label: str) -> LnInvoice:
        if amount_msat <= 0 or expiry_seconds <= 0:
            raise ValueError("amount_msat and expiry_seconds must be positive")
        # `expiry` always: lightningd's default is a week, far beyond the invoice's life.
        try:
            made = self._call("invoice", {"amount_msat": amount_msat, "label": label,
                                          "description": description, "expiry": expiry_seconds})
        except _RpcError as err:
            if err.code != DUPLICATE_LABEL:
                raise
            # A retry after a lost answer: the label's invoice is the one we asked for, if
            # it has the same amount and description and can still be paid.
            same = self._call("listinvoices", {"label": label}).get("invoices") or []
            if not (same and _msat(same[0].get("amount_msat")) == amount_msat
                    and same[0].get("description") == description and same[0].get("status") == "unpaid"):
                raise
            made = same[0]
        return LnInvoice(payment_hash=made["payment_hash"], bolt11=made["bolt11"].lower(),
                         amount_msat=amount_msat, expires_at=_utc(made["expires_at"]))

    def lookup_invoice(self, payment_hash: str) -> LnInvoice | None:
        found = self._call("listinvoices", {"payment_hash": payment_hash.lower()}).get("invoices") or []
        if not found:
            return None
        data = found[0]
        state = _STATES.get(data.get("status"), LnState.OPEN)
        paid = state is LnState.SETTLED
        return LnInvoice(
            payment_hash=data["payment_hash"], bolt11=(data.get("bolt11") or "").lower(),
            amount_msat=_msat(data.get("amount_msat")), expires_at=_utc(data["expires_at"]),
            state=state, amount_paid_msat=_msat(data.get("amount_received_msat")) if paid else 0,
            settled_at=_utc(data["paid_at"]) if paid and data.get("paid_at") else None,
            settle_index=data.get("pay_index") if paid else None)

    def settlements(self, after_index: int, *, timeout: float) -> Iterator[LnSettlement]:
        last = after_index
        quiet_until = time.monotonic() + timeout
        remaining = max(timeout, 0.0)
        while True:  # at least one call: a timeout of 0 still reads what is paid already
            wait = max(1, math.ceil(remaining))  # lightningd takes whole seconds
            try:
                paid = self._call("waitanyinvoice", {"lastpay_index": last, "timeout": wait},
                                  read_timeout=wait + self.timeout)
            except _RpcError as err:
                if err.code == TIMED_OUT:
                    return
                raise
            try:
                index = int(paid.get("pay_index") or 0)
                repeat = paid.get("status") != "paid" or index <= last
                settlement = None if repeat else LnSettlement(
                    payment_hash=paid["payment_hash"],
                    amount_paid_msat=_msat(paid.get("amount_received_msat")),
                    settled_at=_utc(paid["paid_at"]), index=index)
            except (KeyError, TypeError, ValueError) as exc:  # no payment of CLN's looks like it
                raise LightningUnavailable(f"CLN answered waitanyinvoice with a malformed "
                                           f"invoice: {type(exc).__name__}") from None
            if settlement is not None:
                last = index
                yield settlement
                quiet_until = time.monotonic() + timeout
                remaining = max(timeout, 0.0)
                continue  # something came: ask again before calling it quiet
            if (remaining := quiet_until - time.monotonic()) <= 0:
                return

    def node_info(self) -> NodeInfo:
        try:
            info = self._call("getinfo", {})
            channels = self._call("listpeerchannels", {}).get("channels") or []
            local = inbound = 0
            for channel in channels:
                if channel.get("state") != "CHANNELD_NORMAL":
                    continue  # not usable for payments yet (or any more)
                to_us = _msat(channel.get("to_us_msat"))
                local += to_us
                # receivable_msat already leaves out the peer's reserve; older nodes lack it
                inbound += (_msat(channel["receivable_msat"]) if "receivable_msat" in channel
                            else _msat(channel.get("total_msat")) - to_us)
            return NodeInfo(backend=self.name, reachable=True, alias=info.get("alias", ""),
                            node_id=info.get("id", ""), block_height=info.get("blockheight"),
                            local_balance_msat=local, inbound_msat=inbound)
        except (LightningError, KeyError, ValueError, TypeError) as exc:
            return NodeInfo(backend=self.name, reachable=False, error=self._clean(str(exc)),
                            down=isinstance(exc, LightningUnavailable))
