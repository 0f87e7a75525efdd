"""The city's open 0-conf commitment, read when an invoice that could settle at 0
confirmations is created.

A 0-conf payment that is double-spent stays credited and the city books the loss (the
money boundary), so a merchant paying its own HighSpeed invoices and double-spending them
could make the city lose any number of per-invoice limits. The city's exposure cap bounds
that: an invoice whose 0-conf credit would take the commitment past the cap is created
needing one confirmation instead. Committed: 0-conf-eligible invoices that can still be
paid (New, not expired, on the chain's status: a merchant's mark changes nothing), plus
those counted paid while a payment is still unconfirmed (what the dashboard shows as open
exposure; a settled Lightning payment is final, never exposure). Checked before the invoice is written, so parallel creations can pass the cap
by at most one per-invoice limit each.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from payments.models import METHOD_CHAIN, Invoice, Payment

UNCONFIRMED_WINDOW = timedelta(days=14)  # nodes drop an unconfirmed transaction after two weeks


def committed_krw(session, now: datetime) -> int:
    """Won of 0-conf-eligible invoices the city could still lose to a double spend."""
    money_status = func.coalesce(Invoice.chain_status, Invoice.status)
    unconfirmed, confirmed = aliased(Payment), aliased(Payment)
    paid_unconfirmed = and_(
        money_status.in_(("Processing", "Settled")),
        exists().where(unconfirmed.invoice_id == Invoice.id, unconfirmed.state == "seen",
                       unconfirmed.block_height.is_(None), unconfirmed.method == METHOD_CHAIN,
                       unconfirmed.seen_at >= now - UNCONFIRMED_WINDOW),
        ~exists().where(confirmed.invoice_id == Invoice.id, confirmed.state == "seen",
                        confirmed.block_height.isnot(None)))
    query = select(func.coalesce(func.sum(Invoice.amount_krw), 0)).where(
        Invoice.speed_policy == "HighSpeed", Invoice.zero_conf_limit_krw > 0,
        Invoice.amount_krw.isnot(None), Invoice.amount_krw <= Invoice.zero_conf_limit_krw,
        or_(and_(money_status == "New", Invoice.expires_at > now), paid_unconfirmed))
    return int(session.execute(query).scalar_one())
