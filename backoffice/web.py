"""The merchant owner's back office at ``/merchant`` (role ``owner``), a thin web edge over
:mod:`backoffice.service`. Owners see and change only their own store."""
from __future__ import annotations

import csv
import importlib.util
import io
import json
from datetime import date, timedelta

from babel.dates import format_date, format_datetime
from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, url_for)
from flask_babel import get_locale, gettext as _
from flask_login import current_user

from accounts.service import audit
from accounts.web import require_roles
from backoffice import service
from merchants.models import Store
from merchants.service import (CAN_CREATE_INVOICE, CAN_CREATE_NONAPPROVED_PULL_PAYMENTS,
                               CAN_CREATE_PULL_PAYMENTS, CAN_MODIFY_INVOICES, CAN_MODIFY_STORE,
                               CAN_MODIFY_WEBHOOKS, CAN_VIEW_INVOICES, CAN_VIEW_PULL_PAYMENTS,
                               CAN_VIEW_STORE, SPEED_POLICIES)
from pos import sales
from settlement.daily import closing_of
from untrusted import FIRST_DAY, LAST_DAY, UntrustedInput, calendar_month

bp = Blueprint("backoffice", __name__, url_prefix="/merchant")

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _gateway():
    return current_app.extensions["busanpay"]


def _locale() -> str:
    return str(get_locale() or "ko")


def won(amount) -> str:
    return "" if amount is None else f"₩{int(amount):,}"


def _closing_of(store_id: str):
    with _gateway().db.read() as session:
        return closing_of(session, store_id)


@bp.app_context_processor
def _closing_helpers() -> dict:
    """For the layout's notice on a closed store (pages of other blueprints use it too)."""
    return {"closing_of": _closing_of, "won": won}


def seoul_time(moment) -> str:
    return format_datetime(moment, "short", tzinfo=sales.SEOUL, locale=_locale()) if moment else ""


def _store() -> Store:
    store_id = current_user.store_id
    if not store_id:
        abort(403)
    with _gateway().db.read() as session:
        store = session.get(Store, store_id)
    if store is None:
        abort(404)
    return store


@bp.after_request
def _headers(response: Response) -> Response:
    if response.mimetype in ("text/html", "text/csv"):
        response.headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def speed_texts() -> dict:
    return {
        "HighSpeed": _("High speed — accept unconfirmed payments (0 confirmations), only up to the 0-conf limit"),
        "MediumSpeed": _("Medium — 1 confirmation (about 10 minutes)"),
        "LowMediumSpeed": _("Low-medium — 2 confirmations (about 20 minutes)"),
        "LowSpeed": _("Low — 6 confirmations (about an hour)"),
    }


def permission_texts() -> dict:
    return {
        CAN_CREATE_INVOICE: _("Create invoices"),
        CAN_VIEW_INVOICES: _("View invoices"),
        CAN_MODIFY_INVOICES: _("Modify invoices (mark paid or invalid, archive)"),
        CAN_MODIFY_WEBHOOKS: _("Manage webhooks"),
        CAN_VIEW_STORE: _("View store settings"),
        CAN_VIEW_PULL_PAYMENTS: _("View refunds"),
        CAN_CREATE_NONAPPROVED_PULL_PAYMENTS: _("Open refunds to payers (the city treasury approves each one)"),
        CAN_CREATE_PULL_PAYMENTS: _("Open and view refunds to payers (the city treasury approves each one)"),
        CAN_MODIFY_STORE: _("Manage store settings (includes all of the above)"),
    }


def problem_text(problem: service.Problem) -> str:
    p = problem.params
    texts = {
        "speed.unknown": _("Choose one of the listed speed policies."),
        "tolerance.number": _("Enter the tolerance as a percentage, e.g. 0 or 1.5."),
        "tolerance.range": _("The tolerance is a percentage from 0 to 100."),
        "tolerance.places": _("Use at most %(places)s decimal places.", places=p.get("places")),
        "tolerance.city": _("The city allows a payment tolerance of at most %(max)s %%. It "
                            "forgives the status only: you are credited what was received.",
                            max=p.get("max")),
        "limit.number": _("Enter the 0-conf limit as a whole number of won, e.g. 30000."),
        "limit.city": _("The city allows unconfirmed payments only up to %(max)s per invoice.",
                        max=won(p.get("max"))),
        "language.unknown": _("Choose one of the listed languages."),
        "name.length": _("Enter a name of 1 to %(max)s characters.", max=p.get("max")),
        "name.taken": _("Another cashier of this store has that name."),
        "pin.format": _("A PIN is 4 to 8 digits."),
        "pin.weak": _("Choose a less obvious PIN: not one digit repeated and not a straight run like 1234."),
        "pin.mismatch": _("The two PINs differ."),
        "pin.taken": _("Another cashier of this store has that PIN."),
        "account.refused": _("The account could not be created."),
        "label.length": _("Enter a label of 1 to %(max)s characters.", max=p.get("max")),
        "permissions.none": _("Choose at least one permission."),
        "permissions.unknown": _("Choose permissions from the list."),
    }
    return texts.get(problem.code, problem.code)


def _errors(refused: service.Refused) -> dict:
    return {p.field: problem_text(p) for p in refused.problems}


# -- pages ----------------------------------------------------------------------------------
@bp.get("/")
@require_roles("owner")
def overview():
    store = _store()
    gateway = _gateway()
    today = sales.seoul_day(gateway.clock())
    with gateway.db.read() as session:
        invoices = sales.day_invoices(session, store.id, today)
        exceptions = sales.recent_invoices(session, store.id, exceptions_only=True, limit=10)
    return render_template("backoffice/overview.html", store=store, totals=sales.totals(invoices),
                           exceptions=exceptions, won=won, seoul_time=seoul_time,
                           day_text=format_date(today, "full", locale=_locale()),
                           exception_code=sales.exception_code)


@bp.route("/settings", methods=["GET", "POST"])
@require_roles("owner")
def settings():
    store = _store()
    gateway = _gateway()
    city_limit = gateway.settings.zero_conf_limit_krw
    errors, form = {}, None
    if request.method == "POST":
        form = request.form
        try:
            new = service.parse_settings(form, city_zero_conf_limit=city_limit,
                                         city_max_tolerance=gateway.settings.max_payment_tolerance)
            with gateway.db.write() as session:
                changes = service.update_settings(session, store.id, new, current_user.actor())
            flash(_("Settings saved.") if changes else _("Nothing changed."), "ok")
            return redirect(url_for("backoffice.settings"))
        except service.Refused as refused:
            errors = _errors(refused)
    return render_template("backoffice/settings.html", store=store, form=form, errors=errors,
                           speed_policies=SPEED_POLICIES, speed_texts=speed_texts(),
                           city_limit=city_limit, won=won,
                           max_tolerance=gateway.settings.max_payment_tolerance), \
        (422 if errors else 200)


@bp.get("/staff")
@require_roles("owner")
def staff():
    return _staff_page({}, None)


def _staff_page(errors: dict, form, status: int = 200):
    store = _store()
    with _gateway().db.read() as session:
        people = service.staff(session, store.id)
    return render_template("backoffice/staff.html", store=store, people=people, errors=errors,
                           form=form, seoul_time=seoul_time), status


@bp.post("/staff")
@require_roles("owner")
def staff_create():
    store = _store()
    form = request.form
    try:
        with _gateway().db.write() as session:
            service.add_cashier(session, store.id, name=form.get("name", ""),
                                pin=form.get("pin", ""), pin_again=form.get("pin_again", ""),
                                actor=current_user.actor())
    except service.Refused as refused:
        return _staff_page(_errors(refused), form, 422)
    flash(_("Cashier %(name)s added. They sign in on the POS with the store code and their PIN.",
            name=form.get("name", "").strip()), "ok")
    return redirect(url_for("backoffice.staff"))


@bp.post("/staff/<user_id>/<any(disable, enable):action>")
@require_roles("owner")
def staff_toggle(user_id: str, action: str):
    store = _store()
    try:
        with _gateway().db.write() as session:
            user = service.set_disabled(session, store.id, user_id, action == "disable",
                                        current_user.actor())
            name = user.display_name
    except service.NotFound:
        abort(404)
    flash(_("%(name)s can no longer sign in.", name=name) if action == "disable"
          else _("%(name)s can sign in again.", name=name), "ok")
    return redirect(url_for("backoffice.staff"))


def _keys_page(errors: dict, form, new_token: str | None = None, new_key=None, status: int = 200):
    store = _store()
    with _gateway().db.read() as session:
        keys = service.api_keys(session, store.id)
    return render_template("backoffice/api_keys.html", store=store, keys=keys, errors=errors,
                           form=form, new_token=new_token, new_key=new_key,
                           permission_texts=permission_texts(), seoul_time=seoul_time), status


@bp.get("/api-keys")
@require_roles("owner")
def api_keys():
    return _keys_page({}, None)


@bp.post("/api-keys")
@require_roles("owner")
def api_key_create():
    store = _store()
    form = request.form
    try:
        with _gateway().db.write() as session:
            issued = service.create_key(session, store.id, label=form.get("label", ""),
                                        permissions=form.getlist("permissions"),
                                        actor=current_user.actor())
            session.expunge(issued.key)
    except service.Refused as refused:
        return _keys_page(_errors(refused), form, status=422)
    # The token is shown in this answer only (never stored, never cached).
    return _keys_page({}, None, new_token=issued.token, new_key=issued.key, status=201)


@bp.post("/api-keys/<key_id>/revoke")
@require_roles("owner")
def api_key_revoke(key_id: str):
    store = _store()
    try:
        with _gateway().db.write() as session:
            service.revoke_key(session, store.id, key_id, current_user.actor())
    except service.NotFound:
        abort(404)
    flash(_("The key was revoked: requests with it are refused from now on."), "ok")
    return redirect(url_for("backoffice.api_keys"))


def _webhooks():
    """The webhooks package's service, or None while that package is not installed."""
    if importlib.util.find_spec("webhooks") is None:
        return None
    from webhooks.worker import service_for

    return service_for(_gateway())


def event_texts() -> dict:
    return {
        "InvoiceCreated": _("Invoice created"),
        "InvoiceReceivedPayment": _("Payment received"),
        "InvoiceProcessing": _("Paid in full, waiting for confirmation"),
        "InvoiceSettled": _("Settled"),
        "InvoicePaymentSettled": _("Payment confirmed"),
        "InvoiceExpired": _("Expired"),
        "InvoiceInvalid": _("Invalid"),
    }


def _webhooks_page(errors: dict | None = None, form=None, new_secret: str | None = None,
                   new_hook=None, status: int = 200):
    store = _store()
    hooks = _webhooks()
    rows = []
    if hooks is not None:
        for hook in hooks.list(store.id):
            rows.append((hook, hooks.deliveries(store.id, hook.id, 20)))
    return render_template("backoffice/webhooks.html", store=store, available=hooks is not None,
                           rows=rows, errors=errors or {}, form=form, new_secret=new_secret,
                           new_hook=new_hook, event_texts=event_texts(), seoul_time=seoul_time,
                           api_path=f"/api/v1/stores/{store.id}/webhooks",
                           json_loads=json.loads), status


@bp.get("/webhooks")
@require_roles("owner")
def webhooks():
    store = _store()
    if _webhooks() is None:
        return render_template("backoffice/webhooks.html", store=store, available=False,
                               api_path=f"/api/v1/stores/{store.id}/webhooks")
    return _webhooks_page()


def _require_webhooks():
    hooks = _webhooks()
    if hooks is None:
        abort(404)
    return hooks


@bp.post("/webhooks")
@require_roles("owner")
def webhook_create():
    from payments.invoice_request import InvalidRequest
    from webhooks.rules import PUBLIC_ONLY, parse_webhook

    store = _store()
    hooks = _require_webhooks()
    form = request.form
    specific = form.getlist("events")
    everything = form.get("scope", "everything") == "everything"
    body = {"url": form.get("url", ""), "automaticRedelivery": form.get("automatic") == "on",
            "authorizedEvents": {"everything": everything, "specificEvents": specific}}
    errors = {}
    if not everything and not specific:
        errors["events"] = _("Choose at least one event, or “every event”.")
    try:
        spec = parse_webhook(body, allow_private=_gateway().settings.webhook_allow_private)
    except InvalidRequest as err:
        for problem in err.errors:
            if problem.path == "url" and problem.message.startswith(PUBLIC_ONLY):
                errors["url"] = _("Webhooks go only to public internet addresses: this URL names "
                                  "a loopback, private or reserved address.")
            elif problem.path == "url":
                errors["url"] = _("Enter an absolute http or https URL (at most 2,000 characters, no spaces).")
            else:
                errors.setdefault("events", _("Choose events from the list."))
    if errors:
        return _webhooks_page(errors, form, status=422)
    hook, secret = hooks.create(store.id, spec)
    with _gateway().db.write() as session:
        audit(session, current_user.actor(), "webhook.create", target=hook.id,
                      store_id=store.id, url=hook.url, everything=spec.everything,
                      events=list(spec.events))
    return _webhooks_page(new_secret=secret, new_hook=hook, status=201)


def _hook_or_404(hooks, store_id: str, webhook_id: str):
    from webhooks.service import WebhookNotFound

    try:
        return hooks.get(store_id, webhook_id)
    except WebhookNotFound:
        abort(404)


@bp.post("/webhooks/<webhook_id>/<any(enable, disable, delete):action>")
@require_roles("owner")
def webhook_change(webhook_id: str, action: str):
    from webhooks.rules import WebhookSpec

    store = _store()
    hooks = _require_webhooks()
    hook = _hook_or_404(hooks, store.id, webhook_id)
    if action == "delete":
        hooks.delete(store.id, webhook_id)
        flash(_("The webhook was deleted."), "ok")
    else:
        hooks.update(store.id, webhook_id, WebhookSpec(
            url=hook.url, enabled=action == "enable",
            automatic_redelivery=hook.automatic_redelivery, everything=hook.everything,
            events=tuple(json.loads(hook.events))))
        flash(_("The webhook is on.") if action == "enable" else _("The webhook is off."), "ok")
    with _gateway().db.write() as session:
        audit(session, current_user.actor(), f"webhook.{action}", target=webhook_id,
                      store_id=store.id, url=hook.url)
    return redirect(url_for("backoffice.webhooks"))


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
@require_roles("owner")
def webhook_redeliver(webhook_id: str, delivery_id: str):
    from webhooks.service import DeliveryNotFound, WebhookNotFound

    store = _store()
    hooks = _require_webhooks()
    try:
        new_id = hooks.redeliver(store.id, webhook_id, delivery_id)
    except (WebhookNotFound, DeliveryNotFound):
        abort(404)
    with _gateway().db.write() as session:
        audit(session, current_user.actor(), "webhook.redeliver", target=webhook_id,
                      store_id=store.id, delivery=delivery_id, redelivery=new_id)
    flash(_("The event will be sent again."), "ok")
    return redirect(url_for("backoffice.webhooks"))


def _month(raw: str | None, today: date) -> date:
    if not raw:
        return today.replace(day=1)
    try:
        return calendar_month(raw)
    except UntrustedInput:
        abort(400, description=_("The month is YYYY-MM, from %(first)s to %(last)s.",
                                 first=f"{FIRST_DAY:%Y-%m}", last=f"{LAST_DAY:%Y-%m}"))


def _month_lines(store_id: str, first: date):
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    with _gateway().db.read() as session:
        return sales.daily_sales(session, store_id, first, last)


@bp.get("/payouts")
@require_roles("owner")
def payouts():
    store = _store()
    gateway = _gateway()
    today = sales.seoul_day(gateway.clock())
    first = _month(request.args.get("month"), today)
    lines = [line for line in _month_lines(store.id, first) if line.day <= today]
    with gateway.db.read() as session:
        rows = service.payouts(session, store.id)
        account = service.payout_account(session, store.id)
    previous = (first - timedelta(days=1)).replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return render_template(
        "backoffice/payouts.html", store=store, payouts=rows, lines=lines, won=won,
        month=first, month_text=format_date(first, "yyyy-MM", locale=_locale()),
        previous=previous, following=following if following <= today else None,
        total_paid=sum(x.paid_krw for x in lines), total_count=sum(x.paid_count for x in lines),
        total_invoices=sum(x.invoices for x in lines),
        total_tips=sum(x.tips_krw for x in lines), seoul_time=seoul_time, account=account,
        ledger_statements=_ledger_statements() is not None,
        day_text=lambda d: format_date(d, "medium", locale=_locale()))


# Years the calendar arithmetic can handle (untrusted.FIRST_DAY..LAST_DAY); others are 404.
YEAR, MONTH = f"int(min={FIRST_DAY.year}, max={LAST_DAY.year})", "int(min=1, max=12)"


@bp.get(f"/statements/<{YEAR}:year>-<{MONTH}:month>.csv")
@require_roles("owner")
def statement_csv(year: int, month: int):
    store = _store()
    try:
        first = date(year, month, 1)
    except ValueError:
        abort(404)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day_kst", "invoices", "paid_count", "paid_krw", "tips_krw"])
    today = sales.seoul_day(_gateway().clock())
    for line in (x for x in _month_lines(store.id, first) if x.day <= today):  # no future days
        writer.writerow([line.day.isoformat(), line.invoices, line.paid_count, line.paid_krw,
                         line.tips_krw])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="statement-{first:%Y-%m}.csv"'
    return response


def _ledger_statements():
    """settlement.reconcile.statement_csv when the settlement package provides it."""
    if importlib.util.find_spec("settlement.reconcile") is None:
        return None
    from settlement.reconcile import statement_csv

    return statement_csv


@bp.get(f"/statements/<{YEAR}:year>-<{MONTH}:month>-<int(min=1, max=31):day>.csv")
@require_roles("owner")
def ledger_statement_csv(year: int, month: int, day: int):
    """One business day of the ledger: opening balance, each sale (gross, city fee, net),
    payouts, closing balance (from the settlement package)."""
    store = _store()
    statement = _ledger_statements()
    try:
        wanted = date(year, month, day)
    except ValueError:
        abort(404)
    if statement is None:
        abort(404)
    response = Response(statement(_gateway(), store.id, wanted), mimetype="text/csv")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="ledger-statement-{wanted.isoformat()}.csv"'
    return response
