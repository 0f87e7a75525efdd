"""Webhook tables: the merchant's endpoints, one delivery per (webhook, outbox event,
redelivery generation), every attempt of a delivery, and the fan-out cursor over the outbox.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import (BigInteger, Column, ForeignKey, Index, String, Text,
                        UniqueConstraint)
from sqlmodel import Field, SQLModel

from database import BigIntPK, UTCDateTime, utc_now


def _utc(name: str, nullable: bool = False) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


class Webhook(SQLModel, table=True):
    """A merchant's endpoint. `secret` is the shared HMAC key for `BTCPay-Sig`: it must be
    readable to sign, so it is stored as is (not a password); it is never logged or shown
    after creation."""

    __tablename__ = "webhook"
    __table_args__ = (Index("ix_webhook_store", "store_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=32)
    store_id: str = Field(sa_column=Column("store_id", String(48), ForeignKey("store.id"),
                                           nullable=False))
    url: str = Field(sa_column=Column("url", Text(), nullable=False))
    secret: str = Field(max_length=200, repr=False)
    enabled: bool = Field(default=True)
    automatic_redelivery: bool = Field(default=True)
    everything: bool = Field(default=True)
    events: str = Field(default="[]", sa_column=Column("events", Text(), nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))
    # Per-webhook work lease (wall-clock): whoever holds it is the only sender for this
    # webhook, so one endpoint gets one request at a time, in order.
    lease_owner: Optional[str] = Field(default=None, max_length=80)
    lease_until: Optional[datetime] = Field(default=None, sa_column=_utc("lease_until", True))


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook. `generation` 0 is the fan-out from the outbox; each manual
    redelivery takes the next number, so the unique key makes the fan-out happen once."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", "generation", name="uq_webhook_delivery_once"),
        Index("ix_webhook_delivery_due", "webhook_id", "next_attempt_at"),
        Index("ix_webhook_delivery_created", "webhook_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    webhook_id: str = Field(sa_column=Column(
        "webhook_id", String(32), ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False))
    event_id: int = Field(sa_column=Column("event_id", BigInteger(),
                                           ForeignKey("invoice_event.id"), nullable=False,
                                           index=True))
    generation: int = Field(default=0)
    original_delivery_id: Optional[str] = Field(default=None, max_length=32)
    event_type: str = Field(max_length=40)
    body: str = Field(sa_column=Column("body", Text(), nullable=False))  # exactly as sent
    status: str = Field(default="Pending", max_length=16)  # Pending|HttpSuccess|HttpError|Failed
    http_code: Optional[int] = Field(default=None)
    error_message: Optional[str] = Field(default=None, max_length=300)
    attempts: int = Field(default=0)
    # When the next attempt is due (gateway clock); None: nothing more will be sent.
    next_attempt_at: Optional[datetime] = Field(default=None,
                                                sa_column=_utc("next_attempt_at", True))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_utc("created_at"))
    last_attempt_at: Optional[datetime] = Field(default=None,
                                                sa_column=_utc("last_attempt_at", True))


class WebhookDeliveryAttempt(SQLModel, table=True):
    """Every POST made (or begun): written before sending, completed after."""

    __tablename__ = "webhook_delivery_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "number", name="uq_webhook_attempt_number"),)

    id: Optional[int] = Field(default=None, sa_column=Column("id", BigIntPK, primary_key=True,
                                                             autoincrement=True))
    delivery_id: str = Field(sa_column=Column(
        "delivery_id", String(32), ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
        nullable=False))
    number: int = Field()
    worker: str = Field(max_length=80)
    started_at: datetime = Field(sa_column=_utc("started_at"))
    finished_at: Optional[datetime] = Field(default=None, sa_column=_utc("finished_at", True))
    outcome: str = Field(default="Sending", max_length=16)  # Sending|HttpSuccess|HttpError|Failed
    http_code: Optional[int] = Field(default=None)
    error_message: Optional[str] = Field(default=None, max_length=300)
    duration_ms: Optional[int] = Field(default=None)


class WebhookFanout(SQLModel, table=True):
    """Outbox events above the cursor that have been fanned out (kept only for a few minutes,
    until the cursor passes them)."""

    __tablename__ = "webhook_fanout"

    event_id: int = Field(sa_column=Column("event_id", BigInteger(), primary_key=True,
                                           autoincrement=False))
    processed_at: datetime = Field(sa_column=_utc("processed_at"))


class WebhookCursor(SQLModel, table=True):
    """Every outbox event with an id at or below `event_id` has been fanned out."""

    __tablename__ = "webhook_cursor"

    name: str = Field(primary_key=True, max_length=32)
    event_id: int = Field(default=0, sa_column=Column("event_id", BigInteger(), nullable=False,
                                                      default=0))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_utc("updated_at"))
