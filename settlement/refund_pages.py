"""Refund pages: the payer's claim and the treasury's refund queue.

Thin web edge over :mod:`settlement.refunds`. One line in ``app.create_app`` (after the
dashboard and before ``CSRFProtect``):

    from settlement.refund_pages import init_refund_pages; init_refund_pages(app)

Payer (no login; CSRF on every form; rate-limited per client). A claim's key never appears in
a URL (URLs end up in access logs and browser history): it lives in a cookie scoped to the
claim's page, and the link the payer keeps carries it after ``#`` (never sent to a server).

* ``POST /i/<invoice_id>/refund`` — "Claim a refund": opens a new claim beside any others,
  sets its key cookie and redirects (303) to ``/refund/<claim_id>``;
* ``GET /refund/<claim_id>`` — with the key cookie: the claim, the refund-address form, the
  status; without it: a form asking for the key (filled in from the saved link's ``#key=``);
* ``POST /refund/<claim_id>/key`` — the key typed or taken from the link: sets the cookie;
* ``POST /refund/<claim_id>`` — the address, validated for the gateway's network.

The checkout page gives the browser that shows a payment request while it is still unpaid a
signed "payer mark" for that invoice (``mark_payer_browser``); a claim opened from such a browser
records when, as evidence for the treasury (see docs/ARCHITECTURE.md, "Refunds").

Treasury (``/city/refunds``): city_admin and treasury act, city_auditor reads only:

* ``GET /city/refunds?status=`` — claims by status, each with the other claims on its invoice;
* ``POST /city/refunds/<claim_id>/approve`` (the others on the invoice are rejected) and
  ``/city/refunds/<claim_id>/sent`` (the txid of the transaction the operator sent from the
  offline wallet); ``POST /city/refunds/invoice/<invoice_id>/credit`` — credit what is owed to
  the merchant instead. Each action is audited.
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
from settlement.refunds import ACTIVE, UNDECIDED, RefundError, approve, claim_for_key, open_claim, \
    owed_sats, record_sent, rivals

log = logging.getLogger(__name__)

bp = Blueprint("refunds", __name__)

ACTORS = ("city_admin", "treasury")  # may approve and record; city_auditor only reads
STATUSES = ("submitted", "approved", "open", "sent", "credited", "rejected")
PAYER_LIMIT = "20 per minute;200 per hour"
_PAYER_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
              "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_CITY_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
             "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

STATUS_NAMES = {"open": _l("Waiting for your refund address"),
                "submitted": _l("Address received, waiting for approval"),
                "approved": _l("Approved, the refund will be sent soon"),
                "sent": _l("Refund sent"),
                "credited": _l("Credited to the merchant"),
                "rejected": _l("Not chosen")}
CITY_STATUS_NAMES = {"open": _l("Waiting for the payer"), "submitted": _l("To approve"),
                     "approved": _l("To send"), "sent": _l("Sent"),
                     "credited": _l("Credited to the merchant"), "rejected": _l("Rejected")}
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

KEY_COOKIE = "refund_key"      # the claim's key, path /refund/<claim_id>
CLAIM_COOKIE = "refund_claim"  # which claim this browser opened, path /i/<invoice_id>
MARK_COOKIE = "payer_mark"     # signed: this browser was shown the unpaid request, path /i/<id>
COOKIE_DAYS = 180


def _signer():
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="busanpay.payer-mark")


def _set_cookie(response, name: str, value: str, path: str) -> None:
    response.set_cookie(name, value, max_age=COOKIE_DAYS * 86400, path=path, httponly=True,
                        secure=request.is_secure, samesite="Lax")


def mark_payer_browser(response, invoice_id: str) -> None:
    """Called by the checkout page while it shows an unpaid payment request: the first such
    view in a browser leaves a signed mark (invoice id + time) that a later claim records."""
    if request.cookies.get(MARK_COOKIE):
        return
    moment = int(_gateway().clock().timestamp())
    _set_cookie(response, MARK_COOKIE, _signer().dumps([invoice_id, moment]), f"/i/{invoice_id}")


def _payer_mark(invoice_id: str):
    """When this browser was shown the invoice unpaid, from a valid mark; else None."""
    from datetime import datetime, timezone

    from itsdangerous import BadSignature

    raw = request.cookies.get(MARK_COOKIE)
    if not raw:
        return None
    try:
        marked, moment = _signer().loads(raw)
    except (BadSignature, ValueError, TypeError):
        return None
    if marked != invoice_id or not isinstance(moment, int):
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc)


def refund_offer(session, invoice) -> dict | None:
    """What the checkout page offers: None when nothing is or was owed to the payer; else the
    BTC owed, whether a claim may be opened, whether the treasury already chose one, whether a
    refund was sent, and the claim this browser opened (its page needs the browser's key)."""
    if not (invoice.additional_status in ("PaidOver", "PaidLate")
            or (invoice.status == "Expired" and invoice.additional_status == "PaidPartial")):
        return None
    from settlement.models import RefundClaim

    claims = list(session.execute(rivals(invoice.id).order_by(RefundClaim.created_at)).scalars())
    approved = next((c for c in claims if c.status == "approved"), None)
    sent = any(c.status == "sent" for c in claims)
    mine = next((c.id for c in claims if c.id == request.cookies.get(CLAIM_COOKIE)
                 and c.status in ACTIVE + ("sent",)), None)
    owed = owed_sats(session, invoice.id)
    if owed <= 0 and approved is None:
        return {"owed_btc": "", "decided": False, "sent": sent, "mine": mine} if sent else None
    return {"owed_btc": format_btc(max(owed, approved.amount_sats if approved else 0)),
            "decided": approved is not None, "sent": sent, "mine": mine}


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
        if offer is not None and offer["mine"]:  # this browser has a claim: back to it
            return redirect(url_for("refunds.claim_page", claim_id=offer["mine"]), 303)
        if offer is None or not offer["owed_btc"]:
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="nothing")
        if offer["decided"]:
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="decided")
        try:
            claim, key = open_claim(session, invoice_id, gateway.clock(),
                                    shown_unpaid_at=_payer_mark(invoice_id))
        except RefundError:  # approved or paid out meanwhile (nothing was written)
            return _page("refunds/refused.html", 409, invoice=invoice, store=store,
                         reason="decided")
    log.info("refund claim %s opened for invoice %s", claim.id, invoice_id)
    response = redirect(url_for("refunds.claim_page", claim_id=claim.id, new=1), 303)
    _set_cookie(response, KEY_COOKIE, key, f"/refund/{claim.id}")
    _set_cookie(response, CLAIM_COOKIE, claim.id, f"/i/{invoice_id}")
    return response


def _language_of(invoice, store) -> str | None:
    import json

    checkout = json.loads(invoice.checkout_json or "{}")
    return checkout.get("defaultLanguage") or (store.default_language if store else None)


def _claim_place(session, claim):
    """(invoice, store) of a claim, the page's language set from them; invoice None for a
    refund a shop opened without one (a pull payment)."""
    if claim.invoice_id is None:
        from merchants.models import Store

        store = session.get(Store, claim.store_id)
        set_page_default(store.default_language if store else None)
        return None, store
    invoice, store = _invoice_and_store(session, claim.invoice_id)
    set_page_default(_language_of(invoice, store))
    return invoice, store


def _claim_view(session, claim_id: str, key: str | None):
    """(claim, invoice, store) when `key` opens the claim; None otherwise."""
    claim = claim_for_key(session, claim_id, key)
    if claim is None:
        return None
    return (claim, *_claim_place(session, claim))


def _key_page(session, claim_id: str, status: int = 200, error: str | None = None):
    """The page that asks for a claim's key; 404 when there is no such claim."""
    from settlement.models import RefundClaim

    claim = session.get(RefundClaim, claim_id) if len(claim_id) <= 32 else None
    if claim is None:
        return _page("refunds/not_found.html", 404)
    _invoice, store = _claim_place(session, claim)
    return _page("refunds/key.html", status, claim_id=claim_id, store=store, error=error)


def _render_claim(claim, invoice, store, key: str, *, status=200, error=None, address=""):
    network = _gateway().settings.network
    link = url_for("refunds.claim_page", claim_id=claim.id, _external=True) + "#key=" + key
    return _page("refunds/claim.html", status, claim=claim, invoice=invoice, store=store,
                 owed_btc=format_btc(claim.amount_sats),
                 due_btc=format_btc(invoice.due_sats) if invoice else "",
                 paid_btc=format_btc(invoice.paid_sats or 0) if invoice else "",
                 status_names=STATUS_NAMES, network_name=NETWORK_NAMES.get(network, network),
                 error=error, address=address, link=link, key=key,
                 new=request.args.get("new") == "1")


@bp.get("/refund/<claim_id>")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def claim_page(claim_id: str):
    key = request.cookies.get(KEY_COOKIE)
    with _gateway().db.read() as session:
        found = _claim_view(session, claim_id, key)
        if found is None:
            return _key_page(session, claim_id)
        return _render_claim(*found, key)


@bp.post("/refund/<claim_id>/key")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def open_with_key(claim_id: str):
    key = (request.form.get("key") or "").strip().removeprefix("#").removeprefix("key=")
    with _gateway().db.read() as session:
        if _claim_view(session, claim_id, key) is None:
            return _key_page(session, claim_id, 403,
                             _("This key does not open this refund. Copy the whole link or key "
                               "you saved and try again."))
    response = redirect(url_for("refunds.claim_page", claim_id=claim_id), 303)
    _set_cookie(response, KEY_COOKIE, key, f"/refund/{claim_id}")
    return response


@bp.post("/refund/<claim_id>")
@limiter.limit(PAYER_LIMIT, key_func=client_key)
def submit(claim_id: str):
    from settlement.refunds import submit_address

    gateway = _gateway()
    key = request.cookies.get(KEY_COOKIE)
    address = (request.form.get("address") or "").strip()[:200]
    network = gateway.settings.network
    with gateway.db.read() as session:  # check first: bad input writes nothing
        found = _claim_view(session, claim_id, key)
        if found is None:
            return _key_page(session, claim_id, 403)
        claim, invoice, store = found
        if claim.status not in UNDECIDED:
            return _render_claim(claim, invoice, store, key, status=409,
                                 error=_("This refund can no longer be changed."))
        try:
            validate_address(address, network)
        except InvalidAddress:
            message = (_("Please enter your refund address.") if not address else
                       _("This is not a valid %(network)s address. Check it and try again: "
                         "copy it from your wallet's “Receive” screen.",
                         network=NETWORK_NAMES.get(network, network)))
            return _render_claim(claim, invoice, store, key, status=422, error=message,
                                 address=address)
    try:
        with gateway.db.write() as session:
            submit_address(session, key, address, network, gateway.clock())
    except RefundError:  # decided meanwhile
        with gateway.db.read() as session:
            return _render_claim(*_claim_view(session, claim_id, key), key, status=409,
                                 error=_("This refund can no longer be changed."))
    return redirect(url_for("refunds.claim_page", claim_id=claim_id), 303)


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
        rows = list(session.execute(query.order_by(order, RefundClaim.invoice_id,
                                                   RefundClaim.created_at).limit(500)))
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in session.execute(select(RefundClaim.status, func.count())
                                         .group_by(RefundClaim.status)):
            counts[status] = int(n)
        # Claims that stand side by side on one invoice: the treasury chooses between them.
        # (A merchant-funded refund has its own sats: it competes with nothing.)
        invoices = sorted({c.invoice_id for c, _name in rows
                           if c.invoice_id is not None and not c.merchant_funded})
        contested = dict(session.execute(
            select(RefundClaim.invoice_id, func.count()).where(
                RefundClaim.invoice_id.in_(invoices), RefundClaim.status.in_(ACTIVE),
                RefundClaim.merchant_funded == False)  # noqa: E712
            .group_by(RefundClaim.invoice_id)).all()) if invoices else {}
    from dashboard.fmt import btc, seoul
    from dashboard.web import ROLE_NAMES

    html = render_template("refunds/city.html", rows=rows, counts=counts, wanted=wanted,
                           statuses=STATUSES, status_names=CITY_STATUS_NAMES, btc=btc,
                           seoul=seoul, role_names=ROLE_NAMES, active="refunds",
                           can_act=current_user.role in ACTORS, rivals=contested,
                           undecided=UNDECIDED)
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


@bp.post("/city/refunds/invoice/<invoice_id>/credit")
@require_roles(*ACTORS)
def credit_claims(invoice_id: str):
    """Credit what is owed to the payer of this invoice to the merchant instead (a person's
    recorded decision, e.g. a tip): every undecided claim on it ends "credited"."""
    from settlement.refunds import credit_to_merchant

    gateway = _gateway()
    back = url_for("refunds.queue", status=request.form.get("back") or None)
    by = current_user.display_name or current_user.id
    try:
        with gateway.db.write() as session:
            sats = owed_sats(session, invoice_id)
            credit_to_merchant(session, invoice_id, sats, by, gateway.clock(),
                               gateway.settings.fee_bps)
            audit(session, current_user.actor(), "refund.credit", target=invoice_id,
                  invoice=invoice_id, sats=sats)
    except RefundError as err:
        flash(_("Not done: %(reason)s", reason=str(err)), "error")
        return redirect(back, 303)
    flash(_("Done: what was owed on invoice %(invoice)s is credited to the merchant.",
            invoice=invoice_id), "ok")
    return redirect(back, 303)


def init_refund_pages(app) -> None:
    """Register the blueprint once (safe to call twice)."""
    if "refunds" not in app.blueprints:
        app.register_blueprint(bp)
