"""The watcher's own tables: processed blocks, its state and health, what it tracks.

Nothing here duplicates an invoice rule; these rows only let the watcher resume where it
stopped, detect reorgs and double spends, and show its health.

- ``chain_block``: every block processed, with its parent; a reorg marks the blocks after
  the fork ``orphaned`` (kept for the audit trail).
- ``chain_watcher_state``: one row (id 1). ``best_hash``/``best_height`` is the fencing
  cursor: a block is processed only in a transaction that finds its parent there, so two
  watchers (or a watcher restarted after a crash) can never process a block twice.
  ``covered_at`` is the start of the last pass that scanned chain *and* mempool
  successfully: time-based transitions never run past it (see chain/watcher.py).
- ``chain_payment_track``: one row per recorded payment output, the watcher's
  bookkeeping beside ``payment`` (same key): confirmations required, whether
  ``InvoicePaymentSettled`` was recorded, whether it still needs per-block work.
- ``chain_tx_input``: the outpoints spent by payment transactions, for double-spend
  detection (a confirmed transaction spending one of them with another txid).
- ``invoice_incident``: every incident an invoice had, with when and why it opened and
  closed. At most one open per invoice (a partial unique index); the open one is mirrored
  in ``invoice.incident``/``incident_since``, which the ledger and the API read.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, Index, String, Text, text
from sqlmodel import Field, SQLModel

from database import BigIntPK, UTCDateTime, utc_now


def _utc(name: str, nullable: bool = False, index: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable, index=index)


class ChainBlock(SQLModel, table=True):
    __tablename__ = "chain_block"
    __table_args__ = (Index("ix_chain_block_orphaned_height", "orphaned", "height"),)

    hash: str = Field(primary_key=True, max_length=64)
    height: int = Field()
    prev_hash: Optional[str] = Field(default=None, max_length=64)
    orphaned: bool = Field(default=False)
    tx_count: int = Field(default=0)
    matched_outputs: int = Field(default=0)
    processed_at: datetime = Field(default_factory=utc_now, sa_column=_utc("processed_at"))
    orphaned_at: Optional[datetime] = Field(default=None, sa_column=_utc("orphaned_at",
                                                                          nullable=True))


class ChainWatcherState(SQLModel, table=True):
    __tablename__ = "chain_watcher_state"

    id: int = Field(primary_key=True)  # always 1
    backend: str = Field(default="", max_length=64)
    best_height: Optional[int] = Field(default=None)
    best_hash: Optional[str] = Field(default=None, max_length=64)
    tip_height: Optional[int] = Field(default=None)
    tip_hash: Optional[str] = Field(default=None, max_length=64)
    covered_at: Optional[datetime] = Field(default=None, sa_column=_utc("covered_at",
                                                                        nullable=True))
    last_success_at: Optional[datetime] = Field(default=None, sa_column=_utc(
        "last_success_at", nullable=True))
    last_error: Optional[str] = Field(default=None, sa_column=Column("last_error", Text(),
                                                                     nullable=True))
    last_error_at: Optional[datetime] = Field(default=None, sa_column=_utc("last_error_at",
                                                                           nullable=True))
    failures: int = Field(default=0)
    backoff_until: Optional[datetime] = Field(default=None, sa_column=_utc("backoff_until",
                                                                           nullable=True))
    holder: Optional[str] = Field(default=None, max_length=120)
    incident: Optional[str] = Field(default=None, max_length=200)
    # Why the watcher is waiting on a node it cannot believe yet (initial block download,
    # mempool loading, a tip below the processed height), since when; None when not.
    waiting: Optional[str] = Field(default=None, max_length=200)
    waiting_since: Optional[datetime] = Field(default=None, sa_column=_utc("waiting_since",
                                                                           nullable=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))


class ChainPaymentTrack(SQLModel, table=True):
    __tablename__ = "chain_payment_track"
    __table_args__ = (Index("ix_chain_payment_track_active", "active", "block_height"),)

    txid: str = Field(primary_key=True, max_length=64)
    vout: int = Field(primary_key=True)
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), nullable=False,
                                             index=True))
    required_confs: int = Field()
    block_height: Optional[int] = Field(default=None)
    block_hash: Optional[str] = Field(default=None, max_length=64, index=True)
    # False once the payment is final for the watcher (confirmed deep enough, or dropped
    # after its invoice's monitoring ended); its block is still indexed for deep reorgs.
    active: bool = Field(default=True)
    settled_event: bool = Field(default=False)
    # Seen after the invoice's monitoring ended: recorded and flagged, never credited.
    after_monitoring: bool = Field(default=False)
    watch_until: datetime = Field(sa_column=_utc("watch_until"))


class ChainTxInput(SQLModel, table=True):
    __tablename__ = "chain_tx_input"

    prev_txid: str = Field(primary_key=True, max_length=64)
    prev_vout: int = Field(primary_key=True)
    txid: str = Field(primary_key=True, max_length=64, index=True)


class InvoiceIncident(SQLModel, table=True):
    __tablename__ = "invoice_incident"
    __table_args__ = (
        Index("ux_invoice_incident_open", "invoice_id", unique=True,
              sqlite_where=text("closed_at IS NULL"), postgresql_where=text("closed_at IS NULL")),
    )

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    invoice_id: str = Field(sa_column=Column("invoice_id", String(32), nullable=False,
                                             index=True))
    kind: str = Field(max_length=32)
    opened_at: datetime = Field(sa_column=_utc("opened_at"))
    opened_why: str = Field(sa_column=Column("opened_why", Text(), nullable=False))
    closed_at: Optional[datetime] = Field(default=None, sa_column=_utc("closed_at",
                                                                       nullable=True))
    closed_why: Optional[str] = Field(default=None, sa_column=Column("closed_why", Text(),
                                                                     nullable=True))
