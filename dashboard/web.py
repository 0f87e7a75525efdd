"""The city's settlement dashboard at /city (roles city_admin, city_auditor, treasury).

Thin web edge over dashboard.queries. Every page is a GET; a table on it downloads as
CSV with ``?format=csv`` (``&table=`` picks the table where a page has several). The two
actions (review an exception; set the 0-conf exposure cap) are POST forms with CSRF,
audited; auditors get 403 on every non-GET request to /city, whatever the route.
"""
from __future__ import annotations

from datetime import date
from urllib.parse import urlencode, urlparse

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from accounts.models import CITY_ROLES
from accounts.service import audit
from accounts.web import login_manager, require_roles
from dashboard import charts, queries as q
from dashboard.csvout import csv_response
from dashboard.fmt import btc, btc_number, compact_won, count, seoul, won
from dashboard.models import CityExceptionReview, CitySetting
from dashboard.rollup import fold, pending_deltas
from i18n import current_language
from merchants.districts import CATEGORIES, DISTRICTS
from payments.models import Invoice
from settlement.daily import unpaid_without_account
from settlement.offchain import city_losses
from untrusted import FIRST_DAY, LAST_DAY, UntrustedInput, calendar_day, whole_number

bp = Blueprint("city", __name__, url_prefix="/city")

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
READ_METHODS = ["GET", "HEAD"]  # a 405's Allow header: the dashboard only reads
MAX_PAGE = 100_000
FOLD_THRESHOLD = 200  # fold the rollup's change log when a page finds more rows than this
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

CATEGORY_NAMES = {
    "retail": _l("Retail"), "food": _l("Restaurants"), "cafe": _l("Cafés"),
    "lodging": _l("Lodging"), "transport": _l("Transport"), "culture": _l("Culture & leisure"),
    "market": _l("Markets"), "services": _l("Services"),
}
ROLE_NAMES = {"city_admin": _l("City admin"), "city_auditor": _l("City auditor (read-only)"),
              "treasury": _l("Treasury operator"), "owner": _l("Merchant owner"),
              "cashier": _l("Cashier"), "system": _l("System"),
              "public": _l("Public applicant")}
KIND_NAMES = {"partial": _l("Paid partially"), "late": _l("Paid late"),
              "overpaid": _l("Paid over"), "invalid": _l("Invalid"),
              "deep-reorg": _l("Deep-reorg incident"), "refund": _l("Refund waiting"),
              "venue": _l("Conversion venue")}
# Venue alerts (dashboard.venues) lead the queue; they are computed from the venues' last
# balance check, not reviewed, and leave when the condition ends.
VENUE_KIND = "venue"
KIND_ACTIONS = {
    "partial": _l("Expired with part of the price paid: send the payer a refund claim, "
                  "then treasury approves and sends the refund."),
    "late": _l("Paid in full after expiry: with the merchant, either accept it (mark the "
               "invoice Settled) or refund the payer."),
    "overpaid": _l("Paid more than due: refund the excess to the payer, or credit it to the "
                   "merchant by a recorded decision."),
    "invalid": _l("Never confirmed, double-spent or marked invalid: check the transaction on "
                  "chain and refund anything that arrived."),
    "deep-reorg": _l("A settled payment left the chain: treasury reconciles chain and ledger "
                     "(the merchant's credit is reversed) and decides with the merchant."),
}
REFUND_ACTIONS = {
    "open": _l("Waiting for the payer to give a refund address."),
    "submitted": _l("Treasury: check and approve the refund."),
    "approved": _l("Treasury: send the refund and record its transaction id."),
}
REVIEW_OUTCOMES = {"refunded": _l("Refunded to the payer"),
                   "credited": _l("Credited to the merchant"),
                   "accepted": _l("Accepted by the merchant"),
                   "no-action": _l("No action needed"),
                   "escalated": _l("Escalated")}
STATUS_NAMES = {"New": _l("New"), "Processing": _l("Processing"), "Settled": _l("Settled"),
                "Expired": _l("Expired"), "Invalid": _l("Invalid")}
PAYOUT_STATUS_NAMES = {"failed": _l("Failed"), "returned": _l("Returned"),
                       "created": _l("Created"), "sent": _l("Sent"), "paid": _l("Paid")}
PRESET_NAMES = {"today": _l("Today"), "7d": _l("Last 7 days"), "30d": _l("Last 30 days"),
                "month": _l("This month"), "last-month": _l("Last month"),
                "custom": _l("Custom dates")}


def _gateway():
    return current_app.extensions["busanpay"]


# -- access --------------------------------------------------------------------------------

@bp.before_request
def _guard():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.role not in CITY_ROLES:
        abort(403)
    if request.method not in SAFE_METHODS and current_user.role == "city_auditor":
        abort(403)  # auditors read; they change nothing, on any route of this blueprint
    return None


@bp.after_request
def _headers(response):
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


# -- template helpers ----------------------------------------------------------------------

def district_name(slug: str) -> str:
    korean, english = DISTRICTS.get(slug, (slug, slug))
    return korean if current_language() == "ko" else english


def category_name(slug: str) -> str:
    return str(CATEGORY_NAMES.get(slug, slug))


def url_with(**changes) -> str:
    """This page's URL with some query arguments changed (None removes one)."""
    args = request.args.to_dict(flat=True)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = value
    for transient in ("format", "table"):
        if transient not in changes:
            args.pop(transient, None)
    return request.path + ("?" + urlencode(args) if args else "")


def csv_url(table: str | None = None, **extra) -> str:
    return url_with(format="csv", table=table, page=None, **extra)


def sort_link(column: str, current: str, descending: bool) -> dict:
    active = column == current
    new_desc = not descending if active else column not in ("name", "district", "category")
    return {"href": url_with(sort=column, dir="desc" if new_desc else "asc", page=None),
            "aria": ("descending" if descending else "ascending") if active else None,
            "active": active}


@bp.context_processor
def _helpers():
    return {"won": won, "btc": btc, "btc_number": btc_number, "count": count, "seoul": seoul,
            "district_name": district_name, "category_name": category_name,
            "kind_names": KIND_NAMES, "kind_actions": KIND_ACTIONS, "refund_actions": REFUND_ACTIONS,
            "review_outcomes": REVIEW_OUTCOMES, "status_names": STATUS_NAMES,
            "payout_status_names": PAYOUT_STATUS_NAMES, "role_names": ROLE_NAMES,
            "preset_names": PRESET_NAMES, "presets": q.PRESETS, "url_with": url_with,
            "csv_url": csv_url, "sort_link": sort_link, "DISTRICTS": DISTRICTS,
            "CATEGORIES": CATEGORIES,
            "can_review": current_user.is_authenticated and current_user.role in ("city_admin", "treasury"),
            "can_set_cap": current_user.is_authenticated and current_user.role == "city_admin"}


def _refuse_day():
    abort(400, description=_("Dates are YYYY-MM-DD, from %(first)s to %(last)s.",
                             first=FIRST_DAY.isoformat(), last=LAST_DAY.isoformat()))


def _period():
    try:
        period, error = q.parse_period(request.args, _gateway().clock())
    except UntrustedInput:
        _refuse_day()
    if error:
        flash(_("Period not understood (%(reason)s): showing %(start)s – %(end)s.",
                reason=error, start=period.start.isoformat(), end=period.end.isoformat()), "error")
    return period


def _page() -> int:
    raw = request.args.get("page") or "1"
    try:
        return whole_number(raw, minimum=1, maximum=MAX_PAGE)
    except UntrustedInput:
        abort(400, description=_("The page number is a whole number from 1 to %(max)s.",
                                 max=MAX_PAGE))


def _wants_csv() -> bool:
    return request.args.get("format") == "csv"


def _fold_if_needed() -> None:
    """Keep the rollup's change log short (reads are exact either way)."""
    db = _gateway().db
    with db.read() as s:
        waiting = pending_deltas(s, FOLD_THRESHOLD + 1)
    if waiting > FOLD_THRESHOLD:
        with db.write() as s:
            fold(s)


def _lang() -> str:
    return current_language()


# -- charts --------------------------------------------------------------------------------

def day_chart(chart_id: str, days: list[dict], title: str, wide: int = 1000):
    """The wide chart, and a compact one for phones (CSS shows one of them)."""
    wide_svg = _day_chart(chart_id, days, title, width=wide, height=280, max_labels=10)
    compact = _day_chart(chart_id + "-c", days, title, width=480, height=300, max_labels=5)
    return Markup(f'<div class="only-wide">{wide_svg}</div><div class="only-compact">{compact}</div>')


def _day_chart(chart_id: str, days: list[dict], title: str, **size):
    lang = _lang()
    total = sum(d["settled_krw"] for d in days)
    best = max(days, key=lambda d: d["settled_krw"]) if days else None
    desc = _("Settled won volume per day (Asia/Seoul), %(start)s to %(end)s: total %(total)s.",
             start=days[0]["day"].isoformat(), end=days[-1]["day"].isoformat(), total=won(total))
    if best and best["settled_krw"]:
        desc += " " + _("Highest: %(day)s with %(amount)s.", day=best["day"].isoformat(),
                        amount=won(best["settled_krw"]))
    bars = [charts.Bar(f"{d['day'].month}/{d['day'].day}", d["settled_krw"],
                       _("%(day)s: %(amount)s settled, %(n)s invoices",
                         day=d["day"].isoformat(), amount=won(d["settled_krw"]),
                         n=count(d["invoices"])))
            for d in days]
    return charts.column_chart(chart_id, title, desc, bars, lambda v: compact_won(v, lang), **size)


def list_chart(chart_id: str, title: str, rows: list[dict], name) -> str:
    lang = _lang()
    ordered = sorted(rows, key=lambda r: (-r["settled_krw"], name(r)))
    top = [f"{name(r)} {won(r['settled_krw'])}" for r in ordered[:3] if r["settled_krw"]]
    desc = _("Settled won volume by %(what)s, largest first.", what=title.lower())
    if top:
        desc += " " + _("Top: %(list)s.", list="; ".join(top))
    bars = [charts.Bar(name(r), r["settled_krw"],
                       _("%(name)s: %(amount)s settled, %(n)s invoices, %(m)s active merchants",
                         name=name(r), amount=won(r["settled_krw"]), n=count(r["invoices"]),
                         m=count(r.get("active_merchants", 0))))
            for r in ordered]
    return charts.bar_list_chart(chart_id, title, desc, bars, lambda v: compact_won(v, lang))


# -- CSV tables ----------------------------------------------------------------------------

FIGURE_HEADER = ["invoices", "settled_invoices", "settled_krw", "settled_btc_sats",
                 "average_ticket_krw", "processing_invoices", "processing_krw", "new_invoices",
                 "expired_invoices", "invalid_invoices", "paid_partial", "paid_over", "paid_late",
                 "marked"]


def figure_cells(f: dict) -> list:
    return [f["invoices"], f["settled_n"], f["settled_krw"], f["settled_sats"],
            f["average_ticket_krw"], f["processing_n"], f["processing_krw"], f["new_n"],
            f["expired_n"], f["invalid_n"], f["paid_partial_n"], f["paid_over_n"],
            f["paid_late_n"], f["marked_n"]]


def _store_cells(s) -> list:
    c = dict(s.counters)
    c["average_ticket_krw"] = s.average_ticket_krw
    korean, english = DISTRICTS.get(s.district, (s.district, s.district))
    return [s.store_id, s.name, s.district, korean, english, s.category, s.archived] + figure_cells(c)


STORE_HEADER = ["store_id", "name", "district", "district_ko", "district_en", "category",
                "archived"] + FIGURE_HEADER


# -- pages ---------------------------------------------------------------------------------

@bp.route("/<path:_rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def _anything_else(_rest):
    """Unknown /city paths: 404 to read, 405 to change (after the guard above, so an
    auditor's PUT/PATCH/DELETE anywhere under /city is a 403 like any other change)."""
    if request.method == "GET":
        abort(404)
    abort(405, valid_methods=READ_METHODS)


@bp.route("/", methods=["PUT", "PATCH", "DELETE", "POST"], endpoint="overview_changes")
def _overview_changes():
    abort(405, valid_methods=READ_METHODS)


@bp.get("/")
def overview():
    _fold_if_needed()
    period = _period()
    gateway = _gateway()
    with gateway.db.read() as s:
        if _wants_csv():
            ov = q.overview(s, period)
            days = q.by_day(s, period)
            table = request.args.get("table", "days")
            name = f"busanpay-city-{table}-{period.slug()}.csv"
            if table == "totals":
                return csv_response(name, ["from", "to", "active_merchants"] + FIGURE_HEADER,
                                    [[period.start, period.end, ov.totals["active_merchants"]]
                                     + figure_cells(ov.totals)])
            if table == "districts":
                return csv_response(name, ["district", "district_ko", "district_en",
                                           "active_merchants"] + FIGURE_HEADER,
                                    [[d["slug"], d["name_ko"], d["name_en"], d["active_merchants"]]
                                     + figure_cells(d) for d in ov.by_district])
            if table == "categories":
                return csv_response(name, ["category", "active_merchants"] + FIGURE_HEADER,
                                    [[c["slug"], c["active_merchants"]] + figure_cells(c)
                                     for c in ov.by_category])
            if table == "merchants":
                rows = sorted(ov.stores, key=lambda r: (-r.counters["settled_krw"], r.name))
                return csv_response(name, STORE_HEADER, [_store_cells(r) for r in rows])
            return csv_response(f"busanpay-city-days-{period.slug()}.csv", ["day"] + FIGURE_HEADER,
                                [[d["day"]] + figure_cells(d) for d in days])
        ov = q.overview(s, period, columns=q.SUMMARY_COLUMNS)
        days = q.by_day(s, period, columns=q.DAY_COLUMNS)
        top = sorted(ov.stores, key=lambda r: (-r.counters["settled_krw"], r.name))[:8]
        exc_counts = q.exception_counts(s)
        exc_rows, exc_total = q.exceptions(s, per_page=5, with_total=False)
        refunds = q.refund_claims_waiting(s, limit=5)
        expo = q.exposure(s, gateway.settings.zero_conf_limit_krw, gateway.clock(), limit=5)
        payouts = q.payouts(s, period, per_page=5, attention_only=True)
        fx = q.fx_results(s, period)
        audit_rows, _total = q.audit_entries(s, q.AuditFilter(), per_page=6, with_total=False)
    charts_ = {
        "days": day_chart("chart-days", days, _("Settled volume by day")),
        "districts": list_chart("chart-districts", _("District"), ov.by_district,
                                lambda r: district_name(r["slug"])),
        "categories": list_chart("chart-categories", _("Merchant category"), ov.by_category,
                                 lambda r: category_name(r["slug"])),
        "exposure": charts.gauge("chart-exposure", _("Open 0-conf exposure against the cap"),
                                 _("%(value)s at risk of a cap of %(cap)s.", value=won(expo.total_krw),
                                   cap=won(expo.cap_krw)), expo.total_krw, expo.cap_krw),
    }
    return render_template("dashboard/overview.html", period=period, totals=ov.totals,
                           days=days, districts=ov.by_district, categories=ov.by_category,
                           top=top, exc_counts=exc_counts, exc_rows=exc_rows, exc_total=exc_total,
                           refunds=refunds, expo=expo, payouts=payouts, fx=fx,
                           audit_rows=audit_rows, charts=charts_, active="overview",
                           now=gateway.clock())


@bp.get("/merchants")
def merchants():
    _fold_if_needed()
    period = _period()
    search = (request.args.get("q") or "").strip()[:120]
    district = request.args.get("district") or ""
    district = district if district in DISTRICTS else ""
    category = request.args.get("category") or ""
    category = category if category in CATEGORIES else ""
    sort = request.args.get("sort") or "volume"
    sort = sort if sort in q.MERCHANT_SORTS else "volume"
    descending = (request.args.get("dir") or ("asc" if sort in ("name", "district", "category")
                                              else "desc")) != "asc"
    per_page = 25
    with _gateway().db.read() as s:
        result = q.merchants(s, period, search=search, district=district, category=category,
                             sort=sort, descending=descending, page=_page(), per_page=per_page,
                             everything=_wants_csv(),
                             columns=q.ROLLUP_COLUMNS if _wants_csv() else q.MERCHANT_COLUMNS)
    if _wants_csv():
        return csv_response(f"busanpay-city-merchants-{period.slug()}.csv", STORE_HEADER,
                            [_store_cells(r) for r in result.rows])
    return render_template("dashboard/merchants.html", period=period, result=result,
                           search=search, district=district, category=category, sort=sort,
                           descending=descending, active="merchants")


INVOICE_HEADER = ["invoice_id", "created_seoul", "status", "additional_status", "amount_krw",
                  "due_sats", "paid_sats", "rate_krw_per_btc", "rate_source", "speed_policy",
                  "order_id", "incident", "address", "key_index"]


def _invoice_cells(inv: Invoice) -> list:
    return [inv.id, inv.created_at, inv.status, inv.additional_status, inv.amount_krw,
            inv.due_sats, inv.paid_sats, inv.rate, inv.rate_source, inv.speed_policy,
            inv.order_id, inv.incident, inv.address, inv.key_index]


@bp.get("/merchants/<store_id>")
def merchant(store_id: str):
    _fold_if_needed()
    period = _period()
    status = request.args.get("status") or ""
    status = status if status in q.INVOICE_STATUSES else ""
    gateway = _gateway()
    with gateway.db.read() as s:
        store = q.store(s, store_id)
        if store is None:
            abort(404)
        if _wants_csv():
            table = request.args.get("table", "invoices")
            if table == "days":
                days = q.by_day(s, period, store.id)
                return csv_response(f"busanpay-store-{store.id}-days-{period.slug()}.csv",
                                    ["day"] + FIGURE_HEADER, [[d["day"]] + figure_cells(d) for d in days])
            invoices, _n = q.store_invoices(s, store.id, period, status=status, everything=True)
            return csv_response(f"busanpay-store-{store.id}-invoices-{period.slug()}.csv",
                                INVOICE_HEADER, [_invoice_cells(i) for i in invoices])
        totals = q.period_totals(s, period, store.id)
        days = q.by_day(s, period, store.id, columns=q.DAY_COLUMNS)
        invoices, invoice_total = q.store_invoices(s, store.id, period, status=status, page=_page())
        exc_rows, exc_total = q.exceptions(s, store_id=store.id, per_page=10)
        refunds = q.refund_claims_waiting(s, store_id=store.id, limit=10)
        payouts = q.payouts(s, period, store_id=store.id, per_page=10)
        staff = q.store_staff(s, store.id)
        audit_rows, _t = q.audit_entries(s, q.AuditFilter(store=store.id), per_page=8, with_total=False)
    pages = max(1, -(-invoice_total // 25))
    chart = day_chart("chart-store-days", days, _("Settled volume by day"), wide=680)
    return render_template("dashboard/merchant.html", period=period, store=store, totals=totals,
                           days=days, invoices=invoices, invoice_total=invoice_total,
                           pages=pages, page=_page(), status=status, exc_rows=exc_rows,
                           exc_total=exc_total, refunds=refunds, payouts=payouts, staff=staff,
                           audit_rows=audit_rows, chart=chart, active="merchants")


EXCEPTION_HEADER = ["invoice_id", "kind", "store_id", "store_name", "created_seoul", "status",
                    "additional_status", "amount_krw", "due_sats", "paid_sats", "incident",
                    "action", "review_outcome", "review_note", "reviewed_seoul"]


@bp.get("/exceptions")
def exceptions():
    kind = request.args.get("kind") or ""
    kind = kind if kind in q.EXCEPTION_KINDS or kind == VENUE_KIND else ""
    state = request.args.get("state") or "open"
    state = state if state in ("open", "reviewed", "all") else "open"
    with _gateway().db.read() as s:
        if kind == VENUE_KIND:
            rows, total = [], 0
        else:
            rows, total = q.exceptions(s, kind=kind, state=state, page=_page(),
                                       everything=_wants_csv())
        if _wants_csv():
            return csv_response(
                f"busanpay-city-exceptions-{state}.csv", EXCEPTION_HEADER,
                [[r.invoice.id, r.kind, r.invoice.store_id, r.store_name, r.invoice.created_at,
                  r.invoice.status, r.invoice.additional_status, r.invoice.amount_krw,
                  r.invoice.due_sats, r.invoice.paid_sats, r.invoice.incident,
                  str(KIND_ACTIONS.get(r.kind, "")),
                  r.review.outcome if r.review else None, r.review.note if r.review else None,
                  r.review.reviewed_at if r.review else None] for r in rows])
        counts = q.exception_counts(s)
        refunds = q.refund_claims_waiting(s)
        unpaid = unpaid_without_account(s)
    return render_template("dashboard/exceptions.html", rows=rows, total=total, kind=kind,
                           state=state, counts=counts, refunds=refunds, page=_page(),
                           unpaid=unpaid,
                           pages=max(1, -(-total // 25)), active="exceptions")


def _safe_back(default: str) -> str:
    target = request.form.get("next") or ""
    parsed = urlparse(target)
    if target.startswith("/city") and not parsed.netloc and not target.startswith("//"):
        return target
    return default


@bp.post("/exceptions/<invoice_id>/review")
@require_roles("city_admin", "treasury")
def review_exception(invoice_id: str):
    outcome = request.form.get("outcome") or ""
    note = (request.form.get("note") or "").strip()[:1000]
    back = _safe_back(url_for("city.exceptions"))
    if outcome not in REVIEW_OUTCOMES:
        flash(_("Choose what was done about this exception."), "error")
        return redirect(back)
    gateway = _gateway()
    with gateway.db.write() as s:
        row = s.execute(select(Invoice, q.KIND_CASE).where(Invoice.id == invoice_id[:32])).first()
        if row is None:
            abort(404)
        invoice, kind = row
        if not kind:
            abort(409, description="this invoice is not an exception")
        review = s.get(CityExceptionReview, invoice.id) or CityExceptionReview(invoice_id=invoice.id)
        review.kind, review.outcome, review.note = kind, outcome, note
        review.reviewer_id, review.reviewer_role = current_user.id, current_user.role
        review.reviewed_at = gateway.clock()
        s.add(review)
        audit(s, current_user.actor(), "city.exception.reviewed", target=invoice.id,
              store_id=invoice.store_id, kind=kind, outcome=outcome, note=note)
    flash(_("Review recorded for invoice %(id)s.", id=invoice.id), "ok")
    return redirect(back)


EXPOSURE_HEADER = ["invoice_id", "store_id", "store_name", "status", "amount_krw", "due_sats",
                   "unconfirmed_sats", "created_seoul", "first_seen_seoul", "over_per_invoice_limit"]


@bp.get("/exposure")
def exposure():
    gateway = _gateway()
    with gateway.db.read() as s:
        expo = q.exposure(s, gateway.settings.zero_conf_limit_krw, gateway.clock(), limit=None)
        city_loss, _losses = city_losses(s, limit=0)
    if _wants_csv():
        limit = expo.per_invoice_limit_krw
        return csv_response("busanpay-city-exposure.csv", EXPOSURE_HEADER,
                            [[inv.id, inv.store_id, name, inv.status, inv.amount_krw, inv.due_sats,
                              int(sats or 0), inv.created_at, seen, (inv.amount_krw or 0) > limit]
                             for inv, name, seen, sats in expo.rows])
    gauge = charts.gauge("chart-exposure", _("Open 0-conf exposure against the cap"),
                         _("%(value)s at risk of a cap of %(cap)s.", value=won(expo.total_krw),
                           cap=won(expo.cap_krw)), expo.total_krw, expo.cap_krw)
    return render_template("dashboard/exposure.html", expo=expo, gauge=gauge, active="exposure",
                           now=gateway.clock(), city_loss=city_loss)


@bp.post("/exposure/cap")
@require_roles("city_admin")
def set_exposure_cap():
    raw = (request.form.get("cap_krw") or "").replace(",", "").replace("₩", "").strip()
    try:
        value = whole_number(raw, maximum=q.MAX_EXPOSURE_CAP_KRW)
    except UntrustedInput:
        flash(_("The cap is a whole number of won (0 to 9,999,999,999,999)."), "error")
        return redirect(url_for("city.exposure"))
    gateway = _gateway()
    with gateway.db.write() as s:
        before = q.exposure_cap(s)
        setting = s.get(CitySetting, q.EXPOSURE_CAP_SETTING) or CitySetting(name=q.EXPOSURE_CAP_SETTING, value=0)
        setting.value, setting.updated_by, setting.updated_at = value, current_user.id, gateway.clock()
        s.add(setting)
        audit(s, current_user.actor(), "city.exposure_cap.set", target=q.EXPOSURE_CAP_SETTING,
              before=before, after=value)
    flash(_("The 0-conf exposure cap is now %(cap)s.", cap=won(value)), "ok")
    return redirect(url_for("city.exposure"))


PAYOUT_HEADER = ["payout_id", "store_id", "store_name", "day", "amount_krw", "rail", "status",
                 "needs_attention", "attempts", "last_error", "external_id", "updated_seoul"]


@bp.get("/settlement")
def settlement():
    period = _period()
    store_id = (request.args.get("store") or "").strip()[:48] or None
    with _gateway().db.read() as s:
        payouts = q.payouts(s, period, store_id=store_id, page=_page(), everything=_wants_csv())
        fx = q.fx_results(s, period)
        refunds = q.refund_claims_waiting(s, limit=200)
    if _wants_csv():
        table = request.args.get("table", "payouts")
        if table == "fx":
            if fx is None:
                abort(404, description="the ledger is not available yet")
            return csv_response(f"busanpay-city-fx-{period.slug()}.csv",
                                ["day", "gain_krw", "loss_krw", "net_krw"],
                                [[d["day"], d["gain"], d["loss"], d["net"]] for d in fx["days"]])
        if table == "refunds":
            if refunds is None:
                abort(404, description="refund claims are not available yet")
            return csv_response("busanpay-city-refunds-waiting.csv",
                                ["claim_id", "invoice_id", "store_id", "store_name", "status",
                                 "amount_sats", "created_seoul", "action"],
                                [[c.id, c.invoice_id, c.store_id, name, c.status, c.amount_sats,
                                  c.created_at, str(REFUND_ACTIONS.get(c.status, ""))]
                                 for c, name in refunds["rows"]])
        if payouts is None:
            abort(404, description="payouts are not available yet")
        return csv_response(f"busanpay-{'store-' + store_id if store_id else 'city'}-payouts-"
                            f"{period.slug()}.csv", PAYOUT_HEADER,
                            [[p.id, p.store_id, name, p.day, p.amount_krw, p.rail, p.status,
                              p.needs_attention, p.attempts, p.last_error, p.external_id,
                              p.updated_at] for p, name in payouts["rows"]])
    pages = max(1, -(-payouts["total"] // 25)) if payouts else 1
    return render_template("dashboard/settlement.html", period=period, payouts=payouts, fx=fx,
                           refunds=refunds, page=_page(), pages=pages, active="settlement")


AUDIT_HEADER = ["at_seoul", "actor_id", "actor_email", "actor_role", "action", "store_id",
                "store_name", "target", "details", "ip"]


def _date_arg(name: str) -> date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return calendar_day(raw)
    except UntrustedInput:
        _refuse_day()


@bp.get("/audit")
def audit_log():
    flt = q.AuditFilter(actor=(request.args.get("actor") or "")[:200],
                        action=(request.args.get("action") or "")[:60],
                        store=(request.args.get("store") or "")[:48],
                        start=_date_arg("from"), end=_date_arg("to"))
    with _gateway().db.read() as s:
        rows, total = q.audit_entries(s, flt, page=_page(), everything=_wants_csv())
        if _wants_csv():
            return csv_response("busanpay-city-audit.csv", AUDIT_HEADER,
                                [[e.at, e.actor_id, email, e.actor_role, e.action, e.store_id,
                                  store_name, e.target, q.details_text(e), e.ip]
                                 for e, email, _name, store_name in rows])
        actions = q.recent_actions(s)
    return render_template("dashboard/audit.html", rows=rows, total=total, flt=flt,
                           actions=actions, page=_page(), pages=max(1, -(-total // 50)),
                           details_text=q.details_text, active="audit")
