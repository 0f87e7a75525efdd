"""Onboarding pages (a thin edge over the onboarding services): the owner's payout account,
the treasury's approval queue, and (below) applications and invitations."""
from __future__ import annotations

from babel.dates import format_datetime
from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, session, url_for)
from flask_babel import get_locale, gettext as _
from flask_login import current_user
from sqlalchemy import select

from accounts.web import require_roles
from dashboard.fmt import won
from merchants.models import Store
from merchants.service import StoreError
from onboarding import payout_accounts as payout
from ratelimits import limiter, login_limit
from settlement.config import settlement_config
from settlement.daily import closing_of, send_created, unpaid_without_account
from settlement.models import MerchantPayoutAccount
from settlement.posting_job import run_once
from settlement.payouts import rails_for

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
            with gateway.db.write() as s:
                payout.request_change(
                    s, current_user.actor(), store_id,
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
    with gateway.db.read() as s:
        store = s.get(Store, store_id)
        if store is None:
            abort(404)
        approved = s.get(MerchantPayoutAccount, store_id)
        latest = payout.latest_change(s, store_id)
    return render_template("onboarding/payout_account.html", store=store, approved=approved,
                           latest=latest, errors=errors, form=request.form,
                           status_text=change_status_text, seoul=seoul_time), \
        (422 if errors else 200)


@bp.get("/city/payout-accounts")
@require_roles("treasury", "city_admin", "city_auditor")
def payout_queue():
    with _gateway().db.read() as s:
        pending = payout.pending_changes(s)
        approved = {a.store_id: a for a in s.execute(select(MerchantPayoutAccount).where(
            MerchantPayoutAccount.store_id.in_([store.id for _c, store in pending]))).scalars()}
        unpaid = unpaid_without_account(s)
    return render_template("onboarding/payout_queue.html", pending=pending, approved=approved,
                           unpaid=unpaid, won=won, **_city_context("payout-accounts"))


@bp.post("/city/payout-accounts/<change_id>/<decision>")
@require_roles("treasury")
def payout_decide(change_id: str, decision: str):
    gateway = _gateway()
    if decision not in ("approve", "reject"):
        abort(404)
    try:
        with gateway.db.write() as s:
            if decision == "approve":
                payout.approve_change(s, current_user.actor(), change_id, gateway.clock(),
                                      note=request.form.get("note", "")[:500])
            else:
                payout.reject_change(s, current_user.actor(), change_id, gateway.clock(),
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


# -- applications ----------------------------------------------------------------------

def apply_limit() -> str:
    return current_app.config.get("APPLY_RATE_LIMIT", "10 per hour")


def application_problem_text(problem) -> str:
    p = problem.params
    texts = {
        "required": _("This field is required."),
        "too_long": _("Too long: at most %(max)s characters.", max=p.get("max")),
        "characters": _("Use letters, numbers and ordinary punctuation (no < or > and no control characters)."),
        "choose": _("Choose one of the options."),
        ("brn", "invalid"): _("This is not a valid business registration number: check the 10 digits (the last one is a check digit)."),
        ("brn", "duplicate"): _("An application with this business registration number is already under review or approved. Nothing was sent; if you think this is a mistake, contact the city’s Busan Pay team."),
        ("email", "invalid"): _("Enter an email address like name@example.kr."),
        ("phone", "invalid"): _("Enter a phone number like 051-888-1234 or 010-1234-5678."),
        ("monthly_volume", "number"): _("Enter a whole number of won, like 3000000."),
        ("xpub", "required"): _("Enter your wallet’s extended public key to be paid in bitcoin directly."),
        ("xpub", "invalid"): _("This extended public key cannot be used: %(reason)s", reason=p.get("reason", "")),
    }
    return texts.get((problem.field, problem.code)) or texts.get(problem.code) or \
        _("This value is not accepted.")


def _choices() -> dict:
    from merchants.districts import CATEGORIES, DISTRICTS

    korean = str(get_locale() or "ko") == "ko"
    return {"districts": [(slug, names[0] if korean else names[1]) for slug, names in DISTRICTS.items()],
            "categories": CATEGORIES, "category_names": category_names()}


def category_names() -> dict:
    return {"retail": _("Shop"), "food": _("Restaurant"), "cafe": _("Café"),
            "lodging": _("Lodging"), "transport": _("Transport"), "culture": _("Culture and leisure"),
            "market": _("Market stall"), "services": _("Services")}


@bp.route("/apply", methods=["GET", "POST"])
@limiter.limit(apply_limit, methods=["POST"], error_message="Too many applications")
def apply():
    from onboarding import applications

    gateway = _gateway()
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            data = applications.parse_application(request.form, gateway.settings.network)
        except applications.ApplicationRefused as refused:
            errors = {p.field: application_problem_text(p) for p in refused.problems}
        else:
            with gateway.db.write() as s:
                created = applications.submit_application(
                    s, data, language=str(get_locale() or "ko"),
                    ip=request.remote_addr or "", now=gateway.clock())
                reference = created.id if created else None
            if reference is None:
                errors = {"brn": application_problem_text(applications.Problem("brn", "duplicate"))}
            else:
                session["application_ref"] = reference
                return redirect(url_for("onboarding.apply_received"), 303)
    form = {k: v[:400] for k, v in request.form.items()} if request.method == "POST" else {}
    return render_template("onboarding/apply.html", errors=errors, form=form, **_choices()), \
        (422 if errors else 200)


@bp.errorhandler(413)
def _too_large(_err):
    """A body over the server's limit never reaches the parser: say so on the form."""
    if request.path != url_for("onboarding.apply"):
        return _err
    message = _("The application is far too long: shorten the texts (the address has at most 300 characters) and send it again.")
    return render_template("onboarding/apply.html", errors={}, too_large=message, form={},
                           **_choices()), 413


@bp.get("/apply/received")
def apply_received():
    reference = session.get("application_ref")
    if not reference:
        return redirect(url_for("onboarding.apply"))
    return render_template("onboarding/apply_received.html", reference=reference[:8])


def _application_actor_or_403():
    if current_user.role != "city_admin":
        abort(403)
    return current_user.actor()


@bp.get("/city/applications")
@require_roles("city_admin", "city_auditor")
def application_queue():
    from onboarding.models import MerchantApplication

    wanted = request.args.get("status", "pending")
    if wanted not in ("pending", "approved", "rejected"):
        wanted = "pending"
    with _gateway().db.read() as s:
        rows = list(s.execute(select(MerchantApplication).where(MerchantApplication.status == wanted)
                              .order_by(MerchantApplication.created_at).limit(500)).scalars())
    flag_names = {"duplicate-attempt": _("Number tried again"),
                  "previously-rejected": _("Rejected before")}
    return render_template("onboarding/application_queue.html", rows=rows, wanted=wanted,
                           flag_names=flag_names, **_choices(), **_city_context("applications"))


@bp.get("/city/applications/<application_id>")
@require_roles("city_admin", "city_auditor")
def application_detail(application_id: str, errors: dict | None = None, status: int = 200):
    from onboarding.applications import duplicates_of
    from onboarding.brn import display_brn
    from onboarding.models import MerchantApplication

    with _gateway().db.read() as s:
        app = s.get(MerchantApplication, application_id)
        if app is None:
            abort(404)
        duplicates = duplicates_of(s, app)
    return render_template("onboarding/application_detail.html", app=app, duplicates=duplicates,
                           brn=display_brn(app.brn), errors=errors or {}, **_choices(),
                           **_city_context("applications")), status


@bp.post("/city/applications/<application_id>/<decision>")
@require_roles("city_admin")
def application_decide(application_id: str, decision: str):
    from onboarding import applications

    gateway = _gateway()
    reason = request.form.get("reason", "")[:2000]
    try:
        with gateway.db.write() as s:
            if decision == "approve":
                store, issued = applications.approve_application(
                    s, current_user.actor(), application_id, network=gateway.settings.network,
                    now=gateway.clock(), reason=reason)
                store_name, store_id, email = store.name, store.id, issued.invitation.email
            elif decision == "reject":
                applications.reject_application(s, current_user.actor(), application_id,
                                                reason=reason, now=gateway.clock())
            else:
                abort(404)
    except applications.ApplicationRefused:
        return application_detail(application_id, errors={
            "reason": _("Give the applicant a reason of 1 to 500 characters.")}, status=422)
    except applications.DecisionRefused:
        flash(_("This application was already decided."), "error")
        return redirect(url_for("onboarding.application_queue"), 303)
    except StoreError as err:  # e.g. a district renamed since the application
        flash(str(err.message), "error")
        return redirect(url_for("onboarding.application_detail", application_id=application_id), 303)
    if decision == "reject":
        flash(_("Rejected. The reason is recorded in the audit log."), "ok")
        return redirect(url_for("onboarding.application_queue"), 303)
    return _invitation_issued(store_name, store_id, email, issued.token)


def _invitation_issued(store_name: str, store_id: str, email: str, token: str):
    """The one page that shows the link (never stored): emailed too when SMTP is set."""
    from onboarding.mail import MailError, send_mail

    settings = _gateway().settings
    link = (settings.public_url or request.host_url.rstrip("/")) + url_for("onboarding.invite_open", token=token)
    emailed = None
    if settings.smtp_url:
        try:
            send_mail(settings.smtp_url, to=email, subject=_("Your Busan Pay store is ready"),
                      body=_("Your store %(name)s can now accept Bitcoin with Busan Pay.\n\nSet your password here (the link works once, for 7 days):\n%(link)s\n",
                             name=store_name, link=link))
            emailed = True
        except MailError:
            emailed = False
    return render_template("onboarding/invitation_issued.html", store_name=store_name,
                           store_id=store_id, email=email, link=link, emailed=emailed,
                           **_city_context("applications"))


@bp.route("/city/merchants/new", methods=["GET", "POST"])
@require_roles("city_admin")
def merchant_new():
    from onboarding import applications

    gateway = _gateway()
    errors: dict[str, str] = {}
    form = request.form
    if request.method == "POST":
        try:
            with gateway.db.write() as s:
                store, issued = applications.create_merchant(
                    s, current_user.actor(), name=form.get("name", "")[:400],
                    district=form.get("district", ""), category=form.get("category", ""),
                    email=form.get("email", "")[:400],
                    settlement_mode=form.get("settlement_mode", "krw"),
                    xpub=form.get("xpub", "")[:400], network=gateway.settings.network,
                    now=gateway.clock())
                store_name, store_id, email = store.name, store.id, issued.invitation.email
        except applications.ApplicationRefused as refused:
            errors = {p.field: application_problem_text(p) for p in refused.problems}
        else:
            return _invitation_issued(store_name, store_id, email, issued.token)
    return render_template("onboarding/merchant_new.html", errors=errors, form=form,
                           **_choices(), **_city_context("merchants")), (422 if errors else 200)


# -- lifecycle -------------------------------------------------------------------------

def standing_texts() -> dict:
    return {"active": _("Active"), "suspended": _("Suspended: no new invoices"),
            "closed": _("Closed")}


@bp.route("/city/merchants/<store_id>/standing", methods=["GET", "POST"])
@require_roles("city_admin", "city_auditor", "treasury")
def merchant_standing(store_id: str):
    from onboarding.lifecycle import StandingRefused, set_standing

    gateway = _gateway()
    error = None
    if request.method == "POST":
        if current_user.role != "city_admin":
            abort(403)
        wanted = request.form.get("standing", "")
        cfg = settlement_config(gateway)
        if wanted == "closed":  # the balance the close pays includes every settled invoice
            run_once(gateway)
        try:
            with gateway.db.write() as s:
                change = set_standing(s, current_user.actor(), store_id, wanted,
                                      reason=request.form.get("reason", "")[:2000],
                                      now=gateway.clock(),
                                      rails=(cfg.payout_rail, tuple(rails_for(gateway))))
        except StandingRefused as refused:
            if refused.code == "unknown-store":
                abort(404)
            error = _("Give a reason of 1 to 500 characters: the merchant sees it.") \
                if refused.code == "reason" else _("This change is not possible: a closed store stays closed.")
        else:
            final = change.final_payout
            if final and final.payout_id:  # after the commit: a failed send is retried by the daily run
                send_created(gateway, only={final.payout_id})
            flash(_("Saved: %(standing)s.", standing=standing_texts()[wanted]), "ok")
            return redirect(url_for("onboarding.merchant_standing", store_id=store_id), 303)
    with gateway.db.read() as s:
        store = s.get(Store, store_id)
        closing = closing_of(s, store_id) if store is not None and store.standing == "closed" else None
    if store is None:
        abort(404)
    return render_template("onboarding/merchant_standing.html", store=store, error=error,
                           closing=closing, won=won, standing_texts=standing_texts(),
                           **_city_context("merchants")), (422 if error else 200)


# -- invitations -----------------------------------------------------------------------

def invitation_invalid_text(code: str) -> str:
    return {"used": _("This invitation link was already used. Sign in with your email and password, or ask the city for a new link."),
            "expired": _("This invitation link has expired. Ask the city’s Busan Pay team for a new one.")
            }.get(code, _("This invitation link is not valid. Check that you copied all of it."))


@bp.get("/invite/<token>")
@limiter.limit(login_limit, error_message="Too many attempts")
def invite_open(token: str):
    """Swap the token for a session value at once, so the address bar, the history and
    later requests' logs no longer carry it."""
    from onboarding.invitations import InvitationInvalid, find_invitation

    gateway = _gateway()
    try:
        with gateway.db.read() as s:
            find_invitation(s, token, gateway.clock())
    except InvitationInvalid as invalid:
        return render_template("onboarding/invite_invalid.html",
                               message=invitation_invalid_text(invalid.code)), 410
    session["invite_token"] = token
    return redirect(url_for("onboarding.invite"), 303)


@bp.route("/invite", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"], error_message="Too many attempts")
def invite():
    from accounts.service import AccountError
    from accounts.service import LoggedIn, start_session
    from accounts.web import _login
    from merchants.models import Store
    from onboarding.invitations import InvitationInvalid, find_invitation, redeem_invitation

    gateway = _gateway()
    token = session.get("invite_token", "")
    error = None
    try:
        if request.method == "POST":
            password = request.form.get("password", "")[:200]
            if password != request.form.get("password_again", "")[:200]:
                error = _("The two passwords differ.")
            else:
                try:
                    with gateway.db.write() as s:
                        user = redeem_invitation(s, token, password, now=gateway.clock(),
                                                 ip=request.remote_addr or "")
                        s.flush()
                        # a server-side session row, as every sign-in has (logout ends it)
                        session_id = start_session(s, user, request.remote_addr or "",
                                                   gateway.clock())
                        s.flush()
                        s.expunge(user)
                except AccountError as err:
                    error = password_error_text(err)
                else:
                    _login(LoggedIn(user, session_id, f"user:{user.id}"))
                    flash(_("Welcome to Busan Pay. Your password is set."), "ok")
                    return redirect("/merchant", 303)
        with gateway.db.read() as s:
            invitation = find_invitation(s, token, gateway.clock())
            store = s.get(Store, invitation.store_id)
    except InvitationInvalid as invalid:
        session.pop("invite_token", None)
        return render_template("onboarding/invite_invalid.html",
                               message=invitation_invalid_text(invalid.code)), 410
    return render_template("onboarding/invite.html", invitation=invitation, store=store,
                           error=error), (422 if error else 200)


def password_error_text(err) -> str:
    if err.field == "password":
        return _("Choose a stronger password: at least 10 characters, not easy to guess.")
    if err.field == "email":
        return _("This email already has a Busan Pay login: ask the city for an invitation to another address.")
    return _("The account could not be created.")


def init_web(app) -> None:
    if bp.name in app.blueprints:
        return
    app.register_blueprint(bp)
    from onboarding.cli import register

    register(app)
