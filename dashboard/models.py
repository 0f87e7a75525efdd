"""The dashboard's own tables: the daily rollup (and its change log), exception reviews and
city settings.

Rollup design
-------------
``city_rollup`` holds one row per store and Asia/Seoul day (the day the invoice was
*created*), with counters per status/additional status and won/sat sums. It is kept by
database triggers on ``invoice`` (see ``dashboard.rollup``), which never update a shared
row: each invoice insert/update/delete only *appends* signed rows to
``city_rollup_delta``. Folding the deltas into ``city_rollup`` is a separate short
transaction (run by the dashboard when the log grows, or ``flask city rollup``), and
every read takes ``city_rollup UNION ALL city_rollup_delta``, so figures are exact at any
moment, whether or not the fold ran, and a payment path never waits on a rollup row lock
(no hot rows, no deadlocks between the watcher and the expiry job).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Optional

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from database import BigIntPK, UTCDateTime, utc_now

# Counter columns of the rollup, in order; each is the sum over the store's invoices of
# that day of the expression in dashboard.rollup.column_expressions. Counts are INTEGER
# (PostgreSQL sums int4 with an int8 accumulator, much faster than int8 sums); won and
# satoshi sums are BIGINT.
COUNT_COLUMNS = ("invoices", "new_n", "processing_n", "settled_n", "expired_n", "invalid_n",
                 "paid_partial_n", "paid_over_n", "paid_late_n", "marked_n")
AMOUNT_COLUMNS = ("processing_krw", "settled_krw", "settled_sats")
ROLLUP_COLUMNS = COUNT_COLUMNS + AMOUNT_COLUMNS


def _counter(name: str) -> Column:
    kind = BigInteger() if name in AMOUNT_COLUMNS else Integer()
    return Column(name, kind, nullable=False, default=0, server_default="0")


def _store_fk(primary: bool) -> Column:
    # ON DELETE CASCADE: stores are archived, never deleted, but a wiped test database
    # must not keep orphan counters whatever order its tables are emptied in.
    return Column("store_id", String(48), ForeignKey("store.id", ondelete="CASCADE"),
                  primary_key=primary, nullable=False)


class CityRollup(SQLModel, table=True):
    __tablename__ = "city_rollup"
    __table_args__ = (Index("ix_city_rollup_day", "day", "store_id"),)

    store_id: str = Field(sa_column=_store_fk(True))
    day: date = Field(sa_column=Column("day", Date(), primary_key=True, nullable=False))
    invoices: int = Field(default=0, sa_column=_counter("invoices"))
    new_n: int = Field(default=0, sa_column=_counter("new_n"))
    processing_n: int = Field(default=0, sa_column=_counter("processing_n"))
    settled_n: int = Field(default=0, sa_column=_counter("settled_n"))
    expired_n: int = Field(default=0, sa_column=_counter("expired_n"))
    invalid_n: int = Field(default=0, sa_column=_counter("invalid_n"))
    paid_partial_n: int = Field(default=0, sa_column=_counter("paid_partial_n"))
    paid_over_n: int = Field(default=0, sa_column=_counter("paid_over_n"))
    paid_late_n: int = Field(default=0, sa_column=_counter("paid_late_n"))
    marked_n: int = Field(default=0, sa_column=_counter("marked_n"))
    processing_krw: int = Field(default=0, sa_column=_counter("processing_krw"))
    settled_krw: int = Field(default=0, sa_column=_counter("settled_krw"))
    settled_sats: int = Field(default=0, sa_column=_counter("settled_sats"))


class CityRollupDelta(SQLModel, table=True):
    """Append-only signed changes written by the invoice triggers, folded away later."""

    __tablename__ = "city_rollup_delta"

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    store_id: str = Field(sa_column=_store_fk(False))
    day: date = Field(sa_column=Column("day", Date(), nullable=False))
    invoices: int = Field(default=0, sa_column=_counter("invoices"))
    new_n: int = Field(default=0, sa_column=_counter("new_n"))
    processing_n: int = Field(default=0, sa_column=_counter("processing_n"))
    settled_n: int = Field(default=0, sa_column=_counter("settled_n"))
    expired_n: int = Field(default=0, sa_column=_counter("expired_n"))
    invalid_n: int = Field(default=0, sa_column=_counter("invalid_n"))
    paid_partial_n: int = Field(default=0, sa_column=_counter("paid_partial_n"))
    paid_over_n: int = Field(default=0, sa_column=_counter("paid_over_n"))
    paid_late_n: int = Field(default=0, sa_column=_counter("paid_late_n"))
    marked_n: int = Field(default=0, sa_column=_counter("marked_n"))
    processing_krw: int = Field(default=0, sa_column=_counter("processing_krw"))
    settled_krw: int = Field(default=0, sa_column=_counter("settled_krw"))
    settled_sats: int = Field(default=0, sa_column=_counter("settled_sats"))


class CityExceptionReview(SQLModel, table=True):
    """A person's decision on an exception (the invoice itself is not changed here)."""

    __tablename__ = "city_exception_review"

    invoice_id: str = Field(sa_column=Column("invoice_id", String(32),
                                             ForeignKey("invoice.id", ondelete="CASCADE"),
                                             primary_key=True))
    kind: str = Field(max_length=24)
    outcome: str = Field(max_length=24)
    note: str = Field(default="", sa_column=Column("note", Text(), nullable=False, default=""))
    reviewer_id: Optional[str] = Field(default=None, max_length=24)
    reviewer_role: str = Field(default="", max_length=16)
    reviewed_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "reviewed_at", UTCDateTime(), nullable=False))


class CitySetting(SQLModel, table=True):
    """City-wide dashboard settings (e.g. the cap on open 0-conf exposure), in whole units."""

    __tablename__ = "city_setting"

    name: str = Field(primary_key=True, max_length=40)
    value: int = Field(sa_column=Column("value", BigInteger(), nullable=False))
    updated_by: Optional[str] = Field(default=None, max_length=24)
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "updated_at", UTCDateTime(), nullable=False))
