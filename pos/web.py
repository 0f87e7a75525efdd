"""The POS web edge (``/pos``): pages for cashiers (and owners), a small JSON API for the
keypad app, receipts, and the PWA shell (manifest, service worker, offline page).

Live status is not here: the POS polls the invoice's public ``/i/<id>/status.json`` (strong
ETag, 304 while nothing changed) every second — every 250 ms while its QR carries a BOLT11,
so a Lightning payment shows "Paid" within a second of the node settling it — and asks
``/pos/invoices/<id>.json`` for the details only when the status's version changes.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from pathlib import Path

from babel.dates import format_date, format_datetime, format_time
from flask import (Blueprint, Response, abort, current_app, jsonify, render_template, request,
                   send_file, url_for)
from flask_babel import get_locale, gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError, generate_csrf

from accounts.service import audit
from accounts.web import require_roles
from payments.bip21 import format_btc
from payments.checkout import lightning_offer, page_state, paid_sats
from payments.invoice_request import InvalidRequest, parse_invoice_request
from payments.models import METHOD_CHAIN
from payments.quoting import krw_value
from payments.rates import RateUnavailable
from payments.unified import bolt11_for, qr_token, request_uri
from payments.service import (IdempotencyConflict, InvoiceNotFound, StatusChangeRefused,
                              StoreNotFound, StoreSuspended)
from pos import sales
from pos.qr_cache import QrCache
from ratelimits import invoice_limit, limiter
from untrusted import UntrustedInput, decode_json

bp = Blueprint("pos", __name__, url_prefix="/pos")

POS_ROLES = ("cashier", "owner")
STATIC_POS = Path(__file__).resolve().parent.parent / "static" / "pos"
# Our own scripts and styles only; QR images are ours; the manifest and worker are ours.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"
IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"


def _gateway():
    return current_app.extensions["busanpay"]


def _qr_cache() -> QrCache:
    cache = current_app.extensions.get("busanpay_pos_qr")
    if cache is None:
        cache = current_app.extensions.setdefault("busanpay_pos_qr", QrCache())
    return cache


def won(amount: int | None) -> str:
    return "" if amount is None else f"₩{amount:,}"


def _locale() -> str:
    return str(get_locale() or "ko")


def seoul_time(moment: datetime, fmt: str = "medium") -> str:
    return format_datetime(moment, fmt, tzinfo=sales.SEOUL, locale=_locale())


def seoul_clock(moment: datetime) -> str:
    return format_time(moment, "HH:mm", tzinfo=sales.SEOUL, locale=_locale())


def public_invoice_url(invoice_id: str) -> str:
    base = _gateway().settings.public_url
    if base:
        return base.rstrip("/") + url_for("checkout.invoice_page", invoice_id=invoice_id)
    return url_for("checkout.invoice_page", invoice_id=invoice_id, _external=True)


def _store_id() -> str:
    store_id = current_user.store_id
    if not store_id:
        abort(403)
    return store_id


# -- words for codes -------------------------------------------------------------------------
def charge_error_text(error: sales.ChargeError) -> str:
    texts = {
        "amount.required": _("Enter an amount."),
        "amount.not_number": _("The amount must be a number of won, like 15000."),
        "amount.not_whole": _("Won has no decimals: enter a whole number of won."),
        "amount.positive": _("The amount must be more than ₩0."),
        "amount.too_large": _("The amount is too large: at most %(max)s per sale.",
                              max=won(error.params.get("max"))),
        "tip.invalid": _("The tip must be a whole percentage from 0 to %(max)s.",
                         max=error.params.get("max")),
        "memo.not_text": _("The memo must be text."),
        "memo.too_long": _("The memo is too long: at most %(max)s characters.",
                           max=error.params.get("max")),
        "body.not_object": _("The request was not understood. Reload the page and try again."),
        "field.unknown": _("The request was not understood. Reload the page and try again."),
    }
    return texts.get(error.code, _("The request was not understood. Reload the page and try again."))


def exception_text(code: str | None) -> str:
    return {
        "PaidPartial": _("Partly paid"),
        "PaidOver": _("Overpaid"),
        "PaidLate": _("Paid late"),
        "Invalid": _("Invalid"),
        "Expired": _("Expired"),
    }.get(code or "", "")


def status_text(invoice, payments=()) -> str:
    if accepted_unconfirmed(invoice, payments):
        return _("Paid (accepted without confirmation)")
    return {
        "New": _("Waiting for payment"),
        "Processing": _("Received — waiting for confirmation"),
        "Settled": _("Paid"),
        "Expired": _("Expired"),
        "Invalid": _("Invalid"),
    }.get(invoice.status, invoice.status)


def way_text(way: str | None) -> str:
    """How a sale was paid (pos.sales.way_of), in the cashier's language."""
    return {
        sales.WAY_LIGHTNING: _("Lightning"),
        sales.WAY_CHAIN: _("On-chain"),
        sales.WAY_BOTH: _("Lightning and on-chain"),
    }.get(way or "", "")


def _qr_urls(invoice, state: str, remaining: int) -> dict:
    """The QR images of the sale screen and whether they carry a BOLT11 (see payments/unified.py:
    image URLs name their payload, so a new BOLT11 is a new image)."""
    gateway = _gateway()
    offer = lightning_offer(gateway, invoice.id) if state in ("new", "partial") else None
    ask = remaining if state == "partial" else invoice.due_sats
    bolt11 = bolt11_for(offer, ask)
    qr_url = url_for("checkout.qr_svg", invoice_id=invoice.id)
    rest_url = None
    if state == "new" and offer is not None:
        qr_url = url_for("checkout.qr_svg", invoice_id=invoice.id,
                         v=qr_token(gateway.invoices.qr(invoice.id, offer).payload))
    if state == "partial" and remaining > 0:
        token = None
        if offer is not None:
            payload = request_uri(invoice.address, remaining,
                                  gateway.invoices.store_name(invoice.store_id), offer, for_qr=True)
            token = qr_token(payload)
        rest_url = url_for("pos.rest_qr", invoice_id=invoice.id, sats=remaining, v=token)
    if offer is None or state not in ("new", "partial"):
        ways = ""
    elif bolt11:
        ways = _("Lightning or on-chain: one QR code")
    else:
        ways = _("On-chain only: Lightning is not available for this sale")
    return {"qrUrl": qr_url, "restQrUrl": rest_url, "lightning": bool(bolt11), "waysText": ways}


# -- the invoice as the POS sees it -----------------------------------------------------------
def remaining_krw(price_krw: int, paid_sats: int, rate) -> int:
    """The part of the price still unpaid, in won: the price less what the payments so far
    are worth at the locked rate, rounded down as the merchant is credited (``min(price,
    floor(sats × rate))``), so the merchant's way: 5,000 sats at ₩1.5/sat leave ₩12,500 of
    ₩20,000. The sats still due (due − paid) are what the customer is asked to send."""
    return max(0, price_krw - min(price_krw, int(math.floor(krw_value(paid_sats, rate)))))


def accepted_unconfirmed(invoice, payments) -> bool:
    """Settled on a payment no block has confirmed yet (0-conf, under the city's limit)."""
    counted = [p for p in payments if p.state == "seen"]
    return invoice.status == "Settled" and invoice.additional_status != "Marked" and \
        any(p.block_height is None and p.method == METHOD_CHAIN for p in counted)


def invoice_details(invoice, payments) -> dict:
    paid = paid_sats(invoice, payments)
    due = invoice.due_sats
    remaining = max(0, due - paid)
    state = page_state(invoice)
    data = sales.pos_data(invoice)
    subtotal = data.get("subtotalKrw") or (str(invoice.amount_krw) if invoice.amount_krw else "0")
    tip = data.get("tipKrw") or "0"
    rest_krw = remaining_krw(invoice.amount_krw or 0, paid, invoice.rate) \
        if state == "partial" else 0
    now = _gateway().clock()
    way = sales.way_of(p.method for p in payments if p.state == "seen")
    return {
        "id": invoice.id,
        "status": invoice.status,
        "additionalStatus": invoice.additional_status,
        "state": state,
        "version": invoice.version,
        "amountKrw": str(invoice.amount_krw or 0),
        "amountText": won(invoice.amount_krw),
        "subtotalKrw": str(subtotal),
        "subtotalText": won(sales._int(subtotal)),
        "tipKrw": str(tip),
        "tipText": won(sales._int(tip)),
        "tipPercent": data.get("tipPercent", 0),
        "memo": data.get("memo", ""),
        "dueSats": due,
        "dueBtc": format_btc(due),
        "paidSats": paid,
        "paidBtc": format_btc(paid),
        "remainingSats": remaining,
        "remainingBtc": format_btc(remaining),
        "remainingSatsText": _("%(sats)s sats", sats=f"{remaining:,}"),
        "remainingKrw": str(rest_krw),
        "remainingText": won(rest_krw),
        "acceptedUnconfirmed": accepted_unconfirmed(invoice, payments),
        "overpaidBtc": format_btc(max(0, paid - due)),
        "rateText": f"₩{int(invoice.rate):,}",
        "expirationTime": int(invoice.expires_at.timestamp()),
        "now": int(now.timestamp()),
        "exception": sales.exception_code(invoice),
        "cancellable": invoice.status == "New",
        **_qr_urls(invoice, state, remaining),
        "way": way,
        "methodText": way_text(way),
        "statusUrl": url_for("checkout.status_json", invoice_id=invoice.id),
        "detailsUrl": url_for("pos.invoice_details_json", invoice_id=invoice.id),
        "cancelUrl": url_for("pos.cancel", invoice_id=invoice.id),
        "receiptUrl": url_for("pos.receipt", invoice_id=invoice.id),
        "checkoutUrl": url_for("checkout.invoice_page", invoice_id=invoice.id),
    }


def _json_error(status: int, code: str, message: str, **extra) -> Response:
    response = jsonify({"code": code, "message": message, **extra})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _wants_json() -> bool:
    return request.method == "POST" or request.path.endswith(".json")


@bp.errorhandler(CSRFError)
def _csrf_error(err: CSRFError):
    if _wants_json():
        return _json_error(400, "csrf", _("Your session's security token expired. Please try again."))
    return err


@bp.errorhandler(429)
def _too_many(err):
    return _json_error(429, "rate-limited",
                       _("Too many sales in a short time. Wait a moment and try again."))


@bp.errorhandler(RateUnavailable)
def _no_rate(err: RateUnavailable):
    return _json_error(503, "rate-unavailable",
                       _("No reliable exchange rate right now, so the sale was not created. "
                         "Try again in a minute; if it keeps happening, use another payment method."))


@bp.after_request
def _headers(response: Response) -> Response:
    if response.mimetype in ("text/html", "application/json"):
        response.headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _limit_key() -> str:
    """Invoices are rate limited per cashier (each tablet user), not per shop address."""
    if current_user.is_authenticated:
        return "pos:" + current_user.id
    return "ip:" + (request.remote_addr or "?")


# -- pages ----------------------------------------------------------------------------------
@bp.get("/")
@require_roles(*POS_ROLES)
def home():
    gateway = _gateway()
    store_name = gateway.invoices.store_name(_store_id())
    return render_template("pos/home.html", store_name=store_name, store_id=_store_id(),
                           tip_presets=sales.TIP_PRESETS, max_krw=gateway.settings.max_invoice_krw,
                           max_memo=sales.MAX_MEMO_CHARS)


@bp.get("/session.json")
@require_roles(*POS_ROLES)
def session_json():
    """A fresh CSRF token for a tablet that stayed open longer than the token lives."""
    return jsonify({"csrfToken": generate_csrf(), "storeId": _store_id(),
                    "user": current_user.display_name})


@bp.post("/charge")
@limiter.limit(invoice_limit, key_func=_limit_key,
               error_message="Too many sales in a short time")
@require_roles(*POS_ROLES)
def charge():
    gateway = _gateway()
    store_id = _store_id()
    try:  # the API's decoder: bounded depth, no NUL; floats, as parse_charge expects
        body = decode_json(request.get_data(), parse_float=float) if request.is_json else None
    except UntrustedInput as err:
        return _json_error(400, "invalid-json", err.message)
    max_krw = gateway.settings.max_invoice_krw
    try:
        sale = sales.parse_charge(body, max_krw=max_krw)
    except sales.ChargeRefused as refused:
        return _json_error(422, "invalid-charge", charge_error_text(refused.errors[0]),
                           errors=[{**e.as_json(), "message": charge_error_text(e)}
                                   for e in refused.errors])
    invoice_body = sales.invoice_body(sale, cashier_id=current_user.id,
                                      cashier_name=current_user.display_name)
    try:
        parsed = parse_invoice_request(invoice_body, max_krw=max_krw)
    except InvalidRequest as err:  # the service's own rules; normally caught above
        return _json_error(422, "invalid-charge", str(err))
    client_key = (request.headers.get("Idempotency-Key") or "").strip()
    key = f"pos:{current_user.id}:{client_key}"[:200] if client_key else None
    canonical = json.dumps(invoice_body, sort_keys=True).encode()
    try:
        invoice, _replayed = gateway.invoices.create(
            store_id, parsed, idempotency_key=key,
            request_hash=hashlib.sha256(canonical).hexdigest(),
            render=lambda inv: {"id": inv.id})
    except StoreNotFound:
        return _json_error(404, "store-not-found", _("This store is closed or archived."))
    except StoreSuspended as refused:
        return _json_error(403, "store-suspended", _("The city has closed this store: no new sales.")
                           if refused.standing == "closed" else
                           _("The city has suspended this store: no new sales until it is lifted. The owner sees the reason in the back office."))
    except IdempotencyConflict:  # the same attempt key came back with another amount
        return _json_error(409, "retry-changed",
                           _("The sale changed while it was being sent. Charge again."))
    response = jsonify(invoice_details(invoice, []))
    response.status_code = 201
    return response


@bp.get("/invoices/<invoice_id>.json")
@require_roles(*POS_ROLES)
def invoice_details_json(invoice_id: str):
    try:
        invoice, payments, _store = _gateway().invoices.get_with_payments(invoice_id, _store_id())
    except InvoiceNotFound:
        return _json_error(404, "invoice-not-found", _("No such sale in this store."))
    return jsonify(invoice_details(invoice, payments))


@bp.post("/invoices/<invoice_id>/cancel")
@require_roles(*POS_ROLES)
def cancel(invoice_id: str):
    gateway = _gateway()
    store_id = _store_id()
    try:
        invoice = gateway.invoices.get(invoice_id, store_id)
    except InvoiceNotFound:
        return _json_error(404, "invoice-not-found", _("No such sale in this store."))
    if invoice.status != "New":
        return _json_error(409, "not-cancellable",
                           _("Only a sale still waiting for payment can be cancelled."))
    try:
        invoice = gateway.invoices.mark_status(store_id, invoice_id, "Invalid")
    except StatusChangeRefused:
        return _json_error(409, "not-cancellable",
                           _("Only a sale still waiting for payment can be cancelled."))
    with gateway.db.write() as session:
        audit(session, current_user.actor(), "invoice.cancel", target=invoice_id,
              store_id=store_id, via="pos", amountKrw=str(invoice.amount_krw or 0))
    invoice, payments, _store = gateway.invoices.get_with_payments(invoice_id, store_id)
    return jsonify(invoice_details(invoice, payments))


@bp.get("/invoices/<invoice_id>/qr/<int:sats>.svg")
@require_roles(*POS_ROLES)
def rest_qr(invoice_id: str, sats: int):
    """After a partial payment: the code for the rest, to the same address. Drawn once per
    (invoice, amount); only the invoice's current remaining amount is drawn."""
    try:
        invoice, payments, store = _gateway().invoices.get_with_payments(invoice_id, _store_id())
    except InvoiceNotFound:
        abort(404)
    remaining = invoice.due_sats - paid_sats(invoice, payments)
    if page_state(invoice) != "partial" or sats <= 0 or sats != remaining:
        abort(404)
    offer = lightning_offer(_gateway(), invoice_id)
    payload = request_uri(invoice.address, sats, store.name if store else None, offer,
                          for_qr=True)
    body = _qr_cache().svg(("rest", invoice_id, sats), payload)
    keep = offer is None or request.args.get("v") == qr_token(payload)
    return _svg(body, PRIVATE_IMMUTABLE if keep else "no-cache")


def _svg(body: bytes, cache: str) -> Response:
    response = Response(body, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = cache
    response.headers["Content-Security-Policy"] = SVG_CSP
    return response


@bp.get("/receipts/<invoice_id>")
@require_roles(*POS_ROLES)
def receipt(invoice_id: str):
    gateway = _gateway()
    try:
        invoice, payments, store = gateway.invoices.get_with_payments(invoice_id, _store_id())
    except InvoiceNotFound:
        abort(404)
    paper = request.args.get("paper", "80")
    paper = paper if paper in ("58", "80") else "80"
    counted = [p for p in payments if p.state == "seen"]
    paid_at = max((p.seen_at for p in counted), default=None)
    return render_template(
        "pos/receipt.html", invoice=invoice, store=store, d=invoice_details(invoice, payments),
        payments=counted, paper=paper, status_label=status_text(invoice, payments),
        created_text=seoul_time(invoice.created_at), paid_text=seoul_time(paid_at) if paid_at else "",
        public_url=public_invoice_url(invoice.id), cashier=sales.pos_data(invoice).get("cashier", ""),
        exception_label=exception_text(sales.exception_code(invoice)))


@bp.get("/receipts/<invoice_id>/qr.svg")
@require_roles(*POS_ROLES)
def receipt_qr(invoice_id: str):
    """The receipt's code: a link to the public page, where the tourist keeps the receipt."""
    try:
        _gateway().invoices.get(invoice_id, _store_id())
    except InvoiceNotFound:
        abort(404)
    url = public_invoice_url(invoice_id)
    return _svg(_qr_cache().svg(("receipt", invoice_id), url), PRIVATE_IMMUTABLE)


def _rows(invoices, ways: dict[str, str]) -> list[dict]:
    """The sales list; how each sale was paid is shown once any sale on it came over
    Lightning (an on-chain-only shop's list stays as it was)."""
    if all(way == sales.WAY_CHAIN for way in ways.values()):
        ways = {}
    rows = []
    for invoice in invoices:
        data = sales.pos_data(invoice)
        code = sales.exception_code(invoice)
        rows.append({
            "id": invoice.id, "time": seoul_clock(invoice.created_at),
            "when": seoul_time(invoice.created_at, "short"),
            "amount": won(invoice.amount_krw) or f"{format_btc(invoice.due_sats)} BTC",
            "tip": won(sales._int(data.get("tipKrw"))) if sales._int(data.get("tipKrw")) else "",
            "memo": data.get("memo", ""), "cashier": data.get("cashier", ""),
            "status": invoice.status, "status_text": status_text(invoice),
            "exception": code, "exception_text": exception_text(code),
            "way": ways.get(invoice.id), "way_text": way_text(ways.get(invoice.id)),
        })
    return rows


@bp.get("/today")
@require_roles(*POS_ROLES)
def today():
    gateway = _gateway()
    store_id = _store_id()
    now = gateway.clock()
    day = sales.seoul_day(now)
    with gateway.db.read() as session:
        invoices = sales.day_invoices(session, store_id, day)
        ways = sales.ways_of(session, [i.id for i in invoices])
    mine = sales.totals(invoices, cashier_id=current_user.id, ways=ways)
    store_totals = sales.totals(invoices, ways=ways)
    return render_template(
        "pos/today.html", rows=_rows(invoices, ways), mine=mine, store_totals=store_totals,
        day_text=seoul_day_text(now), won=won, way_text=way_text, ways=sales.WAYS,
        store_name=gateway.invoices.store_name(store_id))


def seoul_day_text(now: datetime) -> str:
    return format_date(sales.seoul_day(now), "full", locale=_locale())


@bp.get("/invoices")
@require_roles(*POS_ROLES)
def recent():
    gateway = _gateway()
    only = request.args.get("show") == "exceptions"
    with gateway.db.read() as session:
        invoices = sales.recent_invoices(session, _store_id(), exceptions_only=only)
        ways = sales.ways_of(session, [i.id for i in invoices])
    return render_template("pos/invoices.html", rows=_rows(invoices, ways), only_exceptions=only,
                           store_name=gateway.invoices.store_name(_store_id()))


# -- the PWA shell (public: no data in it) ------------------------------------------------------
@bp.get("/manifest.webmanifest")
def manifest():
    body = {
        "name": "Busan Pay POS",
        "short_name": "Busan Pay",
        "description": _("Accept Bitcoin in won at your counter."),
        "id": "/pos",
        "start_url": "/pos",
        "scope": "/pos",
        "display": "standalone",
        "orientation": "any",
        "background_color": "#ffffff",
        "theme_color": "#0b4f9c",
        "lang": _locale(),
        "icons": [
            {"src": url_for("static", filename="pos/icon-192.png"), "sizes": "192x192",
             "type": "image/png", "purpose": "any"},
            {"src": url_for("static", filename="pos/icon-512.png"), "sizes": "512x512",
             "type": "image/png", "purpose": "any"},
            {"src": url_for("static", filename="pos/icon-maskable-512.png"), "sizes": "512x512",
             "type": "image/png", "purpose": "maskable"},
        ],
    }
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/sw.js")
def service_worker():
    response = send_file(STATIC_POS / "sw.js", mimetype="text/javascript", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/pos"
    return response


@bp.get("/offline")
def offline():
    """What the service worker shows when the POS cannot reach the server at all."""
    return render_template("pos/offline.html")
