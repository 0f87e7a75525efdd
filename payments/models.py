"""Invoice tables: extended keys and their address cursor, invoices, payments, the outbox."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import (BigInteger, Column, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, text)
from sqlmodel import Field, SQLModel

from database import BigIntPK, DecimalText, UTCDateTime, utc_now


def _utc(name: str, nullable: bool = False, index: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable, index=index)


class ExtendedKeyRecord(SQLModel, table=True):
    """A watch-only account key and the next receive index it will hand out."""

    __tablename__ = "extended_key"

    id: Optional[int] = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=32, unique=True)
    key_text: str = Field(max_length=200)
    network: str = Field(max_length=16)
    script_type: str = Field(max_length=16)
    owner: str = Field(max_length=48)  # "treasury" or a store id
    next_index: int = Field(default=0)
    # Receive addresses below this index are pre-derived in key_address (PostgreSQL's
    # one-statement invoice creation reads them there).
    derived_until: int = Field(default=0, sa_column=Column(
        "derived_until", Integer(), nullable=False, server_default="0"))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))


class KeyAddress(SQLModel, table=True):
    """A receive address derived ahead of use: a pure function of (key, index), written
    outside any lock so that creating an invoice never derives while holding one."""

    __tablename__ = "key_address"

    key_id: int = Field(sa_column=Column("key_id", ForeignKey("extended_key.id"),
                                         primary_key=True))
    key_index: int = Field(primary_key=True)
    address: str = Field(max_length=100)


class Invoice(SQLModel, table=True):
    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("key_id", "key_index", name="uq_invoice_key_index"),
        Index("ix_invoice_store_created", "store_id", "created_at"),
        Index("ix_invoice_store_order", "store_id", "order_id"),
        Index("ix_invoice_status_expires", "status", "monitoring_expires_at"),
        Index("ix_invoice_status_expiry", "status", "expires_at"),  # the watcher's expiry sweep
        # Marked invoices whose chain status still moves (few): the watcher's time sweep.
        Index("ix_invoice_chain_status", "chain_status",
              sqlite_where=text("chain_status IS NOT NULL"),
              postgresql_where=text("chain_status IS NOT NULL")),
    )

    id: str = Field(primary_key=True, max_length=32)
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False))
    currency: str = Field(max_length=8)           # KRW | BTC | SATS as asked
    amount_text: str = Field(max_length=40)       # the price as asked, exact decimal text
    amount_krw: Optional[int] = Field(default=None)  # whole won; None when priced in BTC
    due_sats: int = Field(sa_column=Column("due_sats", BigInteger(), nullable=False))
    rate: Decimal = Field(sa_column=Column("rate", DecimalText(), nullable=False))
    rate_raw: Decimal = Field(sa_column=Column("rate_raw", DecimalText(), nullable=False))
    rate_source: str = Field(max_length=32)
    rate_fetched_at: datetime = Field(sa_column=_utc("rate_fetched_at"))
    key_id: int = Field(sa_column=Column("key_id", ForeignKey("extended_key.id"), nullable=False))
    key_index: int = Field()
    address: str = Field(max_length=100, unique=True)
    status: str = Field(default="New", max_length=16)
    additional_status: str = Field(default="None", max_length=16)
    speed_policy: str = Field(max_length=16)
    payment_tolerance: Decimal = Field(sa_column=Column("payment_tolerance", DecimalText(),
                                                        nullable=False))
    zero_conf_limit_krw: int = Field(default=0)
    paid_sats: int = Field(default=0, sa_column=Column("paid_sats", BigInteger(), nullable=False,
                                                       default=0))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    expires_at: datetime = Field(sa_column=_utc("expires_at"))
    monitoring_expires_at: datetime = Field(sa_column=_utc("monitoring_expires_at"))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))
    order_id: Optional[str] = Field(default=None, max_length=200)
    metadata_json: str = Field(default="{}", sa_column=Column("metadata_json", Text(),
                                                              nullable=False))
    checkout_json: str = Field(default="{}", sa_column=Column("checkout_json", Text(),
                                                              nullable=False))
    incident: Optional[str] = Field(default=None, max_length=32)  # the open incident's kind
    # When the open incident opened (its history: chain.models.InvoiceIncident).
    incident_since: Optional[datetime] = Field(default=None, sa_column=_utc("incident_since",
                                                                            nullable=True))
    # Money follows the chain, never a person's mark: when a merchant marks the invoice,
    # `status` is what its shop sees and `chain_status` what the payments say (NULL when
    # never marked: `status` is the chain's). `settled_sats`: the counted sats when the
    # chain settled it (a 0-conf payment lost later stays credited at this, the city's loss).
    chain_status: Optional[str] = Field(default=None, max_length=16)
    settled_sats: Optional[int] = Field(default=None, sa_column=Column(
        "settled_sats", BigInteger(), nullable=True))
    archived: bool = Field(default=False)
    # Bumped on every visible change: the checkout page's ETag.
    version: int = Field(default=1)


class InvoiceQr(SQLModel, table=True):
    """Rendered once per invoice, then served from here."""

    __tablename__ = "invoice_qr"

    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             primary_key=True))
    payload: str = Field(sa_column=Column("payload", Text(), nullable=False))
    svg: bytes = Field(sa_column=Column("svg", LargeBinary(), nullable=False))
    png: bytes = Field(sa_column=Column("png", LargeBinary(), nullable=False))


#: How a payment came (Greenfield's payment method ids).
METHOD_CHAIN = "BTC-CHAIN"
METHOD_LIGHTNING = "BTC-LN"
#: `payment.address` of a Lightning payment (it has no address; txid is its payment hash).
LIGHTNING_ADDRESS = "lightning"


class Payment(SQLModel, table=True):
    """One transaction output paying an invoice address, or one settled Lightning invoice
    (`method` BTC-LN: txid = payment hash, vout 0, address "lightning", final when seen)."""

    __tablename__ = "payment"
    __table_args__ = (UniqueConstraint("txid", "vout", name="uq_payment_outpoint"),)

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             nullable=False, index=True))
    txid: str = Field(max_length=64)
    vout: int = Field()
    address: str = Field(max_length=100)
    value_sats: int = Field(sa_column=Column("value_sats", BigInteger(), nullable=False))
    state: str = Field(default="seen", max_length=16)  # seen | replaced | double_spent | orphaned
    block_height: Optional[int] = Field(default=None)
    block_hash: Optional[str] = Field(default=None, max_length=64)
    seen_at: datetime = Field(default_factory=utc_now, sa_column=_utc("seen_at"))
    late: bool = Field(default=False)
    method: str = Field(default=METHOD_CHAIN, sa_column=Column(
        "method", String(16), nullable=False, default=METHOD_CHAIN, server_default=METHOD_CHAIN))


class InvoiceEvent(SQLModel, table=True):
    """The outbox: written in the same transaction as the change it reports."""

    __tablename__ = "invoice_event"

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    # What makes the event unique, e.g. "inv123:InvoiceSettled" or "inv123:paid:txid:0".
    dedupe_key: str = Field(max_length=200, unique=True)
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), ForeignKey("invoice.id"),
                                             nullable=False, index=True))
    store_id: str = Field(max_length=48, index=True)
    event_type: str = Field(max_length=40)
    payload_json: str = Field(sa_column=Column("payload_json", Text(), nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))


class IdempotencyRecord(SQLModel, table=True):
    """First answer to a POST with an Idempotency-Key, replayed for repeats."""

    __tablename__ = "idempotency_record"

    store_id: str = Field(primary_key=True, max_length=48)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int = Field()
    response_json: str = Field(sa_column=Column("response_json", Text(), nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))


class RateSnapshot(SQLModel, table=True):
    """The latest quote per source, shared by every process (the worker polls)."""

    __tablename__ = "rate_snapshot"

    source: str = Field(primary_key=True, max_length=32)
    krw_per_btc: Decimal = Field(sa_column=Column("krw_per_btc", DecimalText(), nullable=False))
    fetched_at: datetime = Field(sa_column=_utc("fetched_at"))
    exchange_time: Optional[datetime] = Field(default=None, sa_column=_utc("exchange_time",
                                                                          nullable=True))
