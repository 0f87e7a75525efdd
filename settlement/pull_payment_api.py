"""Greenfield refunds a shop opens: pull payments and invoice refunds (thin edge over
settlement.pull_payments). Every pull payment is one refund claim; `viewLink` is the claim
page where the payer gives an address, with the claim's key after '#' in the creating answer
only (later answers omit it); the city treasury approves (never automatically).

POST /api/v1/stores/{storeId}/pull-payments, GET the same (list),
GET /api/v1/pull-payments/{pullPaymentId}, GET …/payouts,
POST /api/v1/invoices/{invoiceId}/refund (and under /stores/{storeId}).
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from flask import Blueprint, current_app, g, jsonify, request, url_for

from merchants.api_auth import api_error, require_permission
from merchants.service import CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, CAN_VIEW_PULL_PAYMENTS
from payments.api import base_url, handle_body_errors, read_json
from payments.invoice_request import FieldError, InvalidRequest
from payments.quoting import QuoteError, parse_price
from payments.rates import RateUnavailable
from settlement.pull_payments import (VARIANTS, RefundAsk, RefundRefused, open_refund,
                                      pull_payment, store_pull_payments)

bp = Blueprint("pull_payments", __name__, url_prefix="/api/v1")
handle_body_errors(bp)
PAYOUT_METHODS = ("BTC", "BTC-CHAIN", "BTC_CHAIN", "BTC-ONCHAIN", "BTC_ONCHAIN")
PAYOUT_STATES = {"open": "AwaitingApproval", "submitted": "AwaitingApproval",
                 "approved": "AwaitingPayment", "sent": "Completed", "credited": "Cancelled"}


def _gateway():
    return current_app.extensions["busanpay"]


@bp.errorhandler(RefundRefused)
def _refused(err: RefundRefused):
    response = jsonify([{"path": err.path, "message": err.message}])
    response.status_code = 422
    return response


@bp.errorhandler(RateUnavailable)
def _no_rate(err: RateUnavailable):
    return api_error(503, "rate-unavailable", err.message)


@bp.errorhandler(LookupError)
def _not_found(_err):
    return api_error(404, "pullpayment-not-found", "The pull payment could not be found")


# -- JSON -------------------------------------------------------------------------------
def view_link(pull, key: str | None = None) -> str:
    """The claim page; with the key after '#' (never sent to a server) only in the answer
    that created it: the gateway keeps the key's hash, not the key."""
    link = base_url() + url_for("refunds.claim_page", claim_id=pull.claim_id)
    return link + "#key=" + key if key else link


def pull_payment_json(pull, key: str | None = None) -> dict:
    return {"id": pull.id, "name": pull.name, "description": pull.description,
            "currency": pull.currency, "amount": pull.amount_text, "period": None,
            "BOLT11Expiration": "0", "autoApproveClaims": False, "archived": pull.archived,
            "viewLink": view_link(pull, key)}


def payouts_json(pull, claim) -> list[dict]:
    """The claim as Greenfield payouts: none until the payer gave an address."""
    if claim.address is None:
        return []
    from payments.bip21 import format_btc

    return [{"id": claim.id, "revision": 0, "pullPaymentId": pull.id,
             "date": _iso(claim.created_at), "destination": claim.address,
             "originalCurrency": pull.currency, "originalAmount": pull.amount_text,
             "payoutCurrency": "BTC", "payoutAmount": format_btc(claim.amount_sats),
             "payoutMethodId": "BTC-CHAIN", "state": PAYOUT_STATES[claim.status],
             "paymentProof": {"proofType": "PayoutTransactionOnChainBlob",
                              "transactionId": claim.txid} if claim.txid else None,
             "metadata": {}}]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- parsing ----------------------------------------------------------------------------
def _text(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidRequest([FieldError(name, f"must be text of at most {limit} characters")])
    return value


def _payout_methods(body: dict) -> None:
    for name in ("paymentMethods", "payoutMethods"):
        methods = body.get(name)
        if methods is None:
            continue
        if not isinstance(methods, list) or not methods or any(
                not isinstance(m, str) or m.strip().upper() not in PAYOUT_METHODS for m in methods):
            raise InvalidRequest([FieldError(name, "refunds are paid on-chain: use BTC-CHAIN")])


def _custom_amount(amount, currency, path: str) -> tuple[Decimal, str]:
    try:
        price = parse_price(amount, currency, max_krw=_gateway().settings.max_invoice_krw)
    except QuoteError as err:
        field = {"amount": path, "currency": path.replace("Amount", "Currency").replace(
            "amount", "currency")}.get(err.path, err.path)
        raise InvalidRequest([FieldError(field, err.message)]) from None
    return Decimal(price.amount_text), price.currency


def _current_rate() -> Decimal:
    return _gateway().rates.current().krw_per_btc  # RateUnavailable → 503


def _open(store_id: str, ask: RefundAsk, invoice):
    gateway = _gateway()
    rate = _current_rate() if ask.variant not in ("RateThen", "OverpaidAmount") else None
    with gateway.db.write() as session:
        pull, key = open_refund(session, store_id, ask, invoice, rate, gateway.clock())
        session.expunge(pull)
    return jsonify(pull_payment_json(pull, key))


# -- routes -----------------------------------------------------------------------------
@bp.post("/stores/<store_id>/pull-payments")
@require_permission(CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, foreign_store=404)
def create_pull_payment(store_id: str):
    body = read_json()
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("", "the body must be a JSON object")])
    if body.get("autoApproveClaims") is True:
        raise InvalidRequest([FieldError("autoApproveClaims", "the city treasury approves "
                                         "every refund: send false or leave it out")])
    _payout_methods(body)
    amount, currency = _custom_amount(body.get("amount"), body.get("currency"), "amount")
    ask = RefundAsk("Custom", amount, currency, name=_text(body, "name", 200),
                    description=_text(body, "description", 2000))
    return _open(store_id, ask, None)


@bp.get("/stores/<store_id>/pull-payments")
@require_permission(CAN_VIEW_PULL_PAYMENTS, foreign_store=404)
def list_pull_payments(store_id: str):
    archived = request.args.get("includeArchived", "").strip().lower() == "true"
    with _gateway().db.read() as session:
        rows = store_pull_payments(session, store_id, archived)
        return jsonify([pull_payment_json(pull) for pull, _claim in rows])


@bp.get("/pull-payments/<pull_payment_id>")
@require_permission(CAN_VIEW_PULL_PAYMENTS)
def get_pull_payment(pull_payment_id: str):
    with _gateway().db.read() as session:
        pull, _claim = pull_payment(session, pull_payment_id, g.api_key.store_id)
        return jsonify(pull_payment_json(pull))


@bp.get("/pull-payments/<pull_payment_id>/payouts")
@require_permission(CAN_VIEW_PULL_PAYMENTS)
def get_payouts(pull_payment_id: str):
    with _gateway().db.read() as session:
        pull, claim = pull_payment(session, pull_payment_id, g.api_key.store_id)
        return jsonify(payouts_json(pull, claim))


@bp.post("/stores/<store_id>/invoices/<invoice_id>/refund")
@bp.post("/invoices/<invoice_id>/refund", defaults={"store_id": None})
@require_permission(CAN_CREATE_NONAPPROVED_PULL_PAYMENTS)
def refund_invoice(invoice_id: str, store_id: str):
    from payments.service import InvoiceNotFound

    body = read_json()
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("", "the body must be a JSON object")])
    variant = body.get("refundVariant")
    matched = next((v for v in VARIANTS if isinstance(variant, str)
                    and v.lower() == variant.strip().lower()), None)
    if matched is None:
        raise InvalidRequest([FieldError("refundVariant", f"use one of {', '.join(VARIANTS)}")])
    _payout_methods({"payoutMethods": body.get("payoutMethods"),
                     "paymentMethods": [body["paymentMethod"]] if body.get("paymentMethod")
                     else None})
    subtract = body.get("subtractPercentage")
    try:
        subtract = Decimal(str(subtract)) if subtract not in (None, "") else Decimal(0)
        if not (0 <= subtract < 100):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        raise InvalidRequest([FieldError("subtractPercentage",
                                         "a percentage from 0 to less than 100")]) from None
    amount, currency = (Decimal(0), "KRW")
    if matched == "Custom":
        amount, currency = _custom_amount(body.get("customAmount"), body.get("customCurrency"),
                                          "customAmount")
    ask = RefundAsk(matched, amount, currency, subtract_percentage=subtract,
                    name=_text(body, "name", 200), description=_text(body, "description", 2000))
    try:
        invoice = _gateway().invoices.get(invoice_id, store_id)
    except InvoiceNotFound:
        return api_error(404, "invoice-not-found", "The invoice could not be found")
    return _open(store_id, ask, invoice)
