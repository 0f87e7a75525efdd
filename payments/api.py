"""The Greenfield-compatible merchant API (a subset of BTCPay Server's, see the brief).

Thin edge: parse input, call one service method, map domain errors to HTTP.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, g, jsonify, request

from merchants.api_auth import api_error, require_permission
from merchants.service import CAN_CREATE_INVOICE, CAN_MODIFY_INVOICES, CAN_VIEW_INVOICES
from payments.invoice_json import invoice_json, payment_methods_json
from payments.invoice_request import (FieldError, InvalidRequest, parse_invoice_request,
                                      parse_metadata)
from payments.rates import RateUnavailable
from payments.service import (IdempotencyConflict, InvoiceFilter, InvoiceNotFound,
                              StatusChangeRefused, StoreNotFound, StoreSuspended,
                              request_fingerprint)
from ratelimits import invoice_limit, limiter
from untrusted import UntrustedInput, decode_json, whole_number

bp = Blueprint("api", __name__, url_prefix="/api/v1")
STATUSES = ("New", "Processing", "Settled", "Expired", "Invalid")
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold


class BadBody(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def gateway():
    return current_app.extensions["busanpay"]


def base_url() -> str:
    return gateway().settings.public_url or request.host_url.rstrip("/")


def unprocessable(errors: list[FieldError]):
    response = jsonify([e.as_json() for e in errors])
    response.status_code = 422
    return response


def read_json(optional: bool = False):
    """The body decoded with exact decimals (untrusted.decode_json: bounded depth, no NUL);
    None for an empty or `null` body when optional."""
    raw = request.get_data(cache=True)
    if not raw.strip() or raw.strip() == b"null":
        if optional:
            return None
        raise BadBody("missing-body", "A JSON request body is required")
    if request.mimetype != "application/json":
        raise BadBody("unsupported-content-type",
                      f"Send the body as application/json, not {request.mimetype or 'no content type'}")
    try:
        return decode_json(raw)
    except UntrustedInput as err:
        raise BadBody("invalid-json", err.message) from None


def _bad_body(err: BadBody):
    return api_error(400, err.code, err.message)


def _invalid(err: InvalidRequest):
    return unprocessable(err.errors)


def handle_body_errors(blueprint: Blueprint) -> None:
    """Malformed bodies → 400 `{code,message}`; invalid fields → 422 `[{path,message}]`.
    Shared by every API blueprint so all answer bad input the same way."""
    blueprint.register_error_handler(BadBody, _bad_body)
    blueprint.register_error_handler(InvalidRequest, _invalid)


handle_body_errors(bp)


@bp.errorhandler(InvoiceNotFound)
def _not_found(_err):
    return api_error(404, "invoice-not-found", "The invoice could not be found")


@bp.errorhandler(StoreNotFound)
def _store_not_found(_err):
    return api_error(404, "store-not-found", "The store could not be found")


@bp.errorhandler(StoreSuspended)
def _store_suspended(err: StoreSuspended):
    return api_error(403, "store-suspended",
                     f"The city has {err.standing} this store: it cannot create new invoices")


@bp.errorhandler(RateUnavailable)
def _no_rate(err: RateUnavailable):
    return api_error(503, "rate-unavailable", err.message)


@bp.errorhandler(IdempotencyConflict)
def _idem(err):
    return api_error(409, "idempotency-key-reused", str(err))


@bp.errorhandler(StatusChangeRefused)
def _refused(err):
    return unprocessable([FieldError("status", str(err))])


def _store_for(store_id: str | None) -> str:
    return store_id or g.api_key.store_id


# -- invoices ------------------------------------------------------------------------
@bp.post("/stores/<store_id>/invoices")
@limiter.limit(invoice_limit, error_message="Too many invoices for this API key: slow down")
@require_permission(CAN_CREATE_INVOICE)
def create_invoice(store_id: str):
    parsed = parse_invoice_request(read_json(), max_krw=gateway().settings.max_invoice_krw)
    key = (request.headers.get("Idempotency-Key") or "").strip() or None
    if key is not None and len(key) > 200:
        return unprocessable([FieldError("Idempotency-Key", "at most 200 characters")])
    root = base_url()
    invoice, replayed = gateway().invoices.create(
        g.api_key.store, parsed, idempotency_key=key,
        request_hash=request_fingerprint(request.get_data()),
        render=lambda inv: invoice_json(inv, root))
    if replayed is not None:
        response = jsonify(replayed)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    return jsonify(invoice_json(invoice, root))


def query_int(name: str, maximum: int, what: str | None = None) -> int | None:
    """ASCII digits only: `²` passes str.isdigit and then fails int()."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        return whole_number(raw, maximum=maximum)
    except UntrustedInput as err:
        raise InvalidRequest([FieldError(name, what or err.message)]) from None


def _timestamp(name: str) -> datetime | None:
    seconds = query_int(name, MAX_TIMESTAMP, "must be a unix timestamp in seconds")
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _count(name: str, default: int, maximum: int) -> int:
    value = query_int(name, maximum)
    return default if value is None else value


def canonical_status(word: str, allowed=STATUSES) -> str:
    for status in allowed:
        if status.lower() == word.strip().lower():
            return status
    raise InvalidRequest([FieldError("status", f"unknown status {word!r}: use one of {', '.join(allowed)}")])


@bp.get("/stores/<store_id>/invoices")
@require_permission(CAN_VIEW_INVOICES)
def list_invoices(store_id: str):
    statuses = tuple(canonical_status(s) for s in request.args.getlist("status") if s.strip())
    flt = InvoiceFilter(
        statuses=statuses,
        order_ids=tuple(request.args.getlist("orderId")),
        start=_timestamp("startDate"), end=_timestamp("endDate"),
        skip=_count("skip", 0, 10**9), take=_count("take", 50, 1000),
        include_archived=request.args.get("includeArchived", "").lower() == "true",
        text=(request.args.get("textSearch") or "")[:200] or None)
    root = base_url()
    invoices = gateway().invoices.list(store_id, flt)
    if not _include_payment_methods():
        return jsonify([invoice_json(i, root) for i in invoices])
    payments = gateway().invoices.payments_of([i.id for i in invoices])
    name = gateway().invoices.store_name(store_id)
    from lightning.greenfield import methods_for_list

    lightning = methods_for_list(gateway(), invoices, payments, gateway().clock())
    return jsonify([invoice_json(i, root, _with_lightning(
        payment_methods_json(i, payments[i.id], name), lightning.get(i.id)))
        for i in invoices])


def _with_lightning(methods: list[dict], btc_ln: dict | None) -> list[dict]:
    return methods if btc_ln is None else [*methods, btc_ln]


def _methods_of_one(invoice, payments, store) -> list[dict]:
    """BTC-CHAIN, and BTC-LN while Lightning is on (lightning/greenfield.py)."""
    from lightning.greenfield import method_for

    return _with_lightning(payment_methods_json(invoice, payments, store.name),
                           method_for(gateway(), invoice, payments))


def _include_payment_methods() -> bool:
    return request.args.get("includePaymentMethods", "").strip().lower() == "true"


@bp.get("/stores/<store_id>/invoices/<invoice_id>")
@bp.get("/invoices/<invoice_id>", defaults={"store_id": None})
@require_permission(CAN_VIEW_INVOICES)
def get_invoice(invoice_id: str, store_id: str | None):
    if _include_payment_methods():
        invoice, payments, store = gateway().invoices.get_with_payments(
            invoice_id, _store_for(store_id))
        return jsonify(invoice_json(invoice, base_url(),
                                    _methods_of_one(invoice, payments, store)))
    invoice = gateway().invoices.get(invoice_id, _store_for(store_id))
    return jsonify(invoice_json(invoice, base_url()))


@bp.put("/stores/<store_id>/invoices/<invoice_id>")
@bp.put("/invoices/<invoice_id>", defaults={"store_id": None})
@require_permission(CAN_MODIFY_INVOICES)
def update_invoice(invoice_id: str, store_id: str | None):
    body = read_json()
    errors: list[FieldError] = []
    metadata = parse_metadata(body.get("metadata") if isinstance(body, dict) else None, errors,
                              required=True)
    if errors:
        raise InvalidRequest(errors)
    invoice = gateway().invoices.update_metadata(_store_for(store_id), invoice_id, metadata)
    return jsonify(invoice_json(invoice, base_url()))


@bp.delete("/stores/<store_id>/invoices/<invoice_id>")
@bp.delete("/invoices/<invoice_id>", defaults={"store_id": None})
@require_permission(CAN_MODIFY_INVOICES)
def archive_invoice(invoice_id: str, store_id: str | None):
    gateway().invoices.set_archived(_store_for(store_id), invoice_id, True)
    return Response(status=200)


@bp.post("/stores/<store_id>/invoices/<invoice_id>/unarchive")
@bp.post("/invoices/<invoice_id>/unarchive", defaults={"store_id": None})
@require_permission(CAN_MODIFY_INVOICES)
def unarchive_invoice(invoice_id: str, store_id: str | None):
    read_json(optional=True)
    invoice = gateway().invoices.set_archived(_store_for(store_id), invoice_id, False)
    return jsonify(invoice_json(invoice, base_url()))


@bp.get("/stores/<store_id>/invoices/<invoice_id>/payment-methods")
@bp.get("/invoices/<invoice_id>/payment-methods", defaults={"store_id": None})
@require_permission(CAN_VIEW_INVOICES)
def payment_methods(invoice_id: str, store_id: str | None):
    invoice, payments, store = gateway().invoices.get_with_payments(invoice_id, _store_for(store_id))
    return jsonify(_methods_of_one(invoice, payments, store))


@bp.post("/stores/<store_id>/invoices/<invoice_id>/status")
@bp.post("/invoices/<invoice_id>/status", defaults={"store_id": None})
@require_permission(CAN_MODIFY_INVOICES)
def mark_status(invoice_id: str, store_id: str | None):
    body = read_json(optional=True)
    word = body.get("status") if isinstance(body, dict) else None
    if not isinstance(word, str) or not word.strip():
        raise InvalidRequest([FieldError("status", "status is required: Settled or Invalid")])
    status = canonical_status(word, ("Settled", "Invalid"))
    invoice = gateway().invoices.mark_status(_store_for(store_id), invoice_id, status)
    return jsonify(invoice_json(invoice, base_url()))
