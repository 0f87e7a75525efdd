"""Onboarding tables: payout-account changes awaiting a second person, applications,
owner invitations."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Index, String, Text, text
from sqlmodel import Field, SQLModel

from database import UTCDateTime, utc_now

PENDING_SQL = "status = 'pending'"
LIVE_SQL = "status IN ('pending', 'approved')"


def locked_pending(session, model, row_id: str):
    """The row if it is still pending, locked for this transaction (PostgreSQL; SQLite's
    writer lock already serialises), else None: a decision is made once."""
    from sqlalchemy import select

    stmt = select(model).where(model.id == row_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    return row if row is not None and row.status == "pending" else None


def _utc(name: str, nullable: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


class PayoutAccountChange(SQLModel, table=True):
    """A payout destination someone entered. Settlement never reads it: only an approval by
    a different person copies it into `merchant_payout_account`, which settlement pays."""

    __tablename__ = "payout_account_change"
    # One pending change per store, enforced by the database (a newer entry supersedes).
    __table_args__ = (Index("uq_payout_change_pending", "store_id", unique=True,
                            sqlite_where=text(PENDING_SQL), postgresql_where=text(PENDING_SQL)),)

    id: str = Field(primary_key=True, max_length=24)
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False, index=True))
    status: str = Field(default="pending", max_length=16)  # pending approved rejected superseded
    rail: Optional[str] = Field(default=None, max_length=16)
    stripe_account_id: Optional[str] = Field(default=None, max_length=64)
    bank_name: str = Field(default="", max_length=64)
    bank_account: str = Field(default="", max_length=64)
    account_holder: str = Field(default="", max_length=120)
    holder_matches: bool = Field(default=True)
    holder_explanation: str = Field(default="", sa_column=Column(
        "holder_explanation", Text(), nullable=False, default=""))
    requested_by: str = Field(max_length=24)  # a user id: four eyes compares people
    requested_role: str = Field(default="", max_length=16)
    requested_at: datetime = Field(default_factory=utc_now, sa_column=_utc("requested_at"))
    decided_by: Optional[str] = Field(default=None, max_length=24)
    decided_at: Optional[datetime] = Field(default=None, sa_column=_utc("decided_at", True))
    decision_note: str = Field(default="", max_length=500)


class MerchantApplication(SQLModel, table=True):
    """A business asking to accept Bitcoin; nothing else exists until the city approves."""

    __tablename__ = "merchant_application"
    # One live (pending or approved) application per registration number, enforced by the
    # database: two submissions at once cannot both get in.
    __table_args__ = (Index("uq_application_brn_live", "brn", unique=True,
                            sqlite_where=text(LIVE_SQL), postgresql_where=text(LIVE_SQL)),)

    id: str = Field(primary_key=True, max_length=24)
    status: str = Field(default="pending", max_length=16, index=True)  # pending approved rejected
    name_ko: str = Field(max_length=120)
    name_en: str = Field(default="", max_length=120)
    brn: str = Field(max_length=10, index=True)  # 사업자등록번호, digits only
    district: str = Field(max_length=32)
    category: str = Field(max_length=32)
    address: str = Field(max_length=300)
    contact_name: str = Field(max_length=120)
    email: str = Field(max_length=200)
    phone: str = Field(max_length=32)
    monthly_volume_krw: int = Field(default=0)
    settlement_mode: str = Field(default="krw", max_length=8)
    xpub: str = Field(default="", max_length=200)
    language: str = Field(default="ko", max_length=8)
    flags: str = Field(default="", max_length=200)  # space-separated: duplicate-brn …
    client_ip: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    decided_by: Optional[str] = Field(default=None, max_length=24)
    decided_at: Optional[datetime] = Field(default=None, sa_column=_utc("decided_at", True))
    decision_reason: str = Field(default="", max_length=500)
    store_id: Optional[str] = Field(default=None, max_length=48)


class Invitation(SQLModel, table=True):
    """A one-time, expiring link for a store's owner to set a password."""

    __tablename__ = "owner_invitation"

    id: str = Field(primary_key=True, max_length=24)
    token_hash: str = Field(max_length=64, unique=True)  # SHA-256 of the link's token
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False, index=True))
    email: str = Field(max_length=200)
    created_by: str = Field(max_length=24)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    expires_at: datetime = Field(sa_column=_utc("expires_at"))
    used_at: Optional[datetime] = Field(default=None, sa_column=_utc("used_at", True))
    user_id: Optional[str] = Field(default=None, max_length=24)
