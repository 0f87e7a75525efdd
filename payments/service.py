"""Invoice operations: each public method is one database transaction.

Routes and CLI commands call these; the domain rules they apply live in pure modules
(quoting, invoice_status, addresses) so they are tested without a database.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Callable

from sqlalchemy import bindparam, func, insert, or_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from database import Database, insert_ignore, utc_now
from merchants.models import Store
from merchants.service import STORE_TERMS_COLUMNS, StoreTerms, random_id
from payments.address_pool import AddressPool, PoolEmpty, PoolExhausted, insert_created_invoice
from payments.addresses import ExtendedKey
from payments.invoice_json import outbox_row
from payments.invoice_request import (InvalidRequest, InvoiceRequest, tolerance_errors,
                                      won_value_errors)
from payments.invoice_status import confirmations_required
from payments.models import (METHOD_CHAIN, ExtendedKeyRecord, IdempotencyRecord, Invoice, InvoiceEvent,
                             InvoiceQr, Payment)
from payments.qr_codes import render_png, render_svg
from payments.unified import request_uri
from payments.quoting import krw_value, sats_due
from operations.metrics import INVOICES_CREATED, RATE_REFUSALS, count_transition
from payments.rates import LockedRate, RateUnavailable
from payments.zero_conf import committed_krw

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)


class InvoiceNotFound(LookupError):
    pass


class StoreNotFound(LookupError):
    pass


class StoreSuspended(PermissionError):
    """The city suspended or closed the store: no new invoices (open ones are still watched)."""

    def __init__(self, store_id: str, standing: str):
        super().__init__(f"store {store_id} is {standing}")
        self.store_id, self.standing = store_id, standing


class IdempotencyConflict(Exception):
    """The same Idempotency-Key came with a different request body."""


class StatusChangeRefused(ValueError):
    pass


class KeyRing:
    """Parsed extended keys by record id; parsing and the change-level node are cached."""

    def __init__(self):
        self._keys: dict[int, ExtendedKey] = {}
        self._lock = threading.Lock()

    def get(self, session: Session | Connection, key_id: int) -> ExtendedKey:
        key = self._keys.get(key_id)
        if key is None:
            record = session.execute(
                select(ExtendedKeyRecord.key_text, ExtendedKeyRecord.network)
                .where(ExtendedKeyRecord.id == key_id)).one()
            key = ExtendedKey.parse(record.key_text, record.network)
            with self._lock:
                self._keys[key_id] = key
        return key


def register_key(session: Session, key_text: str, network: str, owner: str) -> ExtendedKeyRecord:
    """The record for an account key, created on first use (safe under concurrency)."""
    key = ExtendedKey.parse(key_text, network)
    insert_ignore(session, ExtendedKeyRecord.__table__, {
        "fingerprint": key.fingerprint, "key_text": key.text, "network": network,
        "script_type": key.script_type, "owner": owner, "next_index": 0,
        "created_at": utc_now()}, conflict=["fingerprint"])
    return session.exec(select(ExtendedKeyRecord).where(
        ExtendedKeyRecord.fingerprint == key.fingerprint)).one()


def allocate_index(session: Session | Connection, key_id: int) -> int:
    """Next unused receive index, atomically: the row update serialises concurrent callers,
    and a rolled-back invoice gives its index back, so used indexes stay consecutive."""
    return session.execute(_NEXT_INDEX, {"key_id": key_id}).scalar_one() - 1


def request_fingerprint(raw_body: bytes) -> str:
    return hashlib.sha256(raw_body).hexdigest()


def record_event(session: Session, invoice: Invoice, event_type: str, moment: datetime,
                 dedupe: str | None = None, **extra) -> bool:
    """Add an outbox event once; True when it was new."""
    return insert_ignore(session, InvoiceEvent.__table__,
                         outbox_row(invoice, event_type, moment, dedupe, **extra),
                         conflict=["dedupe_key"])


_STORE_TERMS = select(*STORE_TERMS_COLUMNS).where(Store.id == bindparam("store_id"))
_NEXT_INDEX = update(ExtendedKeyRecord).where(ExtendedKeyRecord.id == bindparam("key_id")) \
    .values(next_index=ExtendedKeyRecord.next_index + 1).returning(ExtendedKeyRecord.next_index)


@dataclass(frozen=True)
class InvoiceFilter:
    statuses: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    skip: int = 0
    take: int = 50
    include_archived: bool = False
    text: str | None = None  # Greenfield's textSearch


def text_search(query, text: str):
    """Invoices that the term names exactly (id, order id, address, a payment's txid) or
    that carry it in their metadata (buyer email, order number, item…), any case."""
    term = text.strip()
    paid_by = select(Payment.invoice_id).where(Payment.txid == term.lower())
    return query.where(or_(Invoice.id == term, Invoice.order_id == term,
                           Invoice.address == term, Invoice.id.in_(paid_by),
                           func.lower(Invoice.metadata_json).contains(term.lower(),
                                                                      autoescape=True)))


class InvoiceService:
    def __init__(self, db: Database, *, settings, rates, clock: Clock, keys: KeyRing | None = None,
                 zero_conf_cap: Callable[[Session], int] | None = None, lightning=None):
        self.db = db
        # lightning.invoices.LightningOffers when Lightning is on: each new invoice also
        # gets a BOLT11, asked for after the invoice is written (no lock held meanwhile).
        self.lightning = lightning
        self.zero_conf_cap = zero_conf_cap  # the city's cap on open 0-conf exposure (won)
        self.settings = settings
        self.rates = rates
        self.clock = clock
        self.keys = keys or KeyRing()
        self.address_pool = AddressPool(db, self.keys)
        self._treasury_key_id: int | None = None

    # -- keys -------------------------------------------------------------------------
    def ensure_treasury_key(self) -> int:
        """The treasury key's record id, registered in its own committed transaction, so
        parallel creators never see an id whose row is not yet visible to them."""
        if self._treasury_key_id is None:
            with self.db.write() as session:
                record = register_key(session, self.settings.treasury_xpub,
                                      self.settings.network, "treasury")
            self._treasury_key_id = record.id
        return self._treasury_key_id

    # -- create -----------------------------------------------------------------------
    def create(self, store: str | StoreTerms, request: InvoiceRequest, *,
               idempotency_key: str | None = None, request_hash: str | None = None,
               render: Callable[[Invoice], dict] | None = None) -> tuple[Invoice, dict | None]:
        """Create an invoice. With an idempotency key, a repeat returns the first answer.

        `store` is the store's id, or its terms when the caller has read them already
        (the API reads them with the API key, saving a query).
        Returns (invoice, replayed_response). replayed_response is the stored first
        response when this call was a repeat, else None.
        """
        store_id = store if isinstance(store, str) else store.id
        if idempotency_key:
            replay = self._replay(store_id, idempotency_key, request_hash)
            if replay is not None:
                return replay
        errors = tolerance_errors(request.checkout.payment_tolerance,
                                  self.settings.max_payment_tolerance)
        if errors:
            raise InvalidRequest(errors)
        try:
            rate: LockedRate = self.rates.current()  # raises RateUnavailable: never quote blind
        except RateUnavailable:
            RATE_REFUSALS.inc()
            raise
        treasury_key_id = self.ensure_treasury_key()
        if isinstance(store, str):
            with self.db.one_shot() as connection:
                store = connection.execute(_STORE_TERMS, {"store_id": store_id}).first()
        if store is None or store.archived:
            raise StoreNotFound(store_id)
        if store.standing != "active":
            raise StoreSuspended(store_id, store.standing)
        # Everything is ready before the key's cursor row is locked: that lock serialises
        # every invoice on the key, so it is held as briefly as the database allows.
        invoice = self._new_invoice(store, request, rate, treasury_key_id)
        errors = won_value_errors(invoice.amount_krw, self.settings.max_invoice_krw)
        if errors:
            raise InvalidRequest(errors)
        self._hold_to_zero_conf_cap(invoice)
        event = outbox_row(invoice, "InvoiceCreated", invoice.created_at)
        low = False  # the address pool runs low
        try:
            # Core, not the ORM: this is the hottest write path, and it inserts known rows.
            if not idempotency_key and not self.db.is_sqlite:
                with self.db.one_shot() as connection:  # one autocommitted statement
                    low = self.address_pool.create_invoice(connection, invoice, event)
                INVOICES_CREATED.inc()
                self._offer_lightning(invoice)
                return invoice, None
            for _attempt in range(3):
                try:
                    low = self._create_in_transaction(invoice, event, idempotency_key,
                                                      request_hash, render)
                    break
                except PoolEmpty:  # rolled back: no lock of ours on the key's row now
                    self.address_pool.refill(invoice.key_id, wait=True)
            else:
                raise PoolExhausted(f"no receive address for key {invoice.key_id}")
            INVOICES_CREATED.inc()
            self._offer_lightning(invoice)
            return invoice, None
        except IntegrityError:
            if not idempotency_key:
                raise
            # A parallel request with the same key won the race: answer as it did.
            replay = self._replay(store_id, idempotency_key, request_hash)
            if replay is None:
                raise
            return replay
        finally:
            if low:  # derive ahead now that no transaction of ours holds the key's row
                self.address_pool.refill_soon(invoice.key_id)

    def _offer_lightning(self, invoice: Invoice) -> None:
        """The invoice's BOLT11, after it is committed: a node failure leaves it on-chain only
        (with the reason stored), never fails the invoice."""
        if self.lightning is None:
            return
        try:
            self.lightning.for_new_invoice(invoice)
        except Exception:  # the invoice stands; the checkout asks for its offer again later
            log.exception("could not offer Lightning for invoice %s", invoice.id)

    def _hold_to_zero_conf_cap(self, invoice: Invoice) -> None:
        """Past the city's open 0-conf exposure cap, the invoice waits for a confirmation."""
        if self.zero_conf_cap is None or confirmations_required(
                invoice.speed_policy, invoice.amount_krw, invoice.zero_conf_limit_krw) != 0:
            return
        with self.db.read() as session:
            if committed_krw(session, invoice.created_at) + invoice.amount_krw > \
                    self.zero_conf_cap(session):
                invoice.zero_conf_limit_krw = 0

    def _create_in_transaction(self, invoice: Invoice, event: dict, idempotency_key: str | None,
                               request_hash: str | None, render) -> bool:
        """The invoice, its event and the idempotency record in one transaction; True when
        the address pool runs low."""
        low = False
        with self.db.transaction() as connection:
            if self.db.is_sqlite:  # one writer at a time anyway: derive in the transaction
                invoice.key_index = allocate_index(connection, invoice.key_id)
                invoice.address = self.keys.get(connection, invoice.key_id).address(
                    invoice.key_index)
                insert_created_invoice(connection, invoice, event)
            else:
                low = self.address_pool.create_invoice(connection, invoice, event,
                                                       autocommit=False)
            if idempotency_key:
                connection.execute(insert(IdempotencyRecord.__table__), {
                    "store_id": invoice.store_id, "key": idempotency_key,
                    "request_hash": request_hash or "", "status_code": 200,
                    "response_json": json.dumps(render(invoice) if render else {"id": invoice.id}),
                    "created_at": self.clock()})
        return low

    def _replay(self, store_id: str, key: str, request_hash: str | None):
        with self.db.read() as session:
            record = session.get(IdempotencyRecord, (store_id, key))
            if record is None:
                return None
            if record.request_hash != (request_hash or ""):
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request body")
            body = json.loads(record.response_json)
            invoice = session.get(Invoice, body.get("id"))
            return invoice, body

    def _new_invoice(self, store, request: InvoiceRequest, rate: LockedRate,
                     treasury_key_id: int) -> Invoice:
        """The invoice as quoted for this store, still without its address."""
        now = self.clock()
        checkout = request.checkout
        price = request.price
        if price is None:  # top-up: any amount is welcome, priced in the asked currency
            currency, amount_text, amount_krw, due = request.currency, "0", None, 0
        elif price.amount_krw is not None:
            currency, amount_text = price.currency, price.amount_text
            amount_krw, due = price.amount_krw, sats_due(price.amount_krw, rate.krw_per_btc)
        else:
            currency, amount_text, due = price.currency, price.amount_text, price.amount_sats
            # Won value of a BTC-priced invoice at the locked rate, rounded down (what
            # the merchant can count on).
            amount_krw = int(krw_value(due, rate.krw_per_btc).to_integral_value(ROUND_FLOOR))
        key_id = store.key_id if store.settlement_mode == "btc" and store.key_id else \
            treasury_key_id
        expiration = checkout.expiration_minutes or self.settings.expiration_minutes
        monitoring = checkout.monitoring_minutes or self.settings.monitoring_minutes
        expires_at = now + timedelta(minutes=expiration)
        speed = checkout.speed_policy or store.speed_policy
        # A store default set above the city's cap (before the cap existed) is capped.
        tolerance = checkout.payment_tolerance if checkout.payment_tolerance is not None \
            else min(store.payment_tolerance, self.settings.max_payment_tolerance)
        language = checkout.default_language or store.default_language
        checkout_json = {
            "speedPolicy": speed, "paymentMethods": ["BTC"], "defaultPaymentMethod": "BTC",
            "expirationMinutes": expiration, "monitoringMinutes": monitoring,
            "paymentTolerance": tolerance_number(tolerance), "redirectURL": checkout.redirect_url,
            "redirectAutomatically": checkout.redirect_automatically,
            "defaultLanguage": language,
        }
        return Invoice(
            id=random_id(22), store_id=store.id, currency=currency, amount_text=amount_text,
            amount_krw=amount_krw, due_sats=due, rate=rate.krw_per_btc, rate_raw=rate.raw_krw_per_btc,
            rate_source=rate.source, rate_fetched_at=rate.fetched_at, key_id=key_id,
            key_index=-1, address="", status="New", additional_status="None",
            speed_policy=speed, payment_tolerance=tolerance,
            zero_conf_limit_krw=min(store.zero_conf_limit_krw, self.settings.zero_conf_limit_krw),
            created_at=now, updated_at=now, expires_at=expires_at,
            monitoring_expires_at=expires_at + timedelta(minutes=monitoring),
            order_id=request.order_id, metadata_json=json.dumps(request.metadata),
            checkout_json=json.dumps(checkout_json))

    # -- read -------------------------------------------------------------------------
    def get(self, invoice_id: str, store_id: str | None = None) -> Invoice:
        with self.db.read() as session:
            return self._get(session, invoice_id, store_id)

    @staticmethod
    def _get(session: Session, invoice_id: str, store_id: str | None) -> Invoice:
        invoice = session.get(Invoice, invoice_id) if invoice_id and len(invoice_id) <= 32 else None
        if invoice is None or (store_id is not None and invoice.store_id != store_id):
            raise InvoiceNotFound(invoice_id)
        return invoice

    def get_with_payments(self, invoice_id: str, store_id: str | None = None):
        with self.db.read() as session:
            invoice = self._get(session, invoice_id, store_id)
            payments = list(session.exec(select(Payment).where(Payment.invoice_id == invoice_id)
                                         .order_by(Payment.seen_at, Payment.id)))
            store = session.get(Store, invoice.store_id)
            return invoice, payments, store

    def list(self, store_id: str, flt: InvoiceFilter) -> list[Invoice]:
        with self.db.read() as session:
            query = select(Invoice).where(Invoice.store_id == store_id)
            if flt.statuses:
                query = query.where(Invoice.status.in_(flt.statuses))
            if flt.order_ids:
                query = query.where(Invoice.order_id.in_(flt.order_ids))
            if flt.start:
                query = query.where(Invoice.created_at >= flt.start)
            if flt.end:
                query = query.where(Invoice.created_at <= flt.end)
            if not flt.include_archived:
                query = query.where(Invoice.archived == False)  # noqa: E712
            if flt.text and flt.text.strip():
                query = text_search(query, flt.text)
            query = query.order_by(Invoice.created_at.desc(), Invoice.id).offset(flt.skip).limit(flt.take)
            return list(session.exec(query))

    def payments_of(self, invoice_ids: list[str]) -> dict[str, list[Payment]]:
        """Each invoice's payments (one query), oldest first."""
        found: dict[str, list[Payment]] = {i: [] for i in invoice_ids}
        if not invoice_ids:
            return found
        with self.db.read() as session:
            for payment in session.exec(select(Payment).where(Payment.invoice_id.in_(invoice_ids))
                                        .order_by(Payment.seen_at, Payment.id)):
                found[payment.invoice_id].append(payment)
        return found

    def store_name(self, store_id: str) -> str:
        with self.db.read() as session:
            store = session.get(Store, store_id)
            return store.name if store else ""

    # -- change -----------------------------------------------------------------------
    def mark_status(self, store_id: str, invoice_id: str, status: str) -> Invoice:
        """A merchant's Greenfield mark (Settled/Invalid): the status its shop sees and a
        webhook event. The ledger credits what the chain facts say, never the mark."""
        from payments.invoice_json import available_marks

        with self.db.write() as session:
            invoice = self._get(session, invoice_id, store_id)
            # Lock the row as the watcher does, so the chain status copied below is the
            # latest decision, not one the watcher is replacing right now.
            session.refresh(invoice, with_for_update=True)
            if status not in available_marks(invoice):
                raise StatusChangeRefused(
                    f"an invoice that is {invoice.status} cannot be marked {status}")
            now = self.clock()
            count_transition(invoice, status)
            if invoice.additional_status != "Marked":
                # The mark changes what the shop sees, never the money: the money keeps
                # following the chain's status, which the watcher goes on deciding.
                invoice.chain_status = invoice.status
            invoice.status, invoice.additional_status = status, "Marked"
            invoice.updated_at, invoice.version = now, invoice.version + 1
            session.add(invoice)
            session.flush()
            event = "InvoiceSettled" if status == "Settled" else "InvoiceInvalid"
            record_event(session, invoice, event, now, dedupe=f"{event}:marked:{invoice.version}",
                         manuallyMarked=True)
            return invoice

    def set_archived(self, store_id: str, invoice_id: str, archived: bool) -> Invoice:
        with self.db.write() as session:
            invoice = self._get(session, invoice_id, store_id)
            invoice.archived = archived
            session.add(invoice)
            return invoice

    def update_metadata(self, store_id: str, invoice_id: str, metadata: dict) -> Invoice:
        with self.db.write() as session:
            invoice = self._get(session, invoice_id, store_id)
            invoice.metadata_json = json.dumps(metadata)
            order_id = metadata.get("orderId")
            invoice.order_id = None if order_id is None else str(order_id)[:200]
            invoice.version += 1
            session.add(invoice)
            return invoice

    # -- QR ---------------------------------------------------------------------------
    def qr(self, invoice_id: str, offer=None) -> InvoiceQr:
        """The invoice's QR for its full amount, rendered on first request and kept (never per
        poll). With Lightning it carries the active BOLT11 when that asks for the full amount
        (nothing paid yet): the kept image follows it, re-rendered when the BOLT11 changed
        (a retry after the node was down), dropped from it once the BOLT11 no longer applies.
        `offer` is the invoice's current Lightning offer when the caller has it."""
        with self.db.read() as session:
            cached = session.get(InvoiceQr, invoice_id)
            if cached is not None and self.lightning is None:
                return cached  # on-chain only: the payload never changes
            invoice = self._get(session, invoice_id, None)
            store = session.get(Store, invoice.store_id)
        if offer is None and self.lightning is not None:
            offer = self.lightning.current(invoice_id)
        payload = request_uri(invoice.address, invoice.due_sats, store.name, offer, for_qr=True)
        if cached is not None and cached.payload == payload:
            return cached
        qr = InvoiceQr(invoice_id=invoice_id, payload=payload, svg=render_svg(payload),
                       png=render_png(payload))
        row = {"invoice_id": qr.invoice_id, "payload": qr.payload, "svg": qr.svg, "png": qr.png}
        with self.db.write() as session:
            if cached is None:
                insert_ignore(session, InvoiceQr.__table__, row, conflict=["invoice_id"])
            else:
                session.execute(update(InvoiceQr).where(InvoiceQr.invoice_id == invoice_id)
                                .values(payload=payload, svg=qr.svg, png=qr.png))
        return qr

    # -- reporting --------------------------------------------------------------------
    def key_usage(self) -> list[dict]:
        """Per account key: highest index used and the gap limit a wallet needs to recover.

        Unpaid invoices leave gaps, so the needed gap limit is the longest run of unpaid
        indexes (plus one) — a wallet scanning with it finds every paid address.
        """
        with self.db.read() as session:
            rows = []
            for record in session.exec(select(ExtendedKeyRecord).order_by(ExtendedKeyRecord.id)):
                paid = sorted(set(session.exec(
                    select(Invoice.key_index).join(Payment, Payment.invoice_id == Invoice.id)
                    .where(Invoice.key_id == record.id, Payment.method == METHOD_CHAIN))))
                highest_used = record.next_index - 1
                longest_gap, previous = 0, -1
                for index in paid:
                    longest_gap = max(longest_gap, index - previous - 1)
                    previous = index
                rows.append({
                    "fingerprint": record.fingerprint, "owner": record.owner,
                    "network": record.network, "scriptType": record.script_type,
                    "key": record.key_text, "highestIndexUsed": highest_used,
                    "highestIndexPaid": paid[-1] if paid else None,
                    "addressesIssued": record.next_index,
                    "gapLimitNeeded": max(20, longest_gap + 1),
                    "gapLimitToSeeAllIssued": max(20, highest_used + 1),
                })
            return rows


def tolerance_number(value: Decimal) -> int | float:
    """Greenfield sends paymentTolerance as a JSON number. It is a percentage (0–100,
    validated), not an amount of money, so a binary float is acceptable here."""
    return int(value) if value == value.to_integral_value() else float(value)
