"""Refunds a shop opens through Greenfield (pull payments), mapped onto refund claims.

No Flask here. A Greenfield pull payment is one refund claim plus the shop's own words
(name, description, the amount and currency it asked for). The payer opens the claim page
(`viewLink`, `/refund/<claim_id>#key=…`: the key is in the answer that creates the pull payment
and nowhere else), gives an address; the treasury approves and sends as for every claim.

Money: a merchant-funded refund moves value the merchant was credited back to the payer.
At opening, one entry (kind `merchant_refund`) debits the merchant's payable the won the
refund is worth and makes the sats owed to the payer, through the conversion accounts:

    merchant_payable:<store>  +won     conversion:krw  −won
    conversion:btc            +sats    refunds_owed:btc −sats

The sats are paid from bitcoin not yet converted; the existing `refund_sent` entry later
moves refunds owed → treasury BTC. `OverpaidAmount` refunds only what the ledger already
owes the payer (an ordinary claim, no merchant debit).

Rates: a won amount becomes sats at a rate rounded down (never more than the merchant paid
for), a BTC amount is debited at `krw_for_sats` (half up). `RateThen` uses the invoice's
locked rate; `CurrentRate`, `Fiat` and `Custom` the current cross-checked rate, locked
when the refund is opened (Busan Pay's claims are fixed in sats; BTCPay's `Fiat` would
fix the won and price it when sent).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Optional

from sqlalchemy import Column, ForeignKey, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from database import DecimalText, UTCDateTime
from merchants.service import random_id
from settlement.daily import LOCK as SETTLEMENT_LOCK
from settlement.ledger import balance, entry_from_amounts, lock, post
from settlement.models import RefundClaim
from settlement.refunds import RefundError, new_claim, open_claim
from settlement.rules import (CONVERSION_BTC, CONVERSION_KRW, REFUNDS_OWED, SATS_PER_BTC,
                              krw_for_sats, payable)

VARIANTS = ("RateThen", "CurrentRate", "Fiat", "OverpaidAmount", "Custom")
CURRENCIES = ("KRW", "BTC", "SATS")
MAX_NAME = 200
MAX_DESCRIPTION = 2000


class PullPayment(SQLModel, table=True):
    """A Greenfield pull payment: the shop's view of one refund claim."""

    __tablename__ = "pull_payment"

    id: str = Field(primary_key=True, max_length=32)
    store_id: str = Field(max_length=48, index=True)
    invoice_id: Optional[str] = Field(default=None, max_length=32)
    claim_id: str = Field(sa_column=Column("claim_id", String(32), ForeignKey("refund_claim.id"),
                                           nullable=False, unique=True))
    name: str = Field(default="", max_length=MAX_NAME)
    description: str = Field(default="", sa_column=Column("description", Text(),
                                                           nullable=False, default=""))
    currency: str = Field(max_length=8)
    amount_text: str = Field(max_length=40)
    amount_krw: int = Field(default=0)      # what the merchant was debited (0: payer-owed)
    rate: Decimal = Field(sa_column=Column("rate", DecimalText(), nullable=False))
    variant: str = Field(max_length=16)
    archived: bool = Field(default=False)
    created_at: datetime = Field(sa_column=Column("created_at", UTCDateTime(), nullable=False))


class RefundRefused(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


@dataclass(frozen=True)
class RefundAsk:
    """A refund as the shop asked for it (parsed at the edge)."""
    variant: str                 # one of VARIANTS; "Custom" for a store pull payment
    amount: Decimal | None       # Custom: the amount in `currency`
    currency: str                # Custom: KRW, BTC or SATS
    subtract_percentage: Decimal = Decimal(0)
    name: str = ""
    description: str = ""


def sats_for_krw(krw: int, rate: Decimal) -> int:
    """Sats a won amount buys at a rate, rounded down (the payer never gets more than the
    merchant paid for)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return int((Decimal(krw) * SATS_PER_BTC / rate).to_integral_value(ROUND_FLOOR))


def _less(value: int, percentage: Decimal) -> int:
    """`value` less a percentage, rounded down."""
    with localcontext() as ctx:
        ctx.prec = 60
        return int((Decimal(value) * (100 - percentage) / 100).to_integral_value(ROUND_FLOOR))


def price(ask: RefundAsk, invoice, current_rate: Decimal) -> tuple[int, int, Decimal]:
    """(sats to the payer, won debited from the merchant, rate used) for a merchant-funded
    refund; `invoice` None for a store pull payment (Custom only)."""
    if ask.variant == "RateThen":
        rate, sats = invoice.rate, min(invoice.due_sats, invoice.paid_sats or 0)
        krw = krw_for_sats(sats, rate)  # the due sats were rounded up: never above the price
        krw = min(krw, invoice.amount_krw) if invoice.amount_krw is not None else krw
    elif ask.variant in ("CurrentRate", "Fiat"):
        if invoice.amount_krw is None:
            raise RefundRefused("refundVariant", "a top-up invoice has no price: use Custom")
        rate, krw = current_rate, invoice.amount_krw
        sats = sats_for_krw(krw, rate)
    else:  # Custom
        rate = current_rate
        if ask.currency == "KRW":
            if ask.amount != ask.amount.to_integral_value():
                raise RefundRefused("customAmount", "won has no minor unit: round the amount "
                                    "to whole won")
            krw = int(ask.amount)
            sats = sats_for_krw(krw, rate)
        else:
            sats_value = ask.amount * (SATS_PER_BTC if ask.currency == "BTC" else 1)
            if sats_value != sats_value.to_integral_value():
                raise RefundRefused("customAmount", "at most 8 decimal places of BTC "
                                    "(whole satoshis)")
            sats = int(sats_value)
            krw = krw_for_sats(sats, rate)
    if ask.subtract_percentage:
        sats, krw = _less(sats, ask.subtract_percentage), _less(krw, ask.subtract_percentage)
    if sats <= 0 or krw <= 0:
        raise RefundRefused("amount", "the refund comes to nothing at this rate")
    return sats, krw, rate


def refunded_krw(session, invoice_id: str) -> int:
    """Won already refunded to the payer of this invoice by its merchant."""
    return int(session.execute(select(func.coalesce(func.sum(PullPayment.amount_krw), 0))
                               .where(PullPayment.invoice_id == invoice_id)).scalar_one())


def open_refund(session, store_id: str, ask: RefundAsk, invoice, current_rate: Decimal | None,
                moment: datetime) -> tuple[PullPayment, str]:
    """Open the claim (and, when the merchant funds it, post the debit) in the caller's
    transaction; return it with the claim's key, which only this answer shows (only its
    SHA-256 is stored). `invoice` None: a store pull payment (the shop named no invoice)."""
    if invoice is not None and invoice.store_id != store_id:
        raise LookupError(invoice.id)
    if ask.variant == "OverpaidAmount":
        if invoice is None:
            raise RefundRefused("refundVariant", "OverpaidAmount needs an invoice")
        try:
            claim, key = open_claim(session, invoice.id, moment)
        except RefundError as err:
            raise RefundRefused("refundVariant", str(err)) from None
        sats, krw, rate = claim.amount_sats, 0, invoice.rate
    else:
        if invoice is not None and (invoice.status != "Settled" or not invoice.paid_sats):
            raise RefundRefused("invoiceId", "only a settled, paid invoice can be refunded "
                                "(an overpayment: refundVariant OverpaidAmount)")
        if current_rate is None and ask.variant != "RateThen":
            raise RefundRefused("currency", "no current exchange rate: retry shortly")
        sats, krw, rate = price(ask, invoice, current_rate)
        # The settlement lock orders this debit with the daily payouts and with other
        # refunds (PostgreSQL; SQLite writers are serial): each sees the others' debits.
        lock(session, SETTLEMENT_LOCK)
        if invoice is not None and invoice.amount_krw is not None and \
                refunded_krw(session, invoice.id) + krw > invoice.amount_krw:
            raise RefundRefused("amount", "refunds of this invoice would exceed its price of "
                                f"{invoice.amount_krw} won")
        available = -balance(session, payable(store_id))
        if krw > available:  # the merchant pays from won it holds; the city lends nothing
            raise RefundRefused("amount", f"the refund ({krw} won) is more than the store's "
                                f"balance of {max(available, 0)} won")
        try:
            with session.begin_nested():
                claim, key = new_claim(session, store_id,
                                       invoice.id if invoice is not None else None, sats, moment,
                                       merchant_funded=True)
        except IntegrityError:
            raise RefundRefused("invoiceId", "this invoice already has an open refund") from None
        post(session, entry_from_amounts(
            f"refund:{claim.id}:funded", "merchant_refund",
            {(payable(store_id), "KRW"): krw, (CONVERSION_KRW, "KRW"): -krw,
             (CONVERSION_BTC, "BTC"): sats, (REFUNDS_OWED, "BTC"): -sats},
            memo=f"refund of {krw} won ({sats} sats) opened by the merchant",
            store_id=store_id, invoice_id=claim.invoice_id, created_at=moment))
    amount_text = {"KRW": str(krw), "BTC": format(Decimal(sats) / SATS_PER_BTC, "f"),
                   "SATS": str(sats)}
    currency = ask.currency if ask.variant == "Custom" else (
        "BTC" if ask.variant in ("RateThen", "OverpaidAmount") else "KRW")
    pull = PullPayment(id=random_id(24), store_id=store_id,
                       invoice_id=invoice.id if invoice is not None else None, claim_id=claim.id,
                       name=ask.name[:MAX_NAME], description=ask.description[:MAX_DESCRIPTION],
                       currency=currency, amount_text=amount_text[currency], amount_krw=krw,
                       rate=rate, variant=ask.variant, created_at=moment)
    session.add(pull)
    session.flush()
    return pull, key


def pull_payment(session, pull_payment_id: str, store_id: str) -> tuple[PullPayment, RefundClaim]:
    pull = session.get(PullPayment, pull_payment_id) if len(pull_payment_id or "") <= 32 else None
    if pull is None or pull.store_id != store_id:
        raise LookupError(pull_payment_id)
    return pull, session.get(RefundClaim, pull.claim_id)


def store_pull_payments(session, store_id: str, include_archived: bool) -> list[tuple]:
    query = select(PullPayment, RefundClaim).join(RefundClaim, RefundClaim.id == PullPayment.claim_id) \
        .where(PullPayment.store_id == store_id).order_by(PullPayment.created_at.desc())
    if not include_archived:
        query = query.where(PullPayment.archived == False)  # noqa: E712
    return [tuple(row) for row in session.execute(query)]
