"""Refund pages: the payer's claim link and the treasury's refund queue.

Thin web edge over :mod:`settlement.refunds`. One line in ``app.create_app`` (after the
dashboard and before ``CSRFProtect``):

    from settlement.refund_pages import init_refund_pages; init_refund_pages(app)

Payer (no login; CSRF on every form; rate-limited per client):

* ``POST /i/<invoice_id>/refund`` — the checkout page's "Claim a refund" button: opens the
  invoice's one active claim and redirects (303) to the claim's secret link;
* ``GET /refund/<token>`` — the invoice, the BTC owed, the refund-address form, the status;
* ``POST /refund/<token>`` — the address, validated for the gateway's network.

Treasury (``/city/refunds``): city_admin and treasury act, city_auditor reads only:

* ``GET /city/refunds?status=`` — claims by status;
* ``POST /city/refunds/<claim_id>/approve`` and ``/city/refunds/<claim_id>/sent`` (the txid
  of the transaction the operator sent from the offline wallet). Each action is audited.
"""
from __future__ import annotations

import logging

from flask import (Blueprint, abort, current_app, flash, make_response, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import case, func, select

from accounts.models import CITY_ROLES
from accounts.service import audit
from accounts.web import require_roles
from i18n import set_page_default
from payments.addresses import InvalidAddress, validate_address
from payments.bip21 import format_btc
from ratelimits import limiter
from settlement.refunds import ACTIVE, RefundError, approve, claim_by_token, open_claim, owed_sats, \
    record_sent

log = logging.getLogger(__name__)

bp = Blueprint("refunds", __name__)

ACTORS = ("city_admin", "treasury")  # may approve and record; city_auditor only reads
STATUSES = ("submitted", "approved", "open", "sent", "credited")
PAYER_LIMIT = "20 per minute;200 per hour"
_PAYER_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
              "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_CITY_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
             "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

STATUS_NAMES = {"open": _l("Waiting for your refund address"),
                "submitted": _l("Address received, waiting for approval"),
                "approved": _l("Approved, the refund will be sent soon"),
                "sent": _l("Refund sent"),
                "credited": _l("Credited to the merchant")}
CITY_STATUS_NAMES = {"open": _l("Waiting for the payer"), "submitted": _l("To approve"),
                     "approved": _l("To send"), "sent": _l("Sent"),
                     "credited": _l("Credited to the merchant")}
NETWORK_NAMES = {"bitcoin": "Bitcoin", "testnet": "Bitcoin testnet", "signet": "Bitcoin signet",
                 "regtest": "Bitcoin regtest"}


def _gateway():
    return current_app.extensions["busanpay"]


def client_key() -> str:
    return "refund:" + (request.remote_addr or "?")


def _no_store(response, csp: str):
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the link is a secret
    response.headers["Content-Security-Policy"] = csp
    return response


def _page(template: str, status: int = 200, **context):
    return _no_store(make_response(render_template(template, **context), status), _PAYER_CSP)


# -- the payer ------------------------------------------------------------------------------

def refund_offer(session, invoice) -> dict | None:
    """What the checkout page offers: None when nothing is owed to the payer; else the BTC
    owed and whether a claim is already active (then the payer must use their saved link)."""
    if not (invoice.additional_status in ("PaidOver", "PaidLate")
            or (invoice.status == "Expired" and invoice.additional_status == "PaidPartial")):
        return None
    from settlement.models import RefundClaim

    claims = list(session.execute(select(RefundClaim).where(
        RefundClaim.invoice_id == invoice.id).order_by(RefundClaim.created_at)).scalars())
    active = next((c for c in claims if c.status in ACTIVE), None)
    sent = next((c for c in reversed(claims) if c.status == "sent"), None)
    owed = owed_sats(session, invoice.id)
    if owed <= 0 and active is None:
        return {"owed_btc": "", "active": False, "sent": sent is not None} if sent else None
    return {"owed_btc": format_btc(max(owed, active.amount_sats if active else 0)),
            "active": active is not None, "sent": sent is not None}


def _invoice_and_store(session, invoice_id: str):
    from merchants.models import Store
    from payments.models import Invoice

    invoice = session.get(Invoice, invoice_id)
    store = session.get(Store, invoice.store_id) if invoice is not None else None
    return invoice, store


@bp.post("/i/<invoice_id>/refund")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def claim_refund(invoice_id: str):
    gateway = _gateway()
    with gateway.db.write() as session:
        invoice, store = _invoice_and_store(session, invoice_id)
        if invoice is None:
            return _page("refunds/not_found.html", 404)
        set_page_default(_language_of(invoice, store))
        offer = refund_offer(session, invoice)
        if offer is None or (not offer["active"] and not offer["owed_btc"]):
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="nothing")
        if offer["active"]:
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="active")
        try:
            claim, token = open_claim(session, invoice_id, gateway.clock())
        except RefundError:  # a parallel request won the race (nothing was written)
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="active")
    log.info("refund claim %s opened for invoice %s", claim.id, invoice_id)
    return redirect(url_for("refunds.claim_page", token=token, new=1), 303)


def _language_of(invoice, store) -> str | None:
    import json

    checkout = json.loads(invoice.checkout_json or "{}")
    return checkout.get("defaultLanguage") or (store.default_language if store else None)


def _claim_view(session, token: str):
    claim = claim_by_token(session, token)
    if claim is None:
        return None
    if claim.invoice_id is None:  # a refund a shop opened without an invoice (pull payment)
        from merchants.models import Store

        invoice, store = None, session.get(Store, claim.store_id)
        set_page_default(store.default_language if store else None)
        return claim, invoice, store
    invoice, store = _invoice_and_store(session, claim.invoice_id)
    set_page_default(_language_of(invoice, store))
    return claim, invoice, store


def _render_claim(claim, invoice, store, *, status=200, error=None, address=""):
    network = _gateway().settings.network
    return _page("refunds/claim.html", status, claim=claim, invoice=invoice, store=store,
                 owed_btc=format_btc(claim.amount_sats),
                 due_btc=format_btc(invoice.due_sats) if invoice else "",
                 paid_btc=format_btc(invoice.paid_sats or 0) if invoice else "",
                 status_names=STATUS_NAMES, network_name=NETWORK_NAMES.get(network, network),
                 error=error, address=address, link=request.url.split("?")[0],
                 new=request.args.get("new") == "1")


@bp.get("/refund/<token>")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def claim_page(token: str):
    with _gateway().db.read() as session:
        found = _claim_view(session, token)
        if found is None:
            return _page("refunds/not_found.html", 404)
        return _render_claim(*found)


@bp.post("/refund/<token>")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def submit(token: str):
    from settlement.refunds import submit_address

    gateway = _gateway()
    address = (request.form.get("address") or "").strip()[:200]
    network = gateway.settings.network
    with gateway.db.read() as session:  # check first: bad input writes nothing
        found = _claim_view(session, token)
        if found is None:
            return _page("refunds/not_found.html", 404)
        claim, invoice, store = found
        if claim.status not in ("open", "submitted"):
            return _render_claim(claim, invoice, store, status=409,
                                 error=_("This refund can no longer be changed."))
        try:
            validate_address(address, network)
        except InvalidAddress:
            message = (_("Please enter your refund address.") if not address else
                       _("This is not a valid %(network)s address. Check it and try again: "
                         "copy it from your wallet's “Receive” screen.",
                         network=NETWORK_NAMES.get(network, network)))
            return _render_claim(claim, invoice, store, status=422, error=message, address=address)
    try:
        with gateway.db.write() as session:
            submit_address(session, token, address, network, gateway.clock())
    except RefundError:  # approved meanwhile
        with gateway.db.read() as session:
            return _render_claim(*_claim_view(session, token), status=409,
                                 error=_("This refund can no longer be changed."))
    return redirect(url_for("refunds.claim_page", token=token), 303)


# -- the treasury ---------------------------------------------------------------------------

@bp.get("/city/refunds")
@require_roles(*CITY_ROLES)
def queue():
    from merchants.models import Store
    from settlement.models import RefundClaim

    wanted = request.args.get("status") or "waiting"
    if wanted not in STATUSES + ("waiting", "all"):
        wanted = "waiting"
    order = case((RefundClaim.status == "submitted", 0), (RefundClaim.status == "approved", 1),
                 (RefundClaim.status == "open", 2), else_=3)
    query = select(RefundClaim, Store.name).join(Store, Store.id == RefundClaim.store_id)
    if wanted == "waiting":
        query = query.where(RefundClaim.status.in_(ACTIVE))
    elif wanted != "all":
        query = query.where(RefundClaim.status == wanted)
    with _gateway().db.read() as session:
        rows = list(session.execute(query.order_by(order, RefundClaim.created_at).limit(500)))
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in session.execute(select(RefundClaim.status, func.count())
                                         .group_by(RefundClaim.status)):
            counts[status] = int(n)
    from dashboard.fmt import btc, seoul
    from dashboard.web import ROLE_NAMES

    html = render_template("refunds/city.html", rows=rows, counts=counts, wanted=wanted,
                           statuses=STATUSES, status_names=CITY_STATUS_NAMES, btc=btc,
                           seoul=seoul, role_names=ROLE_NAMES, active="refunds",
                           can_act=current_user.role in ACTORS)
    return _no_store(make_response(html), _CITY_CSP)


def _act(claim_id: str, action: str, do):
    gateway = _gateway()
    try:
        with gateway.db.write() as session:
            claim = do(session, gateway.clock())
            audit(session, current_user.actor(), action, target=claim.id,
                  store_id=claim.store_id, invoice=claim.invoice_id, sats=claim.amount_sats,
                  txid=claim.txid or "")
    except RefundError as err:
        flash(_("Not done: %(reason)s", reason=str(err)), "error")
        return redirect(url_for("refunds.queue", status=request.form.get("back") or None), 303)
    flash(_("Done: refund %(claim)s is now “%(status)s”.", claim=claim_id,
            status=CITY_STATUS_NAMES.get(claim.status, claim.status)), "ok")
    return redirect(url_for("refunds.queue", status=request.form.get("back") or None), 303)


@bp.post("/city/refunds/<claim_id>/approve")
@require_roles(*ACTORS)
def approve_claim(claim_id: str):
    by = current_user.display_name or current_user.id
    return _act(claim_id, "refund.approve", lambda s, now: approve(s, claim_id, by, now))


@bp.post("/city/refunds/<claim_id>/sent")
@require_roles(*ACTORS)
def record_sent_claim(claim_id: str):
    txid = (request.form.get("txid") or "").strip()
    return _act(claim_id, "refund.sent", lambda s, now: record_sent(s, claim_id, txid, now))


def init_refund_pages(app) -> None:
    """Register the blueprint once (safe to call twice)."""
    if "refunds" not in app.blueprints:
        app.register_blueprint(bp)
