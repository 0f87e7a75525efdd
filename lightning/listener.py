"""The Lightning listener: follows the node's settlements and feeds the same decision.

`Listener.run_once(timeout)` reads `backend.settlements(after_index=<stored index>)` for up
to `timeout` seconds, handling each settlement as it arrives (the stream, not a slow poll:
the POS sees Paid within a second of the node settling). Each settlement, in ONE
transaction:

1. find the invoice by payment hash in `invoice_lightning` (any of its BOLT11s, the
   superseded ones too: money that arrives twice is PaidOver and owed back); a hash the
   gateway never issued only moves the index;
2. lock the invoice row, insert the payment (`payment`, method BTC-LN, txid = payment
   hash, vout 0, value = floor(msat / 1000): msat fractions are never credited), unique on
   (txid, vout), so a settlement notified twice, or handled by two listeners at once,
   counts once;
3. when new: `InvoiceReceivedPayment` and `InvoicePaymentSettled` outbox events naming
   `paymentMethodId: "BTC-LN"`, then the watcher's own re-decision of the invoice
   (`chain.watcher.redecide_now`: a Lightning payment is final, `PaymentFact.final`);
4. the stored index moves forward (never back: `last_index = max(last_index, index)`).

So a restart or an outage resumes from the stored index, and what the node settled while
nobody listened comes first in the stream. When the node cannot be reached the failure is
stored (`lightning_listener_state`, read by `health`) and the next try waits 1, 2, 4 … 60 s.

Dating: the payment is dated by the node's settle time, clamped to the BOLT11's expiry and
the invoice's creation: the node accepted it, so it was paid before its BOLT11 expired
(≤ the invoice's expiry) whatever the two hosts' clocks say.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import or_, select, update

from database import insert_ignore
from lightning.backend import LightningBackend, LightningError, LnSettlement, MSAT_PER_SAT
from lightning.models import STATE_ID, InvoiceLightning, LightningListenerState
from operations.metrics import PAYMENTS_RECEIVED, count_after_commit
from payments.bip21 import format_btc
from payments.invoice_json import outbox_row, unix
from payments.models import LIGHTNING_ADDRESS, METHOD_LIGHTNING, Invoice, InvoiceEvent, Payment

log = logging.getLogger(__name__)

EVENT_RECEIVED = "InvoiceReceivedPayment"
EVENT_PAYMENT_SETTLED = "InvoicePaymentSettled"
MAX_BACKOFF = 60.0
#: Seconds one `run_once` follows the stream before it returns (to store health, stop).
STREAM_SECONDS = 2.0


def payment_json(payment_hash: str, value_sats: int, settled_at: datetime) -> dict:
    """A Greenfield payment of method BTC-LN (its id is the payment hash)."""
    return {"id": payment_hash, "receivedDate": unix(settled_at), "value": format_btc(value_sats),
            "fee": "0", "status": "Settled", "destination": LIGHTNING_ADDRESS}


class Listener:
    def __init__(self, gateway, backend: LightningBackend, *, sleep=time.sleep):
        self.gateway = gateway
        self.db = gateway.db
        self.backend = backend
        self.clock = gateway.clock
        self.sleep = sleep
        self._failures = 0
        self._retry_at = 0.0  # monotonic
        self._state_ready = False

    # -- one run ------------------------------------------------------------------------
    def run_once(self, timeout: float = STREAM_SECONDS) -> dict:
        """Follow the stream for up to `timeout` seconds. Returns a summary."""
        summary = {"ok": False, "settlements": 0, "recorded": 0, "skipped": None,
                   "error": None, "index": None}
        wait = self._retry_at - time.monotonic()
        if wait > 0:  # backing off after a failure: sleep a little, then let the loop call again
            self.sleep(min(wait, 0.5))
            summary["skipped"] = "backoff"
            return summary
        self._ensure_state()
        started = self.clock()  # what the node settled before this is in the stream's replay
        index = self.stored_index()
        try:
            for settlement in self.backend.settlements(index, timeout=timeout):
                recorded = self.handle(settlement)
                summary["settlements"] += 1
                summary["recorded"] += int(recorded)
                index = max(index, settlement.index)
        except LightningError as err:
            self._failed(err)
            summary["error"] = f"{type(err).__name__}: {err}"[:300]
            summary["index"] = self.stored_index()
            return summary
        self._succeeded(started)
        summary["ok"] = True
        summary["index"] = self.stored_index()
        return summary

    # -- one settlement ---------------------------------------------------------------
    def handle(self, settlement: LnSettlement) -> bool:
        """Record one settlement (one transaction). True when its payment was new."""
        now = self.clock()
        payment_hash = settlement.payment_hash.lower()
        with self.db.write() as s:
            offer = s.execute(select(InvoiceLightning.invoice_id, InvoiceLightning.expires_at)
                              .where(InvoiceLightning.payment_hash == payment_hash)).first()
            new = False
            if offer is not None:
                new = self._record(s, offer.invoice_id, offer.expires_at, payment_hash,
                                   settlement, now)
            else:
                log.warning("Lightning settlement %s is no invoice of ours (index %s)",
                            payment_hash, settlement.index)
            self._advance(s, settlement.index, now, counted=new)
        return new

    def _record(self, s, invoice_id: str, bolt11_expiry: datetime | None, payment_hash: str,
                settlement: LnSettlement, now: datetime) -> bool:
        from chain.watcher import redecide_now

        # The invoice row first: the watcher and other listeners wait here, not deadlock.
        invoice = s.execute(select(Invoice).where(Invoice.id == invoice_id)
                            .with_for_update()).scalar_one()
        value_sats = settlement.amount_paid_msat // MSAT_PER_SAT  # msat fractions: never
        seen_at = settlement.settled_at
        if bolt11_expiry is not None:
            seen_at = min(seen_at, bolt11_expiry)
        seen_at = min(max(seen_at, invoice.created_at), max(now, invoice.created_at))
        inserted = insert_ignore(s, Payment.__table__, {
            "invoice_id": invoice_id, "txid": payment_hash, "vout": 0,
            "address": LIGHTNING_ADDRESS, "value_sats": value_sats, "state": "seen",
            "block_height": None, "block_hash": None, "seen_at": seen_at,
            "late": seen_at > invoice.expires_at, "method": METHOD_LIGHTNING},
            conflict=["txid", "vout"])
        if not inserted:
            return False  # notified twice, or another listener got it first
        count_after_commit(s, PAYMENTS_RECEIVED, method=METHOD_LIGHTNING)
        payment = payment_json(payment_hash, value_sats, seen_at)
        late = seen_at > invoice.expires_at
        for event, status in ((EVENT_RECEIVED, "Settled"), (EVENT_PAYMENT_SETTLED, "Settled")):
            dedupe = f"paid:{payment_hash}:0" if event == EVENT_RECEIVED \
                else f"settled:{payment_hash}:0"
            insert_ignore(s, InvoiceEvent.__table__, outbox_row(
                invoice, event, now, dedupe, afterExpiration=late,
                paymentMethodId=METHOD_LIGHTNING, payment={**payment, "status": status}),
                conflict=["dedupe_key"])
        redecide_now(self.gateway, s, [invoice_id], now, received=[invoice_id])
        log.info("Lightning payment %s: %d sats for invoice %s", payment_hash, value_sats,
                 invoice_id)
        return True

    # -- state --------------------------------------------------------------------------
    def _ensure_state(self) -> None:
        if self._state_ready:
            return
        with self.db.write() as s:
            insert_ignore(s, LightningListenerState.__table__, {
                "id": STATE_ID, "backend": getattr(self.backend, "name", "?")[:16],
                "last_index": 0, "settlements": 0, "failures": 0,
                "updated_at": self.clock()}, conflict=["id"])
        self._state_ready = True

    def stored_index(self) -> int:
        with self.db.read() as s:
            row = s.get(LightningListenerState, STATE_ID)
        return row.last_index if row is not None else 0

    @staticmethod
    def _advance(s, index: int, now: datetime, *, counted: bool) -> None:
        """Move the stored index forward (idempotent; never back), in the settlement's txn."""
        T = LightningListenerState
        # not last_success_at: a settlement in the middle of a replay covers no time
        values = {"updated_at": now, "failures": 0}
        if counted:
            values.update(settlements=T.settlements + 1, last_settlement_at=now)
        s.execute(update(T).where(T.id == STATE_ID, T.last_index < index)
                  .values(last_index=index, **values))

    def _failed(self, err: BaseException) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        now = self.clock()
        try:
            with self.db.write() as s:
                s.execute(update(LightningListenerState).where(
                    LightningListenerState.id == STATE_ID).values(
                    failures=LightningListenerState.failures + 1,
                    last_error=f"{type(err).__name__}: {err}"[:2000], last_error_at=now,
                    updated_at=now))
        except Exception:  # the database is down too: nothing to keep
            log.exception("could not record the Lightning listener's failure")
        log.warning("Lightning node failed (%s); retrying in %.0f s", type(err).__name__, delay)

    def _succeeded(self, started: datetime) -> None:
        """A run followed the stream to its end: every settlement the node made before
        `started` is recorded (`last_success_at`, the time the watcher may expire invoices
        with a BOLT11 up to; it never moves back, whichever listener wrote it)."""
        if self._failures:
            log.warning("Lightning node answers again after %d failure(s)", self._failures)
        self._failures, self._retry_at = 0, 0.0
        now = self.clock()
        T = LightningListenerState
        with self.db.write() as s:
            s.execute(update(T).where(T.id == STATE_ID).values(
                failures=0, updated_at=now, backend=getattr(self.backend, "name", "?")[:16]))
            s.execute(update(T).where(T.id == STATE_ID, or_(T.last_success_at.is_(None),
                                                             T.last_success_at < started))
                      .values(last_success_at=started))


def health(gateway) -> dict:
    """The listener's health from its state row (any process), with the node's info."""
    if gateway.lightning is None:
        return {"status": "off"}
    with gateway.db.read() as s:
        st = s.get(LightningListenerState, STATE_ID)
    stamp = lambda moment: unix(moment) if moment else None  # noqa: E731
    if st is None:
        return {"status": "starting", "backend": gateway.lightning.name}
    return {"status": "down" if st.failures else ("ok" if st.last_success_at else "starting"),
            "backend": st.backend, "lastIndex": st.last_index, "settlements": st.settlements,
            "failures": st.failures, "lastError": st.last_error,
            "lastErrorTime": stamp(st.last_error_at), "lastSuccess": stamp(st.last_success_at),
            "lastSettlement": stamp(st.last_settlement_at)}
