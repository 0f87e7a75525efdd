"""Stores (merchants) and their API keys."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Column, ForeignKey, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from database import DecimalText, UTCDateTime, utc_now


class Store(SQLModel, table=True):
    __tablename__ = "store"
    __table_args__ = (UniqueConstraint("pos_code", name="uq_store_pos_code"),)

    id: str = Field(primary_key=True, max_length=48)
    # The short code cashiers type on the POS login (merchants/store_codes.py); the
    # Greenfield storeId above stays the API's identifier.
    pos_code: str = Field(max_length=8)
    name: str = Field(max_length=120)
    district: str = Field(max_length=32, index=True)
    category: str = Field(default="retail", max_length=32, index=True)
    settlement_mode: str = Field(default="krw", max_length=8)  # krw | btc
    # The store's own account key when it settles in BTC directly.
    key_id: Optional[int] = Field(default=None, sa_column=Column(
        "key_id", ForeignKey("extended_key.id"), nullable=True))
    speed_policy: str = Field(default="MediumSpeed", max_length=16)
    zero_conf_limit_krw: int = Field(default=0)
    payment_tolerance: Decimal = Field(default=Decimal("0"), sa_column=Column(
        "payment_tolerance", DecimalText(), nullable=False))
    default_language: str = Field(default="ko", max_length=8)
    # The shop's origin (scheme://host[:port]): the only page allowed to frame the checkout.
    website: Optional[str] = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "created_at", UTCDateTime(), nullable=False))
    archived: bool = Field(default=False)
    # The city's standing: active, suspended (no new invoices) or closed; the merchant sees the reason.
    standing: str = Field(default="active", max_length=12)
    standing_reason: str = Field(default="", max_length=500)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=24)
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False, index=True))
    label: str = Field(default="", max_length=120)
    # SHA-256 of the random token: the token has 256 bits of entropy, so a fast hash is
    # enough and lets each request find its key by an index lookup.
    token_hash: str = Field(max_length=64, unique=True)
    permissions: str = Field(max_length=400)  # space-separated permission names
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "created_at", UTCDateTime(), nullable=False))
    revoked_at: Optional[datetime] = Field(default=None, sa_column=Column(
        "revoked_at", UTCDateTime(), nullable=True))

    @property
    def permission_set(self) -> frozenset[str]:
        return frozenset(self.permissions.split())
