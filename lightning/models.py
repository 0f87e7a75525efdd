"""Lightning tables: the BOLT11s of the gateway's invoices, the listener's resume point, and
the demo node's own invoices (the demo node keeps its state in the database so that the web
process and a `flask` CLI process see the same node)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Text,
                        text)
from sqlmodel import Field, SQLModel

from database import BigIntPK, UTCDateTime, utc_now


def _utc(name: str, nullable: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


class InvoiceLightning(SQLModel, table=True):
    """One Lightning offer of an invoice: a BOLT11 for what was still due when it was made,
    or (bolt11 NULL) the reason Lightning could not be offered then.

    The newest row of an invoice is its `active` one (at most one, a partial unique index);
    older rows are superseded, but a superseded BOLT11 that gets paid anyway still counts
    (the listener finds its invoice by payment hash in any row)."""

    __tablename__ = "invoice_lightning"
    __table_args__ = (
        Index("uq_invoice_lightning_active", "invoice_id", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             nullable=False, index=True))
    payment_hash: Optional[str] = Field(default=None, sa_column=Column(
        "payment_hash", String(64), nullable=True, unique=True))
    bolt11: Optional[str] = Field(default=None, sa_column=Column("bolt11", Text(), nullable=True))
    amount_msat: int = Field(sa_column=Column("amount_msat", BigInteger(), nullable=False))
    expires_at: Optional[datetime] = Field(default=None, sa_column=_utc("expires_at", True))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    active: bool = Field(default=True, sa_column=Column("active", Boolean(), nullable=False))
    # Why there is no BOLT11 (lightning.invoices.REASONS), NULL when there is one.
    unavailable: Optional[str] = Field(default=None, max_length=32)
    detail: Optional[str] = Field(default=None, max_length=300)  # the node's words, no secrets


class LightningListenerState(SQLModel, table=True):
    """The listener's resume point in the node's settlement stream, and its health."""

    __tablename__ = "lightning_listener_state"

    id: int = Field(default=1, primary_key=True)
    backend: str = Field(default="", max_length=16)
    last_index: int = Field(default=0, sa_column=Column("last_index", BigInteger(),
                                                        nullable=False, server_default="0"))
    settlements: int = Field(default=0, sa_column=Column("settlements", BigInteger(),
                                                         nullable=False, server_default="0"))
    failures: int = Field(default=0)
    last_error: Optional[str] = Field(default=None, sa_column=Column("last_error", Text(),
                                                                     nullable=True))
    last_error_at: Optional[datetime] = Field(default=None, sa_column=_utc("last_error_at", True))
    last_success_at: Optional[datetime] = Field(default=None,
                                                sa_column=_utc("last_success_at", True))
    last_settlement_at: Optional[datetime] = Field(default=None,
                                                   sa_column=_utc("last_settlement_at", True))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class DemoLnInvoice(SQLModel, table=True):
    """An invoice of the offline demo node (lightning/demo_node.py)."""

    __tablename__ = "demo_ln_invoice"

    payment_hash: str = Field(sa_column=Column("payment_hash", String(64), primary_key=True))
    bolt11: str = Field(sa_column=Column("bolt11", Text(), nullable=False))
    label: str = Field(max_length=100, unique=True)
    description: str = Field(default="", max_length=640)
    amount_msat: int = Field(sa_column=Column("amount_msat", BigInteger(), nullable=False))
    created_at: datetime = Field(sa_column=_utc("created_at"))
    expires_at: datetime = Field(sa_column=_utc("expires_at"))
    amount_paid_msat: int = Field(default=0, sa_column=Column(
        "amount_paid_msat", BigInteger(), nullable=False, server_default="0"))
    settled_at: Optional[datetime] = Field(default=None, sa_column=_utc("settled_at", True))
    settle_index: Optional[int] = Field(default=None, sa_column=Column(
        "settle_index", Integer(), nullable=True, unique=True))


class DemoLnNode(SQLModel, table=True):
    """The demo node's settle counter (one row): the stream index of its next settlement."""

    __tablename__ = "demo_ln_node"

    id: int = Field(default=1, primary_key=True)
    settle_index: int = Field(default=0)


#: The listener's one state row (`LightningListenerState.id`).
STATE_ID = 1
#: How long past expiry an invoice with a BOLT11 waits for a silent listener to catch up.
COVER_GRACE = timedelta(minutes=10)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def expiry_decision_time(decision_time: datetime, covered: datetime | None) -> datetime:
    """The time up to which an invoice with a BOLT11 may be decided (expired): no later
    than the listener has covered (`last_success_at`), so a payment the node settled in
    time is recorded before the invoice could expire without it (the watcher's own rule
    for the chain); but a listener silent for longer than COVER_GRACE holds nothing (a
    dead node must not keep invoices open for ever; its late news is then PaidLate)."""
    if covered is not None and covered >= decision_time:
        return decision_time
    return max(covered or EPOCH, decision_time - COVER_GRACE)
