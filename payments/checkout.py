"""The tourist's hosted checkout page: ``/i/<invoice_id>``.

Thin web edge over :class:`payments.service.InvoiceService`:

* ``GET /i/<id>`` — the page (HTML, in the tourist's language; see ``i18n.py``);
* ``GET /i/<id>/qr.svg`` and ``/qr.png`` — the invoice's QR, rendered once and kept in the
  database by ``InvoiceService.qr()``; with Lightning it is the unified QR (``lightning=`` the
  current BOLT11) and follows the BOLT11. The page links it as ``?v=<token of its payload>``:
  that URL's image never changes, so browsers keep it forever (a stale ``v`` gets the current
  image, not kept);
* ``GET /i/<id>/qr/<sats>.svg`` — after a partial payment, the QR for the rest (only for the
  invoice's current remaining amount; with the rest's own BOLT11);
* ``GET /i/<id>/lightning.svg`` — the plain Lightning QR (``LIGHTNING:<BOLT11>``) of the
  current BOLT11, for wallets that read no unified QR;
* ``GET /i/<id>/status.json`` — what the page polls (every ~1.5 s): one primary-key read,
  a strong ETag, ``304 Not Modified`` while nothing changed, never a QR render.
"""
from __future__ import annotations

import json
import re
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, \
    request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import func
from sqlmodel import select

from i18n import HTML_LANG, current_language, set_page_default
from payments.bip21 import format_btc, payment_uri
from payments.models import METHOD_LIGHTNING, Invoice, Payment
from payments.qr_codes import render_svg
from payments.service import InvoiceNotFound
from payments.unified import bolt11_for, lightning_qr_payload, qr_token, request_uri

bp = Blueprint("checkout", __name__)

SEOUL = ZoneInfo("Asia/Seoul")
# The QR payload of an invoice never changes: let browsers and proxies keep it.
IMMUTABLE = "public, max-age=31536000, immutable"
# Additional statuses that say money arrived (so a zero paid_sats column is not the truth).
_MONEY_CAME = {"PaidPartial", "PaidOver", "PaidLate"}
# Page security: our own script and styles only; images may be our QR codes.
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
             "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?")  # a CSP-safe origin
_SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _gateway():
    return current_app.extensions["busanpay"]


def lightning_offer(gateway, invoice_id: str):
    """The invoice's current Lightning offer (lightning/invoices.py), None when Lightning is off.
    Raises InvoiceNotFound."""
    desk = getattr(gateway.invoices, "lightning", None)
    return None if desk is None else desk.current(invoice_id)


#: Offers that a later try may still make (the node down, short of inbound liquidity).
_LN_TEMPORARY = {"unreachable", "no-inbound-liquidity", "refused"}
_LN_PERMANENT = {"btc-direct", "top-up"}


def lightning_note(offer) -> str:
    """Why the QR asks for an on-chain payment only ('' when Lightning is off or offered)."""
    reason = getattr(offer, "unavailable", None)
    if reason in _LN_TEMPORARY:
        return _("Lightning is not available for this payment right now: the QR code asks for "
                 "an on-chain payment only. Any Bitcoin wallet can pay it.")
    if reason in _LN_PERMANENT:
        return _("This invoice is paid on-chain only: any Bitcoin wallet can pay it.")
    return ""


# -- approximate amounts in other currencies (orientation only) ---------------------------
# BUSANPAY_DISPLAY_RATES="USD=1380.5,JPY=9.12,CNY=190.1": won per one unit of each currency.
DISPLAY_CURRENCIES = {"USD": ("$", 2), "JPY": ("¥", 0), "CNY": ("¥", 1)}  # symbol, decimals
log = logging.getLogger(__name__)


def parse_display_rates(text: str | None) -> dict[str, Decimal]:
    """'USD=1380.5,JPY=9.12' → {'USD': Decimal('1380.5'), 'JPY': Decimal('9.12')}.
    Empty or None → {}. Unknown currencies, non-positive or malformed rates raise ValueError."""
    rates: dict[str, Decimal] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        code, sep, value = part.partition("=")
        code = code.strip().upper()
        if not sep or code not in DISPLAY_CURRENCIES:
            raise ValueError(f"expected CODE=won-per-unit with CODE one of "
                             f"{', '.join(DISPLAY_CURRENCIES)}, got {part.strip()!r}")
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{code}: {value.strip()!r} is not a number") from None
        if not rate.is_finite() or rate <= 0:
            raise ValueError(f"{code}: the rate must be a positive number")
        rates[code] = rate
    return rates


def approximate_amounts(amount_krw: int | None, rates: dict[str, Decimal]) -> list[tuple[str, str]]:
    """[(code, '≈ $10.87'), …] for a won amount, in USD, JPY, CNY order; [] without rates."""
    if not amount_krw or not rates:
        return []
    shown = []
    for code, (symbol, places) in DISPLAY_CURRENCIES.items():
        if code in rates:
            value = (Decimal(amount_krw) / rates[code]).quantize(Decimal(1).scaleb(-places),
                                                                 rounding=ROUND_HALF_UP)
            shown.append((code, f"≈ {symbol}{value:,.{places}f}"))
    return shown


def display_rates() -> dict[str, Decimal]:
    """The configured rates (app config, else the environment); a bad value shows nothing."""
    text = current_app.config.get("BUSANPAY_DISPLAY_RATES", os.environ.get("BUSANPAY_DISPLAY_RATES"))
    try:
        return parse_display_rates(text)
    except ValueError as err:
        log.warning("BUSANPAY_DISPLAY_RATES ignored: %s", err)
        return {}


def refund_offer(invoice: Invoice) -> dict | None:
    """The refund claim the page offers when the ledger owes the payer (settlement's pages
    registered); None otherwise."""
    if "refunds" not in current_app.blueprints:
        return None
    if invoice.additional_status not in ("PaidOver", "PaidLate", "PaidPartial"):
        return None
    from settlement.refund_pages import refund_offer as offer

    with _gateway().db.read() as session:
        return offer(session, invoice)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def won(amount: int | None) -> str:
    """15000 → '₩15,000' (won has no minor unit)."""
    return "" if amount is None else f"₩{amount:,}"


def seoul_time(moment: datetime) -> str:
    """A date in the page's language and a 24-hour time, in Asia/Seoul:
    '2026년 11월 23일 12:00', 'November 23, 2026 12:00', '2026年11月23日 12:00'."""
    local = moment.astimezone(SEOUL)
    locale = get_locale() or "ko"
    day = format_date(local, "long", locale=locale)
    return f"{day} {format_time(local, 'HH:mm', locale=locale)}"


def countdown(expires_at: datetime, now: datetime) -> str:
    """Time left as m:ss (h:mm:ss beyond an hour), as the page's script shows it."""
    left = max(0, int((expires_at - now).total_seconds() + 0.999))
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _counting(payments: list[Payment]) -> int:
    return sum(p.value_sats for p in payments if p.state == "seen")


def _money_may_have_come(invoice: Invoice) -> bool:
    if invoice.additional_status == "Marked":
        return False
    return invoice.status in ("Processing", "Settled", "Invalid") or \
        invoice.additional_status in _MONEY_CAME


def paid_sats(invoice: Invoice, payments: list[Payment] | None = None) -> int:
    """Counting value received. The invoice row's ``paid_sats`` (kept by whoever records the
    payments) when set; otherwise the payments' sum, queried only when the status says money
    came, so the usual poll of a New invoice is a single primary-key read."""
    if invoice.paid_sats:
        return invoice.paid_sats
    if payments is not None:
        return _counting(payments)
    if not _money_may_have_come(invoice):
        return 0
    with _gateway().db.read() as session:
        total = session.exec(select(func.coalesce(func.sum(Payment.value_sats), 0))
                             .where(Payment.invoice_id == invoice.id, Payment.state == "seen")
                             ).one()
    return int(total or 0)


def page_state(invoice: Invoice) -> str:
    """Which explanation the tourist sees: new, partial, processing, settled, expired, invalid."""
    if invoice.status == "New":
        return "partial" if invoice.additional_status == "PaidPartial" else "new"
    return invoice.status.lower()


@dataclass
class PaymentLine:
    txid: str
    btc: str
    seen: str
    counted: bool
    late: bool
    confirmed: bool
    lightning: bool = False


@dataclass
class CheckoutView:
    id: str
    store_name: str
    status: str
    additional: str
    state: str
    version: int
    won_text: str
    priced_in_won: bool
    due_sats: int
    due_btc: str
    paid_sats: int
    paid_btc: str
    remaining_sats: int
    remaining_btc: str
    overpaid_btc: str
    address: str
    address_groups: list[str]
    wallet_uri: str
    wallet_uri_template: str
    rate_text: str
    expires_unix: int
    created_unix: int
    now_unix: int
    time_up: bool
    countdown_text: str
    expires_text: str
    paid_at_text: str
    payments: list[PaymentLine] = field(default_factory=list)
    qr_url: str = ""
    bolt11: str | None = None        # lower-case, when the QR carries it (lightning=)
    lightning_uri: str = ""          # lightning:<bolt11>
    lightning_qr_url: str = ""
    lightning_note: str = ""         # why there is no Lightning ('' when offered or off)


def build_view(invoice: Invoice, payments: list[Payment], store_name: str,
               now: datetime, offer=None) -> CheckoutView:
    paid = paid_sats(invoice, payments)
    due = invoice.due_sats
    remaining = max(0, due - paid)
    state = page_state(invoice)
    address = invoice.address
    # Pay the rest after a partial payment; the full amount otherwise (none for a top-up).
    ask = remaining if state == "partial" else due
    bolt11 = bolt11_for(offer, ask) if state in ("new", "partial") else None
    wallet_uri = request_uri(address, ask, store_name, offer if bolt11 else None)
    template = payment_uri(address, 1, store_name).replace("amount=0.00000001", "amount={amount}")
    qr_payload = request_uri(address, ask, store_name, offer if bolt11 else None, for_qr=True)
    if state == "partial":
        qr_url = url_for("checkout.qr_remaining_svg", invoice_id=invoice.id, sats=remaining,
                         v=qr_token(qr_payload) if bolt11 else None)
    else:
        qr_url = url_for("checkout.qr_svg", invoice_id=invoice.id,
                         v=qr_token(qr_payload) if offer is not None else None)
    counted = [p for p in payments if p.state == "seen"]
    paid_at = max((p.seen_at for p in counted), default=None) or invoice.updated_at
    return CheckoutView(
        id=invoice.id, store_name=store_name, status=invoice.status,
        additional=invoice.additional_status, state=state, version=invoice.version,
        won_text=won(invoice.amount_krw), priced_in_won=invoice.currency == "KRW",
        due_sats=due, due_btc=format_btc(due), paid_sats=paid, paid_btc=format_btc(paid),
        remaining_sats=remaining, remaining_btc=format_btc(remaining),
        overpaid_btc=format_btc(max(0, paid - due)),
        address=address,
        address_groups=[address[i:i + 4] for i in range(0, len(address), 4)],
        wallet_uri=wallet_uri, wallet_uri_template=template,
        rate_text=f"₩{int(invoice.rate):,}",
        expires_unix=_unix(invoice.expires_at), created_unix=_unix(invoice.created_at),
        now_unix=_unix(now),
        time_up=state in ("new", "partial") and now >= invoice.expires_at,
        countdown_text=countdown(invoice.expires_at, now),
        expires_text=seoul_time(invoice.expires_at), paid_at_text=seoul_time(paid_at),
        payments=[PaymentLine(txid=p.txid, btc=format_btc(p.value_sats), seen=seoul_time(p.seen_at),
                              counted=p.state == "seen", late=bool(p.late),
                              confirmed=p.block_height is not None
                              or p.method == METHOD_LIGHTNING,
                              lightning=p.method == METHOD_LIGHTNING) for p in payments],
        qr_url=qr_url, bolt11=bolt11, lightning_uri=f"lightning:{bolt11}" if bolt11 else "",
        lightning_qr_url=url_for("checkout.lightning_svg", invoice_id=invoice.id,
                                 v=qr_token(bolt11)) if bolt11 else "",
        lightning_note="" if bolt11 or state not in ("new", "partial") else lightning_note(offer),
    )


def _html(body: str, status: int = 200, frame_origin: str | None = None) -> Response:
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-cache, private"
    response.headers["Vary"] = "Accept-Language, Cookie"
    response.headers["Content-Language"] = HTML_LANG.get(current_language(), "ko")
    # Only the store's own website may show the page in a frame (the modal checkout).
    response.headers["Content-Security-Policy"] = _PAGE_CSP if not frame_origin else \
        _PAGE_CSP.replace("frame-ancestors 'none'", f"frame-ancestors {frame_origin}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _not_found_page(invoice_id: str) -> Response:
    return _html(render_template("checkout/not_found.html", invoice_id=invoice_id), 404)


@bp.get("/i/<invoice_id>")
def invoice_page(invoice_id: str):
    gateway = _gateway()
    try:
        invoice, payments, store = gateway.invoices.get_with_payments(invoice_id)
    except InvoiceNotFound:
        return _not_found_page(invoice_id)
    checkout = json.loads(invoice.checkout_json or "{}")
    # Before anything is translated: the invoice's language is the fallback.
    set_page_default(checkout.get("defaultLanguage") or (store.default_language if store else None))
    offer = lightning_offer(gateway, invoice_id) if page_state(invoice) in ("new", "partial") \
        else None
    view = build_view(invoice, payments, store.name if store else "", gateway.clock(), offer)
    frame_origin = store.website if store and _ORIGIN.fullmatch(store.website or "") else None
    response = _html(render_template("checkout/invoice.html", v=view, refund=refund_offer(invoice),
                                     approx=approximate_amounts(invoice.amount_krw, display_rates()),
                                     frame_origin=frame_origin,
                                     close_text=_("Close") if frame_origin else ""),
                     frame_origin=frame_origin)
    if view.state == "new" and not view.paid_sats and "refunds" in current_app.blueprints:
        # This browser is shown the unpaid request: evidence for a later refund claim.
        from settlement.refund_pages import mark_payer_browser

        mark_payer_browser(response, invoice.id)
    return response


def _qr_response(body: bytes, mimetype: str, keep: bool = True) -> Response:
    """`keep`: the URL names this very image (its `v` token, or a payload that never changes);
    otherwise browsers must ask again (a superseded BOLT11's URL gets the current image)."""
    response = Response(body, mimetype=mimetype)
    response.headers["Cache-Control"] = IMMUTABLE if keep else "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if mimetype == "image/svg+xml":
        response.headers["Content-Security-Policy"] = _SVG_CSP
    return response


def _plain_404() -> Response:
    response = Response("invoice not found\n", status=404, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _invoice_qr(invoice_id: str):
    """The kept QR and whether the request's URL names it (may be kept by the browser)."""
    gateway = _gateway()
    qr = gateway.invoices.qr(invoice_id)
    wanted = request.args.get("v")
    if getattr(gateway.invoices, "lightning", None) is None:
        return qr, wanted is None or wanted == qr_token(qr.payload)
    return qr, wanted == qr_token(qr.payload)


@bp.get("/i/<invoice_id>/qr.svg")
def qr_svg(invoice_id: str):
    try:
        qr, keep = _invoice_qr(invoice_id)
    except InvoiceNotFound:
        return _plain_404()
    return _qr_response(qr.svg, "image/svg+xml", keep)


@bp.get("/i/<invoice_id>/qr.png")
def qr_png(invoice_id: str):
    try:
        qr, keep = _invoice_qr(invoice_id)
    except InvoiceNotFound:
        return _plain_404()
    return _qr_response(qr.png, "image/png", keep)


@bp.get("/i/<invoice_id>/qr/<int:sats>.svg")
def qr_remaining_svg(invoice_id: str, sats: int):
    """The QR for the rest after a partial payment. Only the current remaining amount of a
    New/PaidPartial invoice is rendered (a rare state), so this cannot be used to make the
    server draw arbitrary codes; the URL names the amount (and `v` the rest's BOLT11), so
    the image is immutable."""
    gateway = _gateway()
    try:
        invoice, payments, store = gateway.invoices.get_with_payments(invoice_id)
    except InvoiceNotFound:
        return _plain_404()
    remaining = invoice.due_sats - paid_sats(invoice, payments)
    if page_state(invoice) != "partial" or sats <= 0 or sats != remaining:
        return _plain_404()
    offer = lightning_offer(gateway, invoice_id)
    payload = request_uri(invoice.address, sats, store.name if store else None, offer,
                          for_qr=True)
    keep = offer is None or request.args.get("v") == qr_token(payload)
    return _qr_response(render_svg(payload), "image/svg+xml", keep)


@bp.get("/i/<invoice_id>/lightning.svg")
def lightning_svg(invoice_id: str):
    """The plain Lightning QR of the invoice's current BOLT11 (none once it no longer
    applies: never a code that cannot be paid)."""
    gateway = _gateway()
    try:
        offer = lightning_offer(gateway, invoice_id)
    except InvoiceNotFound:
        return _plain_404()
    if offer is None or not offer.bolt11:
        return _plain_404()
    keep = request.args.get("v") == qr_token(offer.bolt11)
    return _qr_response(render_svg(lightning_qr_payload(offer.bolt11)), "image/svg+xml", keep)


def status_etag(invoice: Invoice) -> str:
    # version is bumped on every visible change; status words make a stale cache obvious.
    return f"{invoice.id}.{invoice.version}.{invoice.status}.{invoice.additional_status}"


@bp.get("/i/<invoice_id>/status.json")
def status_json(invoice_id: str):
    gateway = _gateway()
    try:
        invoice = gateway.invoices.get(invoice_id)  # one primary-key read
    except InvoiceNotFound:
        response = jsonify({"code": "invoice-not-found", "message": "Unknown invoice"})
        response.status_code = 404
        response.headers["Cache-Control"] = "no-cache"
        return response
    etag = status_etag(invoice)
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2); our tag itself is strong.
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        paid = paid_sats(invoice)
        remaining = max(0, invoice.due_sats - paid)
        response = jsonify({
            "id": invoice.id,
            "status": invoice.status,
            "additionalStatus": invoice.additional_status,
            "paidSats": paid,
            "dueSats": invoice.due_sats,
            "remainingSats": remaining,
            "paidBtc": format_btc(paid),
            "remainingBtc": format_btc(remaining),
            "expirationTime": _unix(invoice.expires_at),
            "now": _unix(gateway.clock()),
            "version": invoice.version,
        })
    response.set_etag(etag)
    response.headers["Cache-Control"] = "no-cache"
    return response
