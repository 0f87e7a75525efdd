"""Stripe's webhook endpoint: `POST /stripe/webhook`.

Verified by the stripe library (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`,
300 s tolerance) against STRIPE_WEBHOOK_SECRET; a bad signature is 400 and changes
nothing. Each event id is applied once (the `stripe_event` row is inserted in the same
transaction as the change it causes).

- `transfer.created`: the transfer exists, so the payout is `sent` (this also repairs a
  payout whose create call's answer was lost).
- `transfer.reversed`: the money came back: merchant payable credited again, `returned`.
- `payout.paid` (on the connected account): the merchant's bank has it: `paid`.
- `payout.failed`: the transfer is reversed (so the won really is back with the city),
  then the money returns to the merchant's payable and goes out in a later daily run;
  flagged for a person. If the reversal fails nothing moves and a person must act.
"""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from settlement.ledger import insert_new
from settlement.config import settlement_config
from settlement.models import MerchantPayoutAccount, Payout, StripeEventSeen
from settlement.payouts import mark_paid, mark_returned, mark_sent, rails_for

log = logging.getLogger(__name__)
bp = Blueprint("stripe_webhooks", __name__)
TOLERANCE = 300
HANDLED = ("transfer.created", "transfer.updated", "transfer.reversed", "payout.paid",
           "payout.failed")


def _gateway():
    return current_app.extensions["busanpay"]


@bp.post("/stripe/webhook")
def stripe_webhook():
    import stripe

    gateway = _gateway()
    secret = settlement_config(gateway).stripe_webhook_secret
    if not secret:
        return jsonify({"error": "STRIPE_WEBHOOK_SECRET is not set"}), 503
    payload = request.get_data()
    try:
        event = stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature", ""),
                                               secret, tolerance=TOLERANCE)
    except (ValueError, stripe.SignatureVerificationError) as err:
        return jsonify({"error": f"invalid webhook: {err}"}), 400
    body = json.loads(payload)
    result = handle_event(gateway, body)
    return jsonify({"received": True, **result})


def _find_payouts(session, event: dict) -> list[Payout]:
    obj = event["data"]["object"]
    metadata = obj.get("metadata") or {}
    if metadata.get("payout_id"):
        payout = session.get(Payout, metadata["payout_id"])
        return [payout] if payout else []
    if obj.get("object") == "transfer":
        if obj.get("transfer_group"):
            payout = session.get(Payout, obj["transfer_group"])
            if payout:
                return [payout]
        return list(session.execute(select(Payout).where(Payout.external_id == obj["id"])).scalars())
    # a connected account's payout: match our sent payouts to that account
    account = event.get("account")
    if not account:
        return []
    store_ids = list(session.execute(select(MerchantPayoutAccount.store_id).where(
        MerchantPayoutAccount.stripe_account_id == account)).scalars())
    sent = list(session.execute(select(Payout).where(
        Payout.store_id.in_(store_ids), Payout.rail == "stripe",
        Payout.status.in_(("sent",) if event["type"] == "payout.paid" else ("sent", "paid")))
        .order_by(Payout.day)).scalars())
    amount = obj.get("amount")
    exact = [p for p in sent if p.amount_krw == amount]
    if exact:
        return exact[:1]
    if sent and sum(p.amount_krw for p in sent) == amount:
        return sent
    return []


def handle_event(gateway, event: dict) -> dict:
    """Apply one verified event once; returns what happened (for the response and logs)."""
    kind = event.get("type", "")
    now = gateway.clock()
    if kind not in HANDLED:
        return {"ignored": kind}
    with gateway.db.read() as session:
        if session.get(StripeEventSeen, event["id"]) is not None:
            return {"duplicate": True}
    reverse_first: list[Payout] = []
    with gateway.db.write() as session:
        payouts = _find_payouts(session, event)
        if kind == "payout.failed":
            reverse_first = [p for p in payouts if p.status in ("sent", "paid") and p.rail == "stripe"]
        else:
            if not insert_new(session, StripeEventSeen.__table__, {
                    "id": event["id"], "type": kind,
                    "payout_id": payouts[0].id if payouts else None,
                    "note": "" if payouts else "unmatched", "received_at": now},
                    conflict=["id"]):
                return {"duplicate": True}
            obj = event["data"]["object"]
            for payout in payouts:
                if kind in ("transfer.created", "transfer.updated"):
                    mark_sent(session, payout.id, obj["id"], now)
                elif kind == "transfer.reversed":
                    mark_returned(session, payout.id, now, status="returned",
                                  reason=f"Stripe transfer {obj['id']} reversed")
                elif kind == "payout.paid":
                    mark_paid(session, payout.id, now)
            return {"payouts": [p.id for p in payouts]}
    # payout.failed: first pull the money back from the connected account (outside any
    # transaction: it is an HTTP call), then record once.
    rail = rails_for(gateway).get("stripe")
    reversed_ok: dict[str, str] = {}
    for payout in reverse_first:
        ok, detail = rail.reverse(payout) if rail else (False, "the stripe rail is not configured")
        reversed_ok[payout.id] = detail if ok else ""
        if not ok:
            log.error("payout %s failed at the bank and its transfer could not be reversed: %s",
                      payout.id, detail)
    with gateway.db.write() as session:
        if not insert_new(session, StripeEventSeen.__table__, {
                "id": event["id"], "type": kind,
                "payout_id": payouts[0].id if payouts else None,
                "note": "" if payouts else "unmatched", "received_at": now}, conflict=["id"]):
            return {"duplicate": True}
        failure = event["data"]["object"].get("failure_message") or \
            event["data"]["object"].get("failure_code") or "payout failed"
        for payout in payouts:
            if reversed_ok.get(payout.id):
                mark_returned(session, payout.id, now, status="failed",
                              reason=f"Stripe payout failed: {failure}; transfer reversed "
                              f"({reversed_ok[payout.id]})")
            elif payout.id in reversed_ok:
                row = session.get(Payout, payout.id)
                row.needs_attention = True
                row.last_error = f"Stripe payout failed: {failure}; reversal failed: a person must act"
                session.add(row)
        return {"payouts": [p.id for p in payouts]}
