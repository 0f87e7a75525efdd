"""Greenfield JSON shapes for invoices, payment methods and webhook event payloads."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import ROUND_FLOOR

from payments.bip21 import format_btc, payment_uri
from payments.models import METHOD_CHAIN, Invoice, Payment
from payments.quoting import krw_value


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def invoice_type(invoice: Invoice) -> str:
    return "TopUp" if invoice.amount_krw is None and invoice.due_sats == 0 else "Standard"


def available_marks(invoice: Invoice) -> list[str]:
    """Statuses a person may mark the invoice as (Greenfield's availableStatusesForManualMarking)."""
    if invoice.status in ("New", "Processing", "Expired"):
        return ["Settled", "Invalid"]
    if invoice.additional_status == "Marked":
        return ["Invalid"] if invoice.status == "Settled" else ["Settled"]
    return ["Settled"] if invoice.status == "Invalid" else []


def paid_amount(invoice: Invoice) -> str:
    """Greenfield's `paidAmount`: what the payer paid so far, in the invoice's currency.
    KRW is the counted satoshis at the invoice's locked rate, rounded down to whole won
    (what the payment is worth to the merchant; a display figure, not a ledger amount)."""
    sats = invoice.paid_sats or 0
    if invoice.currency == "BTC":
        return format_btc(sats)
    if invoice.currency == "SATS":
        return str(sats)
    return str(int(krw_value(sats, invoice.rate).to_integral_value(ROUND_FLOOR)))


def invoice_json(invoice: Invoice, base_url: str, payment_methods: list[dict] | None = None) -> dict:
    """The invoice; with `payment_methods` (includePaymentMethods=true) they are added."""
    checkout = json.loads(invoice.checkout_json)
    checkout.setdefault("lazyPaymentMethods", False)  # addresses are made at creation
    amount = "0" if invoice_type(invoice) == "TopUp" else invoice.amount_text
    body = {
        "id": invoice.id,
        "storeId": invoice.store_id,
        "amount": amount,
        "paidAmount": paid_amount(invoice),
        "currency": invoice.currency,
        "type": invoice_type(invoice),
        "checkoutLink": f"{base_url}/i/{invoice.id}",
        "createdTime": unix(invoice.created_at),
        "expirationTime": unix(invoice.expires_at),
        "monitoringExpiration": unix(invoice.monitoring_expires_at),
        "status": invoice.status,
        "additionalStatus": invoice.additional_status,
        "availableStatusesForManualMarking": available_marks(invoice),
        "archived": invoice.archived,
        "metadata": json.loads(invoice.metadata_json),
        "checkout": checkout,
        "receipt": {"enabled": True, "showQR": True, "showPayments": True},
        # Beyond Greenfield: the open incident (chain/watcher.py opens and closes it).
        "incident": None if invoice.incident is None else {
            "kind": invoice.incident,
            "since": unix(invoice.incident_since or invoice.updated_at)},
    }
    if payment_methods is not None:
        body["paymentMethods"] = payment_methods
    return body


def payment_status(payment: Payment, invoice: Invoice) -> str:
    if payment.state != "seen":
        return "Invalid"
    return "Settled" if invoice.status == "Settled" else "Processing"


def payment_methods_json(invoice: Invoice, payments: list[Payment], store_name: str) -> list[dict]:
    """BTC-CHAIN with its own payments; `totalPaid` and `due` count every method's (a
    Lightning payment is listed by the BTC-LN method, added beside it by the checkout edge)."""
    counted = sum(p.value_sats for p in payments if p.state == "seen")
    payments = [p for p in payments if p.method == METHOD_CHAIN]
    chain_paid = sum(p.value_sats for p in payments if p.state == "seen")
    return [{
        # BTCPay 1.x's `paymentMethod`, `cryptoCode` and `networkFee` are left out: the
        # official PHP client (and so the WooCommerce plugin) falls back to these 2.x names.
        "paymentMethodId": "BTC-CHAIN",
        "currency": "BTC",
        "destination": invoice.address,
        "paymentLink": payment_uri(invoice.address, invoice.due_sats or None, store_name),
        "rate": format(invoice.rate, "f"),
        "paymentMethodPaid": format_btc(chain_paid),
        "totalPaid": format_btc(counted),
        "due": signed_btc(invoice.due_sats - counted),
        "amount": format_btc(invoice.due_sats),
        "paymentMethodFee": "0",
        "activated": True,
        "payments": [{
            "id": f"{p.txid}-{p.vout}",
            "receivedDate": unix(p.seen_at),
            "value": format_btc(p.value_sats),
            "fee": "0",
            "status": payment_status(p, invoice),
            "destination": p.address,
        } for p in payments],
        "additionalData": {
            "keyIndex": invoice.key_index,
            "rateSource": invoice.rate_source,
            "rateFetchedTime": unix(invoice.rate_fetched_at),
        },
    }]


def signed_btc(sats: int) -> str:
    return format_btc(sats) if sats >= 0 else "-" + format_btc(-sats)


def event_payload(invoice: Invoice, event_type: str, timestamp: datetime, **extra) -> dict:
    """The Greenfield webhook body without delivery fields (added at delivery time)."""
    body = {
        "type": event_type,
        "timestamp": unix(timestamp),
        "storeId": invoice.store_id,
        "invoiceId": invoice.id,
        "metadata": json.loads(invoice.metadata_json),
    }
    body.update(extra)
    return body


def outbox_row(invoice: Invoice, event_type: str, moment: datetime, dedupe: str | None = None,
               **extra) -> dict:
    """An `invoice_event` row: the webhook body and its insert-once key
    (``<invoice id>:<dedupe or event type>``)."""
    return {"dedupe_key": f"{invoice.id}:{dedupe or event_type}", "invoice_id": invoice.id,
            "store_id": invoice.store_id, "event_type": event_type,
            "payload_json": json.dumps(event_payload(invoice, event_type, moment, **extra)),
            "created_at": moment}
