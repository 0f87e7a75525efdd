"""People who log in (merchant owners, cashiers, city staff, treasury) and the audit log."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Column, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from database import BigIntPK, UTCDateTime, utc_now

ROLES = ("owner", "cashier", "city_admin", "city_auditor", "treasury")
CITY_ROLES = ("city_admin", "city_auditor", "treasury")


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    __table_args__ = (UniqueConstraint("store_id", "pin_label", name="uq_cashier_label"),)

    id: str = Field(primary_key=True, max_length=24)
    role: str = Field(max_length=16, index=True)
    # Owners and city staff log in with email + password; cashiers with store + PIN.
    email: Optional[str] = Field(default=None, max_length=200, unique=True)
    password_hash: Optional[str] = Field(default=None, max_length=255)
    store_id: Optional[str] = Field(default=None, sa_column=Column(
        "store_id", String(48), ForeignKey("store.id"), nullable=True, index=True))
    pin_hash: Optional[str] = Field(default=None, max_length=255)
    pin_label: Optional[str] = Field(default=None, max_length=60)  # the cashier's name on receipts
    display_name: str = Field(default="", max_length=120)
    language: str = Field(default="ko", max_length=8)
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "created_at", UTCDateTime(), nullable=False))


class LoginSession(SQLModel, table=True):
    """One signed-in session. The session cookie names it; logout ends it here, so a copy
    of the cookie taken before logout opens nothing afterwards."""

    __tablename__ = "login_session"

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(sa_column=Column("user_id", String(24), ForeignKey("user_account.id"),
                                          nullable=False, index=True))
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "created_at", UTCDateTime(), nullable=False))
    ended_at: Optional[datetime] = Field(default=None, sa_column=Column(
        "ended_at", UTCDateTime(), nullable=True))
    ip: str = Field(default="", max_length=64)


class LoginThrottle(SQLModel, table=True):
    """Counted login attempts per client address, store, account or known device.

    An attempt is counted (atomically, before its hash is checked) and refused when the
    key is blocked; see accounts/throttle.py."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=120)
    failures: int = Field(default=0)
    blocked_until: Optional[datetime] = Field(default=None, sa_column=Column(
        "blocked_until", UTCDateTime(), nullable=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "updated_at", UTCDateTime(), nullable=False))


class AuditEntry(SQLModel, table=True):
    """Append-only record of every privileged action."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    at: datetime = Field(default_factory=utc_now, sa_column=Column("at", UTCDateTime(),
                                                                   nullable=False))
    actor_id: Optional[str] = Field(default=None, max_length=24, index=True)
    actor_role: str = Field(default="", max_length=16)
    action: str = Field(max_length=60)
    store_id: Optional[str] = Field(default=None, max_length=48, index=True)
    target: str = Field(default="", max_length=200)
    details_json: str = Field(default="{}", sa_column=Column("details_json", Text(), nullable=False))
    ip: str = Field(default="", max_length=64)
