"""What the city dashboard reads. No Flask here: each function takes a session.

Period figures come from the rollup (``dashboard.rollup.facts``); lists of invoices come
from ``invoice`` through its indexes (store + created_at; the partial exception index;
the partial index of unconfirmed payments). Tables of other packages (settlement's
payouts, ledger, refund claims) are read only when they exist in the database
(:func:`available`); otherwise the page says the figure is not available yet.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, exists, func, inspect, literal, literal_column, or_, select, text
from sqlalchemy.orm import aliased

from accounts.models import AuditEntry, User
from dashboard.fmt import day_range, half_up_div, seoul_day, seoul_midnight_utc
from dashboard.models import ROLLUP_COLUMNS, CityExceptionReview, CitySetting
from dashboard.rollup import facts, sums
from merchants.districts import CATEGORIES, DISTRICTS
from merchants.models import Store
from payments.models import METHOD_CHAIN, Invoice, Payment
from untrusted import UntrustedInput, calendar_day, whole_number

MAX_PERIOD_DAYS = 400
PRESETS = ("today", "7d", "30d", "month", "last-month")
EXPOSURE_CAP_SETTING = "zero_conf_exposure_cap_krw"
DEFAULT_EXPOSURE_CAP_KRW = 5_000_000
MAX_EXPOSURE_CAP_KRW = 9_999_999_999_999
EXPOSURE_WINDOW = timedelta(days=14)  # Bitcoin Core's default mempool expiry (336 h)


# -- period --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """Asia/Seoul calendar days from `start` to `end`, both included."""
    start: date
    end: date
    preset: str = ""

    @property
    def utc_start(self) -> datetime:
        return seoul_midnight_utc(self.start)

    @property
    def utc_end(self) -> datetime:  # exclusive
        return seoul_midnight_utc(self.end + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return day_range(self.start, self.end)

    def args(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}

    def slug(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"


def preset_period(preset: str, today: date) -> Period:
    if preset == "today":
        return Period(today, today, preset)
    if preset == "7d":
        return Period(today - timedelta(days=6), today, preset)
    if preset == "month":
        return Period(today.replace(day=1), today, preset)
    if preset == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return Period(end.replace(day=1), end, preset)
    return Period(today - timedelta(days=29), today, "30d")


def parse_period(args, now: datetime) -> tuple[Period, str | None]:
    """From ?preset= or ?from=&to= (YYYY-MM-DD, Seoul days); last 30 days by default. An
    unreadable or out-of-range day raises UntrustedInput; a period that ends before it
    starts or is too long comes back as a default with the reason."""
    today = seoul_day(now)
    preset = (args.get("preset") or "").strip()
    raw_from, raw_to = (args.get("from") or "").strip(), (args.get("to") or "").strip()
    if preset in PRESETS and preset != "custom":
        return preset_period(preset, today), None
    if not raw_from and not raw_to:
        return preset_period("30d", today), None
    # A day that is not YYYY-MM-DD within the calendar's safe range raises UntrustedInput.
    start = calendar_day(raw_from) if raw_from else None
    end = calendar_day(raw_to) if raw_to else today
    if start is None:
        start = end - timedelta(days=29)
    if end < start:
        return preset_period("30d", today), "the period ends before it starts"
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        return Period(end - timedelta(days=MAX_PERIOD_DAYS - 1), end), \
            f"a period is at most {MAX_PERIOD_DAYS} days"
    for name, value in PRESETS_BY_RANGE(today).items():
        if value == (start, end):
            return Period(start, end, name), None
    return Period(start, end, "custom"), None


def PRESETS_BY_RANGE(today: date) -> dict:  # noqa: N802 (a table, computed per day)
    return {p: (preset_period(p, today).start, preset_period(p, today).end) for p in PRESETS}


# -- availability of other packages' tables ------------------------------------------------

_seen_tables: dict[tuple[str, str], bool] = {}


def available(session, *tables: str) -> bool:
    """True when every table exists in this database (a positive answer is cached)."""
    bind = session.get_bind()
    url = str(bind.url)
    missing = [t for t in tables if not _seen_tables.get((url, t))]
    if not missing:
        return True
    inspector = inspect(session.connection())
    for table in missing:
        if not inspector.has_table(table):
            return False
        _seen_tables[(url, table)] = True
    return True


# -- overview figures ----------------------------------------------------------------------

@dataclass
class StoreFigures:
    store_id: str
    name: str
    district: str
    category: str
    archived: bool
    counters: dict

    def __getattr__(self, item):
        counters = self.__dict__.get("counters") or {}
        if item in counters:
            return counters[item]
        raise AttributeError(item)

    @property
    def average_ticket_krw(self) -> int:
        return half_up_div(self.counters["settled_krw"], self.counters["settled_n"])

    @property
    def exceptions(self) -> int:
        c = self.counters
        return sum(c.get(k, 0) for k in ("invalid_n", "paid_late_n", "paid_over_n", "paid_partial_n"))


@dataclass
class Overview:
    totals: dict
    by_district: list[dict]
    by_category: list[dict]
    stores: list[StoreFigures] = field(default_factory=list)


# What the HTML pages show (CSV downloads take every column): summing fewer columns over a
# month of store-days is most of the main page's database time.
SUMMARY_COLUMNS = ("invoices", "settled_n", "processing_n", "settled_krw", "settled_sats")
MERCHANT_COLUMNS = SUMMARY_COLUMNS + ("invalid_n", "paid_late_n", "paid_over_n", "paid_partial_n")
DAY_COLUMNS = ("invoices", "settled_n", "settled_krw", "settled_sats")


def _zero(columns=ROLLUP_COLUMNS) -> dict:
    return {c: 0 for c in columns}


def _add(target: dict, counters: dict) -> None:
    for c in counters:
        target[c] += counters[c]


def _finish(figures: dict, active: int | None = None) -> dict:
    figures["average_ticket_krw"] = half_up_div(figures["settled_krw"], figures["settled_n"])
    if active is not None:
        figures["active_merchants"] = active
    return figures


def store_figures(session, period: Period, columns=ROLLUP_COLUMNS) -> list[StoreFigures]:
    """Per store with invoices in the period: the summed counters (one pass over the rollup)."""
    f = facts(period.start, period.end, columns=columns)
    per_store = select(f.c.store_id, *sums(f, columns)).group_by(f.c.store_id).subquery("per_store")
    query = (select(Store.id, Store.name, Store.district, Store.category, Store.archived,
                    *[per_store.c[c] for c in columns])
             .join(per_store, per_store.c.store_id == Store.id))
    rows = []
    for row in session.execute(query):
        m = row._mapping
        rows.append(StoreFigures(m["id"], m["name"], m["district"], m["category"],
                                 bool(m["archived"]), {c: int(m[c]) for c in columns}))
    return rows


def overview(session, period: Period, columns=ROLLUP_COLUMNS) -> Overview:
    stores = store_figures(session, period, columns)
    totals = _zero(columns)
    districts = {slug: _zero(columns) for slug in DISTRICTS}
    district_active = {slug: 0 for slug in DISTRICTS}
    categories = {c: _zero(columns) for c in CATEGORIES}
    category_active = {c: 0 for c in CATEGORIES}
    active = 0
    for s in stores:
        _add(totals, s.counters)
        districts.setdefault(s.district, _zero(columns))
        _add(districts[s.district], s.counters)
        categories.setdefault(s.category, _zero(columns))
        _add(categories[s.category], s.counters)
        if s.counters["settled_n"] > 0:
            active += 1
            district_active[s.district] = district_active.get(s.district, 0) + 1
            category_active[s.category] = category_active.get(s.category, 0) + 1
    by_district = [dict(_finish(v, district_active.get(k, 0)), slug=k,
                        name_ko=DISTRICTS.get(k, (k, k))[0], name_en=DISTRICTS.get(k, (k, k))[1])
                   for k, v in districts.items()]
    by_category = [dict(_finish(v, category_active.get(k, 0)), slug=k) for k, v in categories.items()]
    return Overview(_finish(totals, active), by_district, by_category, stores)


def by_day(session, period: Period, store_id: str | None = None,
           columns=ROLLUP_COLUMNS) -> list[dict]:
    f = facts(period.start, period.end, store_id, columns=columns)
    found = {}
    for row in session.execute(select(f.c.day, *sums(f, columns)).group_by(f.c.day)):
        m = row._mapping
        day = m["day"] if isinstance(m["day"], date) else date.fromisoformat(str(m["day"]))
        found[day] = {c: int(m[c]) for c in columns}
    return [dict(_finish(found.get(d) or _zero(columns)), day=d) for d in period.days]


def period_totals(session, period: Period, store_id: str | None = None) -> dict:
    f = facts(period.start, period.end, store_id)
    row = session.execute(select(*sums(f))).one()._mapping
    return _finish({c: int(row[c]) for c in ROLLUP_COLUMNS})


# -- merchants table -----------------------------------------------------------------------

MERCHANT_SORTS = ("volume", "name", "district", "category", "invoices", "settled", "btc",
                  "average", "exceptions")


@dataclass
class MerchantPage:
    rows: list[StoreFigures]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _merchant_query(period: Period, search: str, district: str, category: str, columns):
    conditions = _store_conditions(search, district, category)
    f = facts(period.start, period.end, columns=columns)
    aggregate = select(f.c.store_id, *sums(f, columns)).group_by(f.c.store_id)
    if conditions:  # only the matching stores' rows are summed
        aggregate = aggregate.where(f.c.store_id.in_(select(Store.id).where(and_(*conditions))))
    # Materialized: computed once, never re-run per store by a nested loop the planner may
    # pick when it expects a search to match one store.
    per_store = aggregate.cte("per_store").prefix_with("MATERIALIZED", dialect="postgresql")
    cols = {c: func.coalesce(per_store.c[c], 0).label(c) for c in columns}
    query = (select(Store.id, Store.name, Store.district, Store.category, Store.archived,
                    *cols.values())
             .select_from(Store).outerjoin(per_store, per_store.c.store_id == Store.id))
    if conditions:
        query = query.where(and_(*conditions))
    return query, cols, conditions


def _store_conditions(search: str, district: str, category: str) -> list:
    conditions = []
    search = (search or "").strip()
    if search:
        needle = search.lower()
        conditions.append(or_(func.lower(Store.name).contains(needle, autoescape=True),
                              Store.id == search))
    if district:
        conditions.append(Store.district == district)
    if category:
        conditions.append(Store.category == category)
    return conditions


def merchants(session, period: Period, *, search: str = "", district: str = "",
              category: str = "", sort: str = "volume", descending: bool = True,
              page: int = 1, per_page: int = 25, everything: bool = False,
              columns=MERCHANT_COLUMNS) -> MerchantPage:
    columns = tuple(dict.fromkeys(tuple(columns) + MERCHANT_COLUMNS))  # the sort keys need these
    query, cols, conditions = _merchant_query(period, search, district, category, columns)
    keys = {
        "volume": cols["settled_krw"], "name": Store.name, "district": Store.district,
        "category": Store.category, "invoices": cols["invoices"], "settled": cols["settled_n"],
        "btc": cols["settled_sats"],
        "average": case((cols["settled_n"] > 0, cols["settled_krw"] / cols["settled_n"]), else_=0),
        "exceptions": cols["invalid_n"] + cols["paid_late_n"] + cols["paid_over_n"] + cols["paid_partial_n"],
    }
    key = keys.get(sort, keys["volume"])
    query = query.order_by(key.desc() if descending else key.asc(), Store.name.asc(), Store.id.asc())
    count_query = select(func.count()).select_from(Store)
    if conditions:
        count_query = count_query.where(and_(*conditions))
    total = int(session.execute(count_query).scalar_one())
    page = max(1, page)
    if not everything:
        query = query.limit(per_page).offset((page - 1) * per_page)
    rows = []
    for row in session.execute(query):
        m = row._mapping
        rows.append(StoreFigures(m["id"], m["name"], m["district"], m["category"],
                                 bool(m["archived"]), {c: int(m[c]) for c in columns}))
    return MerchantPage(rows, total, page, per_page)


# -- one store -----------------------------------------------------------------------------

def store(session, store_id: str) -> Store | None:
    if not store_id or len(store_id) > 48:
        return None
    return session.get(Store, store_id)


INVOICE_STATUSES = ("New", "Processing", "Settled", "Expired", "Invalid")
_STATUS_COUNTER = {"New": "new_n", "Processing": "processing_n", "Settled": "settled_n",
                   "Expired": "expired_n", "Invalid": "invalid_n"}


def store_invoices(session, store_id: str, period: Period, *, status: str = "",
                   page: int = 1, per_page: int = 25, everything: bool = False):
    """A page of the store's invoices in the period, newest first, and how many there are
    (the count comes from the rollup, not a COUNT over invoices)."""
    query = (select(Invoice).where(Invoice.store_id == store_id,
                                   Invoice.created_at >= period.utc_start,
                                   Invoice.created_at < period.utc_end)
             .order_by(Invoice.created_at.desc(), Invoice.id.desc()))
    if status in INVOICE_STATUSES:
        query = query.where(Invoice.status == status)
    totals = period_totals(session, period, store_id)
    total = totals[_STATUS_COUNTER[status]] if status in INVOICE_STATUSES else totals["invoices"]
    if not everything:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    return list(session.scalars(query)), total


def store_staff(session, store_id: str) -> list[User]:
    return list(session.scalars(select(User).where(User.store_id == store_id)
                                .order_by(User.role.desc(), User.display_name, User.id)))


# -- exceptions ----------------------------------------------------------------------------

# The queue follows the money: the chain status (`chain_status`, kept when a merchant marks
# the invoice), never the mark. A marked invoice's additional status reads "Marked", so an
# expired one with money on it is partial (less than due) or late (all of it) by its sats.
# The same text as the partial index ix_invoice_exceptions (0023), so PostgreSQL uses it.
EXCEPTION_SQL = ("(COALESCE(invoice.chain_status, invoice.status) = 'Invalid' "
                 "OR invoice.additional_status IN ('PaidPartial', 'PaidOver', 'PaidLate') "
                 "OR (invoice.additional_status = 'Marked' "
                 "AND COALESCE(invoice.chain_status, invoice.status) = 'Expired' "
                 "AND invoice.paid_sats > 0) "
                 "OR invoice.incident IS NOT NULL)")
EXCEPTION_KINDS = ("deep-reorg", "invalid", "overpaid", "late", "partial")

_MONEY_STATUS = func.coalesce(Invoice.chain_status, Invoice.status)
_MARKED_EXPIRED_PAID = and_(Invoice.additional_status == "Marked", _MONEY_STATUS == "Expired",
                            Invoice.paid_sats > 0)

_KIND_CONDITION = {
    "deep-reorg": Invoice.incident.isnot(None),
    "invalid": and_(Invoice.incident.is_(None), _MONEY_STATUS == "Invalid"),
    "overpaid": and_(Invoice.incident.is_(None), _MONEY_STATUS != "Invalid",
                     Invoice.additional_status == "PaidOver"),
    "late": and_(Invoice.incident.is_(None), _MONEY_STATUS != "Invalid",
                 or_(Invoice.additional_status == "PaidLate",
                     and_(_MARKED_EXPIRED_PAID, Invoice.paid_sats >= Invoice.due_sats))),
    "partial": and_(Invoice.incident.is_(None), _MONEY_STATUS == "Expired",
                    or_(Invoice.additional_status == "PaidPartial",
                        and_(_MARKED_EXPIRED_PAID, Invoice.paid_sats < Invoice.due_sats))),
}
KIND_CASE = case(*((condition, literal(kind)) for kind, condition in _KIND_CONDITION.items()),
                 else_=literal(""))
# In flight, not an exception yet: a New invoice with part of the money (the payer may
# still top up before expiry).
_IN_FLIGHT = and_(_MONEY_STATUS == "New", Invoice.incident.is_(None))


@dataclass
class ExceptionRow:
    invoice: Invoice
    kind: str
    store_name: str
    review: CityExceptionReview | None


def _reviewed():
    # A review covers the incident open when it was made, not one that opened after it.
    return exists(select(CityExceptionReview.invoice_id)
                  .where(CityExceptionReview.invoice_id == Invoice.id,
                         or_(Invoice.incident_since.is_(None),
                             CityExceptionReview.reviewed_at >= Invoice.incident_since))
                  .correlate(Invoice))


def exception_counts(session, *, store_id: str | None = None) -> dict[str, int]:
    """Open exceptions (no review yet) by kind, all time."""
    query = (select(KIND_CASE.label("kind"), func.count().label("n"))
             .where(text(EXCEPTION_SQL)).where(~_IN_FLIGHT).where(~_reviewed())
             .group_by(KIND_CASE))
    if store_id:
        query = query.where(Invoice.store_id == store_id)
    counts = {k: 0 for k in EXCEPTION_KINDS}
    for kind, n in session.execute(query):
        if kind:
            counts[kind] += int(n)
    return counts


def exceptions(session, *, kind: str = "", state: str = "open", store_id: str | None = None,
               page: int = 1, per_page: int = 25, everything: bool = False,
               with_total: bool = True) -> tuple[list[ExceptionRow], int | None]:
    query = (select(Invoice, KIND_CASE.label("kind"), Store.name, CityExceptionReview)
             .join(Store, Store.id == Invoice.store_id)
             .outerjoin(CityExceptionReview, CityExceptionReview.invoice_id == Invoice.id)
             .where(text(EXCEPTION_SQL)).where(~_IN_FLIGHT))
    count = select(func.count()).select_from(Invoice).where(text(EXCEPTION_SQL)).where(~_IN_FLIGHT)
    filters = []
    if kind in _KIND_CONDITION:
        filters.append(_KIND_CONDITION[kind])
    if state == "open":
        filters.append(~_reviewed())
    elif state == "reviewed":
        filters.append(_reviewed())
    if store_id:
        filters.append(Invoice.store_id == store_id)
    for condition in filters:
        query, count = query.where(condition), count.where(condition)
    query = query.order_by(Invoice.created_at.desc(), Invoice.id.desc())
    if not everything:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    rows = [ExceptionRow(inv, k, name, review) for inv, k, name, review in session.execute(query)]
    return rows, (int(session.execute(count).scalar_one()) if with_total else None)


def refund_claims_waiting(session, *, store_id: str | None = None, limit: int = 50) -> dict | None:
    """Refund claims a person must act on (settlement's table), or None when absent."""
    if not available(session, "refund_claim"):
        return None
    from settlement.models import RefundClaim

    waiting = ("open", "submitted", "approved")
    order = case((RefundClaim.status == "submitted", 0), (RefundClaim.status == "approved", 1), else_=2)
    query = (select(RefundClaim, Store.name).join(Store, Store.id == RefundClaim.store_id)
             .where(RefundClaim.status.in_(waiting)))
    count = select(RefundClaim.status, func.count()).where(RefundClaim.status.in_(waiting))
    if store_id:
        query = query.where(RefundClaim.store_id == store_id)
        count = count.where(RefundClaim.store_id == store_id)
    rows = list(session.execute(query.order_by(order, RefundClaim.created_at).limit(limit)))
    counts = {s: 0 for s in waiting}
    for status, n in session.execute(count.group_by(RefundClaim.status)):
        counts[status] = int(n)
    return {"rows": rows, "counts": counts, "total": sum(counts.values())}


# -- 0-conf exposure -----------------------------------------------------------------------

@dataclass
class Exposure:
    rows: list
    total_krw: int
    processing_krw: int
    settled_krw: int
    cap_krw: int
    per_invoice_limit_krw: int

    @property
    def share(self) -> float:  # for drawing the gauge only (not money)
        return (self.total_krw / self.cap_krw) if self.cap_krw else 0.0

    @property
    def over_cap(self) -> bool:
        return self.cap_krw > 0 and self.total_krw > self.cap_krw


def exposure_cap(session) -> int:
    setting = session.get(CitySetting, EXPOSURE_CAP_SETTING)
    if setting is not None:
        return int(setting.value)
    raw = os.environ.get("BUSANPAY_ZERO_CONF_EXPOSURE_CAP_KRW", "")
    try:
        return whole_number(raw.strip(), maximum=MAX_EXPOSURE_CAP_KRW)
    except UntrustedInput:
        return DEFAULT_EXPOSURE_CAP_KRW


def exposure(session, per_invoice_limit_krw: int, now: datetime, limit: int | None = 200) -> Exposure:
    """HighSpeed invoices counted as paid (Processing, or Settled at 0 confirmations) while
    none of their payments is in a block yet: the won the city stands to lose to a double
    spend. Found through the partial index of unconfirmed payments, among payments seen in
    the last EXPOSURE_WINDOW (nodes drop an unconfirmed transaction after two weeks)."""
    unconfirmed = aliased(Payment, name="unconf")
    confirmed = aliased(Payment, name="conf")
    pending = (select(unconfirmed.invoice_id, func.min(unconfirmed.seen_at).label("seen_at"),
                      func.sum(unconfirmed.value_sats).label("sats"))
               .where(unconfirmed.block_height.is_(None), unconfirmed.state == literal_column("'seen'"),
                      unconfirmed.method == METHOD_CHAIN,  # Lightning is final: no exposure
                      unconfirmed.seen_at >= now - EXPOSURE_WINDOW)
               .group_by(unconfirmed.invoice_id).subquery("pending"))
    money_status = func.coalesce(Invoice.chain_status, Invoice.status)  # never a merchant's mark
    query = (select(Invoice, Store.name, pending.c.seen_at, pending.c.sats)
             .join(pending, pending.c.invoice_id == Invoice.id)
             .join(Store, Store.id == Invoice.store_id)
             .where(Invoice.speed_policy == "HighSpeed",
                    money_status.in_(("Processing", "Settled")),
                    ~exists().where(confirmed.invoice_id == Invoice.id, confirmed.state == "seen",
                                    confirmed.block_height.isnot(None)))
             .order_by(Invoice.amount_krw.desc().nulls_last(), Invoice.created_at))
    rows = list(session.execute(query))
    by_status = {"Processing": 0, "Settled": 0}
    for r in rows:
        by_status[r[0].chain_status or r[0].status] += int(r[0].amount_krw or 0)
    processing, settled = by_status["Processing"], by_status["Settled"]
    return Exposure(rows[:limit] if limit else rows, processing + settled, processing, settled,
                    exposure_cap(session), per_invoice_limit_krw)


# -- settlement (optional) -----------------------------------------------------------------

PAYOUT_STATUSES = ("failed", "returned", "created", "sent", "paid")


def payouts(session, period: Period, *, store_id: str | None = None, page: int = 1,
            per_page: int = 25, everything: bool = False, attention_only: bool = False
            ) -> dict | None:
    """Payouts of the period's days, failures and those needing a person first
    (`attention_only`: just those, found through the status index)."""
    if not available(session, "payout"):
        return None
    from settlement.models import Payout

    in_period = and_(Payout.day >= period.start, Payout.day <= period.end)
    base = [in_period] + ([Payout.store_id == store_id] if store_id else [])
    needs_person = or_(Payout.needs_attention.is_(True), Payout.status.in_(("failed", "returned")))
    summary = {s: {"count": 0, "krw": 0} for s in PAYOUT_STATUSES}
    attention = 0
    for status, n, krw, flagged in session.execute(   # one pass over the period's payouts
            select(Payout.status, func.count(), func.coalesce(func.sum(Payout.amount_krw), 0),
                   func.count().filter(needs_person))
            .where(*base).group_by(Payout.status)):
        summary[status] = {"count": int(n), "krw": int(krw)}
        attention += int(flagged)
    order = case((Payout.status.in_(("failed", "returned")), 0),
                 (Payout.needs_attention.is_(True), 1),
                 (Payout.status.in_(("created", "sent")), 2), else_=3)
    query = (select(Payout, Store.name).join(Store, Store.id == Payout.store_id).where(*base)
             .order_by(order, Payout.day.desc(), Payout.updated_at.desc(), Payout.id))
    if attention_only:
        query = query.where(or_(Payout.status.in_(("failed", "returned")),
                                and_(Payout.status == "created", Payout.needs_attention.is_(True))))
    total = sum(v["count"] for v in summary.values())
    if not everything:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    return {"summary": summary, "attention": attention, "rows": list(session.execute(query)),
            "total": total}


def fx_results(session, period: Period) -> dict | None:
    """FX gains (+) and losses (−) in won by Seoul day, from the ledger's ``fx:krw`` account
    (a credit there is a gain), plus the period's conversions."""
    if not available(session, "ledger_account", "posting", "journal_entry"):
        return None
    from settlement.models import Conversion, JournalEntry, LedgerAccount, Posting

    rows = session.execute(
        select(JournalEntry.created_at, Posting.amount)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.code == "fx:krw", JournalEntry.created_at >= period.utc_start,
               JournalEntry.created_at < period.utc_end))
    days = {d: {"gain": 0, "loss": 0} for d in period.days}
    for created_at, amount in rows:
        bucket = days.setdefault(seoul_day(created_at), {"gain": 0, "loss": 0})
        if amount < 0:
            bucket["gain"] += -int(amount)
        else:
            bucket["loss"] += int(amount)
    table = [{"day": d, "gain": v["gain"], "loss": v["loss"], "net": v["gain"] - v["loss"]}
             for d, v in sorted(days.items())]
    conversions = []
    if available(session, "conversion"):
        order = case((Conversion.status == "failed", 0), (Conversion.status == "created", 1), else_=2)
        conversions = list(session.scalars(
            select(Conversion).where(Conversion.created_at >= period.utc_start,
                                     Conversion.created_at < period.utc_end)
            .order_by(order, Conversion.created_at.desc()).limit(100)))
    return {"days": table, "gain": sum(r["gain"] for r in table),
            "loss": sum(r["loss"] for r in table), "net": sum(r["net"] for r in table),
            "conversions": conversions}


# -- audit log -----------------------------------------------------------------------------

@dataclass
class AuditFilter:
    actor: str = ""
    action: str = ""
    store: str = ""
    start: date | None = None
    end: date | None = None


def audit_entries(session, flt: AuditFilter, *, page: int = 1, per_page: int = 50,
                  everything: bool = False, with_total: bool = True):
    query = (select(AuditEntry, User.email, User.display_name, Store.name)
             .outerjoin(User, User.id == AuditEntry.actor_id)
             .outerjoin(Store, Store.id == AuditEntry.store_id))
    count = select(func.count()).select_from(AuditEntry)
    conditions = []
    actor = flt.actor.strip()
    if actor:
        ids = select(User.id).where(or_(User.email == actor.lower(), User.id == actor))
        conditions.append(or_(AuditEntry.actor_id == actor, AuditEntry.actor_id.in_(ids)))
    if flt.action.strip():
        conditions.append(AuditEntry.action == flt.action.strip())
    if flt.store.strip():
        conditions.append(AuditEntry.store_id == flt.store.strip())
    if flt.start:
        conditions.append(AuditEntry.at >= seoul_midnight_utc(flt.start))
    if flt.end:
        conditions.append(AuditEntry.at < seoul_midnight_utc(flt.end + timedelta(days=1)))
    for condition in conditions:
        query, count = query.where(condition), count.where(condition)
    query = query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if not everything:
        query = query.limit(per_page).offset((max(1, page) - 1) * per_page)
    rows = list(session.execute(query))
    return rows, (int(session.execute(count).scalar_one()) if with_total else None)


def recent_actions(session, limit: int = 2000) -> list[str]:
    """Distinct action names among the latest entries (suggestions for the filter)."""
    latest = select(AuditEntry.action).order_by(AuditEntry.at.desc()).limit(limit).subquery()
    return sorted({a for (a,) in session.execute(select(latest.c.action).distinct())})


def details_text(entry: AuditEntry) -> str:
    try:
        details = json.loads(entry.details_json or "{}")
    except ValueError:
        return entry.details_json or ""
    return ", ".join(f"{k}={v}" for k, v in details.items()) if isinstance(details, dict) else str(details)
