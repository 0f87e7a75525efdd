"""The BTC-LN payment method of an invoice as Greenfield shows it, beside BTC-CHAIN.

Listed for every invoice while Lightning is on (`gateway.lightning`): `activated` is true
while the invoice has a BOLT11 that can be paid now; otherwise `additionalData` says why
not (a code of `lightning.invoices.REASONS` and its words), so a shop sees that the invoice
is on-chain only. `destination` is the current BOLT11, or the last one the invoice had (the
one a listed payment most likely paid); `payments[]` are the invoice's Lightning payments,
each with its payment hash as id (as the webhooks name them). `totalPaid` and `due` count
every method's payments, as BTC-CHAIN's do.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select

from lightning.backend import MSAT_PER_SAT
from lightning.invoices import REASONS, LightningOffer, current_lightning
from lightning.listener import payment_json
from lightning.models import InvoiceLightning
from payments.bip21 import format_btc
from payments.invoice_json import signed_btc, unix
from payments.models import METHOD_LIGHTNING, Invoice, Payment


def btc_ln_json(invoice: Invoice, payments: list[Payment], current: LightningOffer | None,
                last_bolt11: str | None) -> dict:
    """The BTC-LN method: `current` is the invoice's offer now (None: none stored yet),
    `last_bolt11` the newest BOLT11 it ever had."""
    counted = sum(p.value_sats for p in payments if p.state == "seen")
    mine = [p for p in payments if p.method == METHOD_LIGHTNING]
    activated = current is not None and current.available
    bolt11 = current.bolt11 if activated else last_bolt11
    return {
        "paymentMethodId": METHOD_LIGHTNING,
        "currency": "BTC",
        "destination": bolt11 or "",
        "paymentLink": f"lightning:{bolt11}" if bolt11 else None,
        "rate": format(invoice.rate, "f"),
        "paymentMethodPaid": format_btc(sum(p.value_sats for p in mine if p.state == "seen")),
        "totalPaid": format_btc(counted),
        "due": signed_btc(invoice.due_sats - counted),
        "amount": format_btc(invoice.due_sats),
        "paymentMethodFee": "0",
        "activated": activated,
        "payments": [{**payment_json(p.txid, p.value_sats, p.seen_at),
                      **({} if p.state == "seen" else {"status": "Invalid"})} for p in mine],
        "additionalData": {
            "paymentHash": current.payment_hash if activated else None,
            "expirationTime": unix(current.expires_at) if activated else None,
            "unavailable": None if activated or current is None else current.unavailable,
            "reason": None if activated or current is None else current.reason_text,
        },
    }


def _history(db, invoice_ids: list[str]) -> dict[str, list[LightningOffer]]:
    found: dict[str, list[LightningOffer]] = {i: [] for i in invoice_ids}
    if not invoice_ids:
        return found
    with db.read() as s:
        rows = s.execute(select(InvoiceLightning)
                         .where(InvoiceLightning.invoice_id.in_(invoice_ids))
                         .order_by(InvoiceLightning.id)).scalars()
        for row in rows:
            found[row.invoice_id].append(LightningOffer.of(row))
    return found


def _last_bolt11(history: list[LightningOffer]) -> str | None:
    return next((o.bolt11 for o in reversed(history) if o.bolt11), None)


def method_for(gateway, invoice: Invoice, payments: list[Payment]) -> dict | None:
    """BTC-LN of one invoice, with its current offer (a new BOLT11 when the remainder
    changed, see `LightningOffers.current`); None when Lightning is off."""
    current = current_lightning(gateway, invoice.id)
    if current is None:
        return None
    history = _history(gateway.db, [invoice.id])[invoice.id]
    return btc_ln_json(invoice, payments, current, _last_bolt11(history))


def methods_for_list(gateway, invoices: list[Invoice], payments: dict[str, list[Payment]],
                     now: datetime) -> dict[str, dict]:
    """BTC-LN of many invoices from the stored offers only (a list never waits for the node):
    the active BOLT11 counts while the invoice is New and neither has expired."""
    if gateway.lightning is None:
        return {}
    histories = _history(gateway.db, [i.id for i in invoices])
    result = {}
    for invoice in invoices:
        history = histories[invoice.id]
        active = next((o for o in history if o.active), None)
        result[invoice.id] = btc_ln_json(invoice, payments.get(invoice.id, []),
                                         _stored_current(invoice, active, now),
                                         _last_bolt11(history))
    return result


def _stored_current(invoice: Invoice, active: LightningOffer | None,
                    now: datetime) -> LightningOffer | None:
    """The stored active offer as `LightningOffers.current` would judge it, without asking
    the node: payable while the invoice is New, unexpired and its BOLT11 asks for exactly the
    remainder; the reason when the invoice is past paying; None when only a new BOLT11 (made
    when the invoice itself is asked for) could tell."""
    if active is None or not active.available:
        return active
    if invoice.status != "New" or now >= invoice.expires_at:
        reason = "expired" if invoice.status in ("New", "Expired") else "not-due"
        return replace(active, bolt11=None, payment_hash=None, expires_at=None,
                       unavailable=reason, detail=REASONS[reason], active=False)
    remainder_msat = (invoice.due_sats - (invoice.paid_sats or 0)) * MSAT_PER_SAT
    if active.amount_msat != remainder_msat or active.expires_at is None \
            or now >= active.expires_at:
        return None
    return active
