"""The city's money decisions at /city/money: the city loss account (0-conf payments the
city accepted and then lost) and the treasury's off-chain credit queue (one person
proposes, another approves). Same access rules as the rest of /city (auditors read only);
proposing and deciding need the treasury or city admin role; forms carry CSRF tokens; the
service audits every decision."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from accounts.web import require_roles
from dashboard import web
from merchants.models import Store
from settlement import offchain

bp = Blueprint("city_money", __name__, url_prefix="/city/money")
bp.before_request(web._guard)
bp.after_request(web._headers)
bp.context_processor(web._helpers)


def _gateway():
    return current_app.extensions["busanpay"]


@bp.get("/")
def page():
    with _gateway().db.read() as s:
        loss_total, losses = offchain.city_losses(s)
        rows = offchain.credits(s)
        stores = {i: n for i, n in s.execute(select(Store.id, Store.name).where(
            Store.id.in_({r.store_id for r in rows} | {r["storeId"] for r in losses})))}
    can_decide = current_user.role in offchain.ROLES
    return render_template("dashboard/money.html", loss_total=loss_total, losses=losses,
                           credits=rows, stores=stores, can_decide=can_decide,
                           form=request.args, active="money")


@bp.post("/credits")
@require_roles(*offchain.ROLES)
def propose():
    form = request.form
    raw = (form.get("amount_krw") or "").replace(",", "").replace("₩", "").strip()
    if not raw.isdigit() or len(raw) > 13:
        flash(_("Enter the amount as a whole number of won, e.g. 500."), "error")
        return redirect(url_for("city_money.page"))
    gateway = _gateway()
    try:
        with gateway.db.write() as s:
            credit = offchain.propose(
                s, current_user.actor(), store_id=(form.get("store_id") or "").strip()[:48],
                invoice_id=(form.get("invoice_id") or "").strip(), amount_krw=int(raw),
                reason=form.get("reason") or "", moment=gateway.clock())
    except offchain.CreditRefused as err:
        flash(_("Not proposed: %(why)s", why=str(err)), "error")
        return redirect(url_for("city_money.page"))
    flash(_("Proposed. Another treasury operator or city admin must approve credit %(id)s.",
            id=credit.id), "ok")
    return redirect(url_for("city_money.page"))


@bp.post("/credits/<credit_id>/<decision>")
@require_roles(*offchain.ROLES)
def decide(credit_id: str, decision: str):
    if decision not in ("approve", "reject"):
        abort(404)
    gateway = _gateway()
    try:
        with gateway.db.write() as s:
            credit = offchain.decide(s, current_user.actor(), credit_id,
                                     approve=decision == "approve", moment=gateway.clock())
    except offchain.CreditRefused as err:
        flash(_("Not done: %(why)s", why=str(err)), "error")
        return redirect(url_for("city_money.page"))
    if credit.status == "approved":
        flash(_("Approved: the merchant is credited %(amount)s.", amount=web.won(credit.amount_krw)),
              "ok")
    else:
        flash(_("Rejected."), "ok")
    return redirect(url_for("city_money.page"))
