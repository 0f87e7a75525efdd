"""The Lightning side of an invoice: its BOLT11 for what is still due, or why there is none.

What the edges use (checkout page, POS, Greenfield payment methods, the dashboard):

- `LightningOffers.current(invoice_id)` (also `current_lightning(gateway, invoice_id)`):
  the invoice's active offer — a BOLT11 for the sats still due (a new one, superseding the
  old, when a partial payment changed the remainder) or the reason Lightning is not offered
  (`LightningOffer.unavailable`, a code of `REASONS`, with its words in `reason_text`).
  Never a BOLT11 that cannot be paid: none for an invoice no longer New, none past expiry.
- `offers(db, invoice_id)`: every offer the invoice had, oldest first (an old BOLT11 that
  gets paid anyway still counts: the listener finds its invoice by payment hash).

A BOLT11 asks for the sats due × 1000 msat, expires with the invoice (never later:
expiry = floor(invoice expiry − now) seconds) and describes itself with the store's name
and the won price ("Haeundae Coffee ₩5,000"). The node is asked outside any database
transaction of the invoice's creation (creation is a hot path; no lock is held across a
network call), then the offer is stored in one short transaction (`invoice_lightning`).
A node that is unreachable, lacks inbound liquidity for the amount or refuses leaves the
invoice on-chain only, with the reason stored; it is asked again after RETRY_SECONDS when
the checkout asks for the current offer. After a node failure, creation does not wait for
the node again for BREAKER_SECONDS (the POS must not hang on a dead node).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from bolt11 import decode as bolt11_decode
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from database import Database
from lightning.backend import (LightningBackend, LightningError, LightningUnavailable,
                               MSAT_PER_SAT, NodeInfo)
from lightning.models import InvoiceLightning

log = logging.getLogger(__name__)

#: Why an invoice has no BOLT11 (code → words for operators; the edges translate the codes).
REASONS = {
    "unreachable": "the Lightning node could not be reached",
    "no-inbound-liquidity": "the Lightning node cannot receive this amount "
                            "(not enough inbound liquidity)",
    "refused": "the Lightning node refused to create the invoice",
    "btc-direct": "the store is paid in BTC to its own wallet; Lightning pays the city's node",
    "top-up": "a top-up invoice has no amount to ask for over Lightning",
    "expired": "the invoice has expired",
    "not-due": "nothing more is due on this invoice",
}
#: Reasons that a later try cannot change.
PERMANENT = frozenset({"btc-direct", "top-up"})
RETRY_SECONDS = 30
BREAKER_SECONDS = 15
NODE_INFO_SECONDS = 10


@dataclass(frozen=True)
class LightningOffer:
    invoice_id: str
    bolt11: str | None          # lower-case BOLT11, None when Lightning is not offered
    payment_hash: str | None
    amount_msat: int
    expires_at: datetime | None
    unavailable: str | None     # a code of REASONS when there is no BOLT11
    detail: str | None = None   # the node's words, no secrets
    created_at: datetime | None = None
    active: bool = True

    @property
    def available(self) -> bool:
        return self.bolt11 is not None

    @property
    def amount_sats(self) -> int:
        return self.amount_msat // MSAT_PER_SAT

    @property
    def reason_text(self) -> str | None:
        return REASONS.get(self.unavailable or "", self.unavailable)

    @property
    def uri(self) -> str | None:
        """`lightning:<BOLT11>` (the plain Lightning QR and link)."""
        return f"lightning:{self.bolt11}" if self.bolt11 else None

    @classmethod
    def of(cls, row: InvoiceLightning) -> "LightningOffer":
        return cls(row.invoice_id, row.bolt11, row.payment_hash, row.amount_msat, row.expires_at,
                   row.unavailable, row.detail, row.created_at, row.active)


def description(store_name: str, invoice) -> str:
    """The BOLT11's description: the store's name and the won price."""
    if invoice.amount_krw is not None:
        return f"{store_name} ₩{invoice.amount_krw:,}"[:600]
    return f"{store_name} {invoice.amount_text} {invoice.currency}"[:600]


def _checked_expiry(bolt11_text: str, payment_hash: str, amount_msat: int,
                    expiry: int) -> int | None:
    """The BOLT11's expiry in seconds when it decodes to what was asked (amount, payment
    hash, an expiry no longer than asked), else None."""
    try:
        decoded = bolt11_decode(bolt11_text.lower())
    except Exception:  # anything the library cannot read is not shown to a payer
        return None
    if decoded.amount_msat != amount_msat or decoded.payment_hash != payment_hash.lower() \
            or decoded.expiry > expiry:
        return None
    return decoded.expiry


def offers(db: Database, invoice_id: str) -> list[LightningOffer]:
    """Every Lightning offer of the invoice, oldest first."""
    with db.read() as s:
        rows = s.execute(select(InvoiceLightning).where(InvoiceLightning.invoice_id == invoice_id)
                         .order_by(InvoiceLightning.id)).scalars()
        return [LightningOffer.of(r) for r in rows]


def current_lightning(gateway, invoice_id: str) -> LightningOffer | None:
    """The invoice's current offer (see `LightningOffers.current`); None when Lightning is off."""
    desk = getattr(gateway.invoices, "lightning", None)
    return None if desk is None else desk.current(invoice_id)


class LightningOffers:
    """The BOLT11s of one gateway's invoices, made on its node."""

    def __init__(self, db: Database, backend: LightningBackend, clock: Callable[[], datetime]):
        self.db = db
        self.backend = backend
        self.clock = clock
        self._lock = threading.Lock()
        self._info: tuple[float, NodeInfo] | None = None
        self._down_until = 0.0  # monotonic: creation does not wait for a node that just failed

    # -- creation ---------------------------------------------------------------------
    def for_new_invoice(self, invoice) -> LightningOffer:
        """Ask the node for the new invoice's BOLT11 (no transaction open) and store the
        offer, or why there is none. Never raises for the node's sake."""
        from merchants.models import Store

        with self.db.read() as s:
            store = s.execute(select(Store.name, Store.settlement_mode)
                              .where(Store.id == invoice.store_id)).one()
        if store.settlement_mode == "btc":
            offer = self._unavailable(invoice, 0, "btc-direct")
        elif invoice.due_sats <= 0:
            offer = self._unavailable(invoice, 0, "top-up")
        else:
            offer = self._ask(invoice, invoice.due_sats, store.name, wait_for_node=False)
        self._store(offer, replacing=None)
        return offer

    # -- the current offer --------------------------------------------------------------
    def current(self, invoice_id: str) -> LightningOffer:
        """The active offer for what is still due now. A new BOLT11 (superseding the old)
        when the remainder changed after a partial payment or an earlier try failed more
        than RETRY_SECONDS ago; none (reason) once the invoice is no longer New or expired.
        Raises payments.service.InvoiceNotFound for an unknown invoice."""
        from merchants.models import Store
        from payments.models import METHOD_LIGHTNING, Invoice, Payment
        from payments.service import InvoiceNotFound

        now = self.clock()
        with self.db.read() as s:
            invoice = s.get(Invoice, invoice_id) if invoice_id and len(invoice_id) <= 32 else None
            if invoice is None:
                raise InvoiceNotFound(invoice_id)
            store = s.execute(select(Store.name, Store.settlement_mode)
                              .where(Store.id == invoice.store_id)).one()
            active = s.execute(select(InvoiceLightning).where(
                InvoiceLightning.invoice_id == invoice_id,
                InvoiceLightning.active == True)).scalar_one_or_none()  # noqa: E712
            # A BOLT11 is paid once: after a payment (even one worth less than it asked,
            # as a node may report), it is no offer for what is still due.
            spent = active is not None and active.payment_hash is not None and s.execute(
                select(Payment.id).where(Payment.txid == active.payment_hash,
                                         Payment.method == METHOD_LIGHTNING)).first() is not None
        active_offer = LightningOffer.of(active) if active is not None else None
        if store.settlement_mode == "btc":
            return active_offer or self._unavailable(invoice, 0, "btc-direct")
        if invoice.due_sats <= 0:
            return active_offer or self._unavailable(invoice, 0, "top-up")
        remainder = invoice.due_sats - (invoice.paid_sats or 0)
        if invoice.status != "New" or now >= invoice.expires_at:
            reason = "expired" if invoice.status in ("New", "Expired") else "not-due"
            return self._unavailable(invoice, max(remainder, 0), reason, active=False)
        if remainder <= 0:
            return self._unavailable(invoice, 0, "not-due", active=False)
        wanted = remainder * MSAT_PER_SAT
        if active_offer is not None:
            if active_offer.available and active_offer.amount_msat == wanted and not spent \
                    and active_offer.expires_at and now < active_offer.expires_at:
                return active_offer
            if not active_offer.available and (
                    active_offer.unavailable in PERMANENT or
                    now - (active_offer.created_at or now) < timedelta(seconds=RETRY_SECONDS)
                    or time.monotonic() < self._down_until):  # pages do not wait on a dead node
                return active_offer
        offer = self._ask(invoice, remainder, store.name, wait_for_node=True)
        return self._store(offer, replacing=active.id if active is not None else None)

    # -- the node ---------------------------------------------------------------------
    def node_info(self, *, fresh: bool = False) -> NodeInfo:
        """The node's info, cached for NODE_INFO_SECONDS (never raises)."""
        mono = time.monotonic()
        with self._lock:
            cached = self._info
        if cached is not None and not fresh and mono - cached[0] < NODE_INFO_SECONDS:
            return cached[1]
        info = self.backend.node_info()
        with self._lock:
            self._info = (mono, info)
        return info

    def _ask(self, invoice, sats: int, store_name: str, *, wait_for_node: bool) -> LightningOffer:
        if int((invoice.expires_at - self.clock()).total_seconds()) <= 0:
            return self._unavailable(invoice, sats, "expired")
        amount_msat = sats * MSAT_PER_SAT
        if not wait_for_node and time.monotonic() < self._down_until:
            return self._unavailable(invoice, sats, "unreachable",
                                     "not asked: the node failed moments ago")
        info = self.node_info()
        if info.down:  # a node that did not answer its info will not answer this either
            self._down_until = time.monotonic() + BREAKER_SECONDS
            return self._unavailable(invoice, sats, "unreachable", (info.error or "")[:300] or None)
        # Measured after the info call: the time that call took must not make the BOLT11
        # outlive the invoice.
        now = self.clock()
        expiry = int((invoice.expires_at - now).total_seconds())  # floor: never later
        if expiry <= 0:
            return self._unavailable(invoice, sats, "expired")
        if info.reachable and info.inbound_msat < amount_msat:
            return self._unavailable(invoice, sats, "no-inbound-liquidity",
                                     f"can receive {info.inbound_msat // MSAT_PER_SAT} sats, "
                                     f"asked for {sats}")
        label = f"busanpay-{invoice.id}-{secrets.token_hex(4)}"
        try:
            made = self.backend.create_invoice(amount_msat, description(store_name, invoice),
                                               expiry, label=label)
        except LightningUnavailable as err:
            self._down_until = time.monotonic() + BREAKER_SECONDS
            log.warning("Lightning node unreachable for invoice %s: %s", invoice.id,
                        type(err).__name__)
            return self._unavailable(invoice, sats, "unreachable", str(err)[:300])
        except LightningError as err:
            log.warning("Lightning node refused an invoice for %s: %s", invoice.id, err)
            return self._unavailable(invoice, sats, "refused", str(err)[:300])
        self._down_until = 0.0
        checked = _checked_expiry(made.bolt11, made.payment_hash, amount_msat, expiry)
        if checked is None:  # this BOLT11 must not be shown
            return self._unavailable(invoice, sats, "refused", "the node's BOLT11 differs in "
                                     "amount, payment hash or expiry from what was asked")
        # Its expiry on the gateway's clock (the node's clock may differ; the BOLT11's own
        # seconds are what the node enforces): never after the invoice's.
        expires_at = min(now + timedelta(seconds=checked), invoice.expires_at)
        return LightningOffer(invoice.id, made.bolt11.lower(), made.payment_hash.lower(),
                              amount_msat, expires_at, None, None, now)

    def _unavailable(self, invoice, sats: int, reason: str, detail: str | None = None, *,
                     active: bool = True) -> LightningOffer:
        return LightningOffer(invoice.id, None, None, sats * MSAT_PER_SAT, None, reason,
                              detail or REASONS[reason], self.clock(), active)

    def _store(self, offer: LightningOffer, *, replacing: int | None) -> LightningOffer:
        """The offer becomes the invoice's active one (superseding `replacing`). When another
        process superseded it first, its offer wins and ours is dropped (an unused BOLT11 on
        the node expires with the invoice)."""
        try:
            if self._insert(offer, replacing):
                return offer
        except IntegrityError:  # a parallel first offer took the one active place
            pass
        with self.db.read() as s:
            row = s.execute(select(InvoiceLightning).where(
                InvoiceLightning.invoice_id == offer.invoice_id,
                InvoiceLightning.active == True)).scalar_one_or_none()  # noqa: E712
        return LightningOffer.of(row) if row is not None else offer

    def _insert(self, offer: LightningOffer, replacing: int | None) -> bool:
        """One transaction: supersede `replacing`, insert `offer` as active. False when
        another process superseded it (or made the first offer) first."""
        with self.db.write() as s:
            if replacing is not None:
                lost = s.execute(update(InvoiceLightning).where(
                    InvoiceLightning.id == replacing, InvoiceLightning.active == True)  # noqa: E712
                    .values(active=False).returning(InvoiceLightning.id)).first() is None
            else:
                lost = s.execute(select(InvoiceLightning.id).where(
                    InvoiceLightning.invoice_id == offer.invoice_id,
                    InvoiceLightning.active == True)).first() is not None  # noqa: E712
            if lost:
                return False
            s.add(InvoiceLightning(invoice_id=offer.invoice_id, payment_hash=offer.payment_hash,
                                   bolt11=offer.bolt11, amount_msat=offer.amount_msat,
                                   expires_at=offer.expires_at,
                                   created_at=offer.created_at or self.clock(), active=True,
                                   unavailable=offer.unavailable, detail=offer.detail))
            return True
