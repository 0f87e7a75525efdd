"""Settlement tables: the double-entry ledger, payouts, conversions, refund claims.

The ledger is append-only: `journal_entry` rows and their `posting` lines are inserted,
never updated or deleted. Each entry is unique on its `business_key` (enforced by the
database), so a retry or a second worker cannot post the same business event twice.
Amounts are signed integers in the posting's currency: won for KRW, satoshis for BTC;
a debit is positive, a credit negative (see `settlement.rules` for the directions).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import (BigInteger, Boolean, Column, Date, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint, false, text)
from sqlmodel import Field, SQLModel

from database import BigIntPK, DecimalText, UTCDateTime, utc_now


def _utc(name: str, nullable: bool = False, index: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable, index=index)


class LedgerAccount(SQLModel, table=True):
    """One account, e.g. `treasury:btc` or `merchant_payable:<storeId>`, in one currency."""

    __tablename__ = "ledger_account"

    id: Optional[int] = Field(default=None, primary_key=True)
    code: str = Field(max_length=120, unique=True)
    currency: str = Field(max_length=3)           # KRW | BTC
    kind: str = Field(max_length=40, index=True)  # the code before ':<storeId>' / ':<currency>'
    store_id: Optional[str] = Field(default=None, max_length=48, index=True)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entry"
    __table_args__ = (Index("ix_journal_entry_created", "created_at"),)

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    business_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=40)
    memo: str = Field(default="", sa_column=Column("memo", Text(), nullable=False, default=""))
    store_id: Optional[str] = Field(default=None, max_length=48, index=True)
    invoice_id: Optional[str] = Field(default=None, max_length=32, index=True)
    payout_id: Optional[str] = Field(default=None, max_length=32, index=True)
    flags: str = Field(default="", max_length=64)  # space-separated: incident, manual, …
    # When the business fact happened (the settlement's moment): the daily cut-off uses it.
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    posted_at: datetime = Field(default_factory=utc_now, sa_column=_utc("posted_at"))


class Posting(SQLModel, table=True):
    __tablename__ = "posting"
    __table_args__ = (Index("ix_posting_account_entry", "account_id", "entry_id"),)

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    entry_id: int = Field(sa_column=Column("entry_id", BigInteger(), ForeignKey("journal_entry.id"),
                                           nullable=False, index=True))
    account_id: int = Field(sa_column=Column("account_id", Integer(),
                                             ForeignKey("ledger_account.id"), nullable=False))
    currency: str = Field(max_length=3)
    amount: int = Field(sa_column=Column("amount", BigInteger(), nullable=False))


class LedgerEventDone(SQLModel, table=True):
    """Outbox events the posting job has handled (an anti-join, with a watermark)."""

    __tablename__ = "ledger_event_done"

    event_id: int = Field(sa_column=Column("event_id", BigInteger(), primary_key=True,
                                           autoincrement=False))
    done_at: datetime = Field(default_factory=utc_now, sa_column=_utc("done_at"))


class LedgerInvoice(SQLModel, table=True):
    """Per invoice the ledger has seen: the fee rate fixed when it was first posted, and
    the row each poster locks so one invoice is reconciled by one worker at a time."""

    __tablename__ = "ledger_invoice"

    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             primary_key=True))
    store_id: str = Field(max_length=48)
    fee_bps: int = Field()
    entries: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class LedgerCursor(SQLModel, table=True):
    """Named low watermarks (every outbox event at or below `value` is handled)."""

    __tablename__ = "ledger_cursor"

    name: str = Field(primary_key=True, max_length=40)
    value: int = Field(default=0, sa_column=Column("value", BigInteger(), nullable=False,
                                                   default=0))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class FeeRule(SQLModel, table=True):
    """Per-category city fee in basis points, overriding BUSANPAY_FEE_BPS."""

    __tablename__ = "fee_rule"

    category: str = Field(primary_key=True, max_length=32)
    fee_bps: int = Field()
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class MerchantPayoutAccount(SQLModel, table=True):
    """Where a store's won goes: a Stripe connected account and/or bank details."""

    __tablename__ = "merchant_payout_account"

    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           primary_key=True))
    rail: Optional[str] = Field(default=None, max_length=16)  # None: the configured default
    stripe_account_id: Optional[str] = Field(default=None, max_length=64)
    bank_name: str = Field(default="", max_length=64)
    bank_account: str = Field(default="", max_length=64)
    account_holder: str = Field(default="", max_length=120)
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class Payout(SQLModel, table=True):
    """One transfer of won to one merchant for one Asia/Seoul business day."""

    __tablename__ = "payout"
    __table_args__ = (UniqueConstraint("store_id", "day", name="uq_payout_store_day"),
                      Index("ix_payout_status", "status"))

    id: str = Field(primary_key=True, max_length=32)  # random; the rail's idempotency key
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False, index=True))
    day: date = Field(sa_column=Column("day", Date(), nullable=False))
    amount_krw: int = Field(sa_column=Column("amount_krw", BigInteger(), nullable=False))
    rail: str = Field(max_length=16)
    destination: str = Field(default="", max_length=64)
    status: str = Field(default="created", max_length=16)  # created sent paid failed returned
    external_id: Optional[str] = Field(default=None, max_length=64, index=True)
    attempts: int = Field(default=0)
    last_error: Optional[str] = Field(default=None, sa_column=Column("last_error", Text(),
                                                                     nullable=True))
    needs_attention: bool = Field(default=False, sa_column=Column(
        "needs_attention", Boolean(), nullable=False, default=False))
    # daily (the business day's run) or final (made when the city closes the store)
    kind: str = Field(default="daily", sa_column=Column("kind", String(8), nullable=False,
                                                        default="daily", server_default="daily"))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class StripeEventSeen(SQLModel, table=True):
    """Stripe webhook events already applied (by event id)."""

    __tablename__ = "stripe_event"

    id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=64)
    payout_id: Optional[str] = Field(default=None, max_length=32)
    note: str = Field(default="", max_length=200)
    received_at: datetime = Field(default_factory=utc_now, sa_column=_utc("received_at"))


class Conversion(SQLModel, table=True):
    """One sale of treasury BTC for won at the conversion venue."""

    __tablename__ = "conversion"

    id: str = Field(primary_key=True, max_length=32)  # the order's identifier at the venue
    venue: str = Field(max_length=32)
    sats: int = Field(sa_column=Column("sats", BigInteger(), nullable=False))
    status: str = Field(default="created", max_length=16)  # created done failed
    external_id: Optional[str] = Field(default=None, max_length=64)
    executed_krw: Optional[int] = Field(default=None, sa_column=Column(
        "executed_krw", BigInteger(), nullable=True))
    rate: Optional[Decimal] = Field(default=None, sa_column=Column("rate", DecimalText(),
                                                                   nullable=True))
    locked_krw: Optional[int] = Field(default=None, sa_column=Column(
        "locked_krw", BigInteger(), nullable=True))
    attempts: int = Field(default=0)
    last_error: Optional[str] = Field(default=None, sa_column=Column("last_error", Text(),
                                                                     nullable=True))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


# Claims opened from the checkout page (or a shop's OverpaidAmount refund) share what the
# ledger owes the payer: the treasury approves one of them per invoice. A refund the merchant
# funds (a Greenfield pull payment) has its own sats and stands apart; a shop may have one
# unfinished funded refund per invoice. NULL invoice ids never collide.
APPROVED_CLAIM_SQL = "status = 'approved' AND NOT merchant_funded"
FUNDED_OPEN_CLAIM_SQL = "merchant_funded AND status IN ('open', 'submitted', 'approved')"


class RefundClaim(SQLModel, table=True):
    """BTC owed back to a payer. Several claims may stand side by side for one invoice
    (anyone who knows the invoice id can open one, so none may block another); each claim's
    own secret key lets its opener give an address; the treasury approves one of them, with
    the evidence shown, and the others are rejected; the operator records the txid (keys stay
    offline). See docs/ARCHITECTURE.md, "Refunds"."""

    __tablename__ = "refund_claim"
    # At most one approved claim per invoice, enforced by the database.
    __table_args__ = (Index("uq_refund_claim_approved", "invoice_id", unique=True,
                            sqlite_where=text(APPROVED_CLAIM_SQL),
                            postgresql_where=text(APPROVED_CLAIM_SQL)),
                      Index("uq_refund_claim_funded_open", "invoice_id", unique=True,
                            sqlite_where=text(FUNDED_OPEN_CLAIM_SQL),
                            postgresql_where=text(FUNDED_OPEN_CLAIM_SQL)))

    id: str = Field(primary_key=True, max_length=32)
    token_hash: str = Field(max_length=64, unique=True)  # SHA-256 of the payer's link token
    # None for a refund a shop opened without naming an invoice (a Greenfield pull payment).
    invoice_id: Optional[str] = Field(default=None, sa_column=Column(
        "invoice_id", String(32), ForeignKey("invoice.id"), nullable=True, index=True))
    store_id: str = Field(max_length=48, index=True)
    amount_sats: int = Field(sa_column=Column("amount_sats", BigInteger(), nullable=False))
    # True when the merchant paid for this refund (entry `merchant_refund`): its sats are its
    # own, not a share of an overpayment that rival claims compete for.
    merchant_funded: bool = Field(default=False, sa_column=Column(
        "merchant_funded", Boolean(), nullable=False, default=False, server_default=false()))
    address: Optional[str] = Field(default=None, max_length=100)
    status: str = Field(default="open", max_length=16)  # open submitted approved sent credited rejected
    txid: Optional[str] = Field(default=None, max_length=64)
    fee_sats: int = Field(default=0, sa_column=Column("fee_sats", BigInteger(), nullable=False,
                                                      default=0))
    decided_by: str = Field(default="", max_length=120)
    # Evidence for the treasury: when the claimant's browser was shown the payment request
    # while it was still unpaid (the checkout page's signed payer mark); None without it.
    shown_unpaid_at: Optional[datetime] = Field(default=None,
                                                sa_column=_utc("shown_unpaid_at", nullable=True))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class OffchainCredit(SQLModel, table=True):
    """A treasury action: credit won the city received off-chain (e.g. cash for a short
    payment) to a merchant for one invoice. One person proposes, another approves; only
    the approval posts (`offchain:<id>`, account `city_offchain:krw`)."""

    __tablename__ = "offchain_credit"

    id: str = Field(primary_key=True, max_length=32)
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False, index=True))
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             nullable=False, index=True))
    amount_krw: int = Field(sa_column=Column("amount_krw", BigInteger(), nullable=False))
    reason: str = Field(sa_column=Column("reason", Text(), nullable=False))
    status: str = Field(default="proposed", max_length=16)  # proposed approved rejected
    proposed_by: str = Field(max_length=32)  # user ids
    decided_by: Optional[str] = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    decided_at: Optional[datetime] = Field(default=None, sa_column=_utc("decided_at", nullable=True))
