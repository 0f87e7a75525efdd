"""Onboarding pages (a thin edge over the onboarding services): the owner's payout account,
the treasury's approval queue, and (below) applications and invitations."""
from __future__ import annotations

from babel.dates import format_datetime
from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, url_for)
from flask_babel import get_locale, gettext as _
from flask_login import current_user
from sqlalchemy import select

from accounts.web import require_roles
from merchants.models import Store
from onboarding import payout_accounts as payout
from settlement.models import MerchantPayoutAccount

bp = Blueprint("onboarding", __name__)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _gateway():
    return current_app.extensions["busanpay"]


def seoul_time(moment) -> str:
    return format_datetime(moment, "short", tzinfo="Asia/Seoul", locale=str(get_locale() or "ko")) \
        if moment else ""


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
    return response


def _city_context(active: str) -> dict:
    from dashboard.web import ROLE_NAMES

    return {"role_names": ROLE_NAMES, "active": active, "seoul": seoul_time}


# -- payout accounts -------------------------------------------------------------------

def payout_problem_text(problem: payout.Problem) -> str:
    texts = {
        ("bank_account", "required"): _("Enter a bank account, or a Stripe connected account id."),
        ("bank_name", "length"): _("Enter the bank’s name (at most 64 characters)."),
        ("bank_account", "format"): _("Enter the account number: digits and hyphens, at least 6 digits."),
        ("account_holder", "length"): _("Enter the account holder’s name (at most 120 characters)."),
        ("stripe_account_id", "format"): _("A Stripe connected account id looks like acct_1A2b3C4d5E."),
        ("explanation", "required"): _("The account holder’s name differs from your business name: explain why (for example, the owner’s personal account of a sole proprietorship)."),
        ("explanation", "length"): _("The explanation is too long: at most 500 characters."),
        ("reason", "length"): _("Give a reason of 1 to 500 characters."),
    }
    return texts.get((problem.field, problem.code), _("This value is not accepted."))


def decision_refused_text(code: str) -> str:
    return {
        "same-person": _("You entered this change yourself: another treasury operator must approve or reject it."),
        "role": _("Only a treasury operator can approve payout accounts."),
        "not-pending": _("This change is no longer pending."),
    }.get(code, _("This decision is not allowed."))


def change_status_text(status: str) -> str:
    return {"pending": _("Pending city approval"), "approved": _("Approved"),
            "rejected": _("Rejected"), "superseded": _("Replaced by a newer change")}.get(status, status)


@bp.route("/merchant/payout-account", methods=["GET", "POST"])
@require_roles("owner")
def payout_account():
    gateway = _gateway()
    store_id = current_user.store_id
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form
        try:
            with gateway.db.write() as session:
                payout.request_change(
                    session, current_user.actor(), store_id,
                    bank_name=form.get("bank_name", "")[:500],
                    bank_account=form.get("bank_account", "")[:500],
                    account_holder=form.get("account_holder", "")[:500],
                    stripe_account_id=form.get("stripe_account_id", "")[:500],
                    explanation=form.get("explanation", "")[:2000], now=gateway.clock())
        except payout.ChangeRefused as refused:
            errors = {p.field: payout_problem_text(p) for p in refused.problems}
        else:
            flash(_("Saved. The new account is pending city approval; payouts keep going to the approved account until then."), "ok")
            return redirect(url_for("onboarding.payout_account"))
    with gateway.db.read() as session:
        store = session.get(Store, store_id)
        if store is None:
            abort(404)
        approved = session.get(MerchantPayoutAccount, store_id)
        latest = payout.latest_change(session, store_id)
    return render_template("onboarding/payout_account.html", store=store, approved=approved,
                           latest=latest, errors=errors, form=request.form,
                           status_text=change_status_text, seoul=seoul_time), \
        (422 if errors else 200)


@bp.get("/city/payout-accounts")
@require_roles("treasury", "city_admin", "city_auditor")
def payout_queue():
    with _gateway().db.read() as session:
        pending = payout.pending_changes(session)
        approved = {a.store_id: a for a in session.execute(select(MerchantPayoutAccount).where(
            MerchantPayoutAccount.store_id.in_([s.id for _c, s in pending]))).scalars()}
    return render_template("onboarding/payout_queue.html", pending=pending, approved=approved,
                           **_city_context("payout-accounts"))


@bp.post("/city/payout-accounts/<change_id>/<decision>")
@require_roles("treasury")
def payout_decide(change_id: str, decision: str):
    gateway = _gateway()
    if decision not in ("approve", "reject"):
        abort(404)
    try:
        with gateway.db.write() as session:
            if decision == "approve":
                payout.approve_change(session, current_user.actor(), change_id, gateway.clock(),
                                      note=request.form.get("note", "")[:500])
            else:
                payout.reject_change(session, current_user.actor(), change_id, gateway.clock(),
                                     request.form.get("reason", "")[:2000])
    except payout.DecisionRefused as refused:
        flash(decision_refused_text(refused.code), "error")
        return redirect(url_for("onboarding.payout_queue")), 303
    except payout.ChangeRefused as refused:
        flash(payout_problem_text(refused.problems[0]), "error")
        return redirect(url_for("onboarding.payout_queue")), 303
    flash(_("Approved: the next payout goes to this account.") if decision == "approve"
          else _("Rejected: the owner sees your reason."), "ok")
    return redirect(url_for("onboarding.payout_queue")), 303


def init_web(app) -> None:
    if bp.name in app.blueprints:
        return
    app.register_blueprint(bp)
    from onboarding.cli import register

    register(app)
