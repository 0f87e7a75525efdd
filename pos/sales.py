"""POS rules: what a charge is, the tip, the Asia/Seoul business day and the day's totals.

No Flask here. Money is integer won; the tip is rounded once, half up, to whole won
(won has no minor unit). Errors are codes with parameters: the web edge words them in
the cashier's language.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from payments.models import METHOD_CHAIN, METHOD_LIGHTNING, Invoice, Payment

SEOUL = ZoneInfo("Asia/Seoul")
TIP_PRESETS = (0, 5, 10, 15)
MAX_TIP_PERCENT = 30
MAX_MEMO_CHARS = 120
# "15000", "15,000" or "₩15,000": digits with optional thousands separators, nothing else.
# ASCII digits only: \d and int() also take full-width and Arabic-Indic digits.
_WON_TEXT = re.compile(r"₩?\s*([0-9]{1,3}(,[0-9]{3}){1,5}|[0-9]{1,16})")
_TIP_TEXT = re.compile(r"[0-9]{1,3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

PAID_STATUSES = ("Settled",)
CONFIRMING_STATUSES = ("Processing",)
EXCEPTION_ADDITIONAL = ("PaidPartial", "PaidOver", "PaidLate")
EXCEPTION_STATUSES = ("Invalid", "Expired")
#: How a sale was paid, from its counted payments' methods (the web edge words the codes).
WAY_LIGHTNING, WAY_CHAIN, WAY_BOTH = "lightning", "chain", "both"
WAYS = (WAY_LIGHTNING, WAY_CHAIN, WAY_BOTH)


def way_of(methods: Iterable[str]) -> str | None:
    """'lightning', 'chain' or 'both' for the methods of a sale's counted payments; None
    when nothing counted came."""
    kinds = set(methods)
    if not kinds:
        return None
    if kinds == {METHOD_LIGHTNING}:
        return WAY_LIGHTNING
    return WAY_BOTH if METHOD_LIGHTNING in kinds else WAY_CHAIN


@dataclass(frozen=True)
class ChargeError:
    field: str
    code: str
    params: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"path": self.field, "code": self.code, **self.params}


class ChargeRefused(ValueError):
    def __init__(self, errors: list[ChargeError]):
        super().__init__("; ".join(f"{e.field}: {e.code}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Charge:
    subtotal_krw: int
    tip_percent: int
    tip_krw: int
    memo: str

    @property
    def total_krw(self) -> int:
        return self.subtotal_krw + self.tip_krw


def tip_for(subtotal_krw: int, percent: int) -> int:
    """The tip in whole won: subtotal × percent / 100, rounded half up (integers only)."""
    if subtotal_krw < 0 or percent < 0:
        raise ValueError("subtotal and percent are not negative")
    return (subtotal_krw * percent + 50) // 100


def parse_won(raw: Any) -> int:
    """A whole, positive won amount from JSON (int or digit text); ValueError codes otherwise."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError("amount.required" if raw is None else "amount.not_number")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise ValueError("amount.not_number")
        if raw != int(raw):
            raise ValueError("amount.not_whole")
        value = int(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise ValueError("amount.required")
        if text.startswith("-"):
            raise ValueError("amount.positive")
        if re.fullmatch(r"₩?\s*[0-9,]*[.][0-9]*", text):
            raise ValueError("amount.not_whole")
        if not _WON_TEXT.fullmatch(text):
            raise ValueError("amount.not_number")
        value = int(text.lstrip("₩").strip().replace(",", ""))
    else:
        raise ValueError("amount.not_number")
    if value <= 0:
        raise ValueError("amount.positive")
    return value


def parse_charge(body: Any, *, max_krw: int) -> Charge:
    """The POS's JSON body {amount, tipPercent, memo}; raises ChargeRefused with every problem."""
    if not isinstance(body, dict):
        raise ChargeRefused([ChargeError("", "body.not_object")])
    errors: list[ChargeError] = []
    for name in body:
        if name not in ("amount", "tipPercent", "memo"):
            errors.append(ChargeError(name, "field.unknown"))
    subtotal = 0
    try:
        subtotal = parse_won(body.get("amount"))
        if subtotal > max_krw:
            errors.append(ChargeError("amount", "amount.too_large", {"max": max_krw}))
    except ValueError as err:
        errors.append(ChargeError("amount", str(err)))
    percent = body.get("tipPercent", 0)
    if percent in (None, ""):
        percent = 0
    if isinstance(percent, str) and _TIP_TEXT.fullmatch(percent.strip()):
        percent = int(percent.strip())
    if isinstance(percent, bool) or not isinstance(percent, int) or \
            not 0 <= percent <= MAX_TIP_PERCENT:
        errors.append(ChargeError("tipPercent", "tip.invalid", {"max": MAX_TIP_PERCENT}))
        percent = 0
    memo = body.get("memo") or ""
    if not isinstance(memo, str):
        errors.append(ChargeError("memo", "memo.not_text"))
        memo = ""
    memo = _CONTROL.sub(" ", memo).strip()
    if len(memo) > MAX_MEMO_CHARS:
        errors.append(ChargeError("memo", "memo.too_long", {"max": MAX_MEMO_CHARS}))
    tip = tip_for(subtotal, percent)
    if not errors and subtotal + tip > max_krw:
        errors.append(ChargeError("amount", "amount.too_large", {"max": max_krw}))
    if errors:
        raise ChargeRefused(errors)
    return Charge(subtotal_krw=subtotal, tip_percent=percent, tip_krw=tip, memo=memo)


def invoice_body(charge: Charge, *, cashier_id: str, cashier_name: str) -> dict:
    """The Greenfield create-invoice body for a charge (amounts as decimal strings)."""
    metadata: dict = {"posData": {
        "subtotalKrw": str(charge.subtotal_krw), "tipPercent": charge.tip_percent,
        "tipKrw": str(charge.tip_krw), "cashierId": cashier_id, "cashier": cashier_name,
        "source": "pos"}}
    if charge.memo:
        metadata["itemDesc"] = charge.memo
    return {"amount": str(charge.total_krw), "currency": "KRW", "metadata": metadata}


def pos_data(invoice: Invoice) -> dict:
    """What the POS put on the invoice (empty for invoices made through the API)."""
    try:
        metadata = json.loads(invoice.metadata_json or "{}")
    except ValueError:
        return {}
    data = metadata.get("posData") if isinstance(metadata, dict) else None
    result = dict(data) if isinstance(data, dict) else {}
    if isinstance(metadata, dict) and isinstance(metadata.get("itemDesc"), str):
        result["memo"] = metadata["itemDesc"]
    return result


def _int(text: Any) -> int:
    try:
        return int(str(text))
    except (TypeError, ValueError):
        return 0


# -- the Asia/Seoul day ---------------------------------------------------------------------
def seoul_day(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError("naive datetime refused: use aware UTC")
    return moment.astimezone(SEOUL).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of an Asia/Seoul calendar day, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=SEOUL)
    return start, start + timedelta(days=1)


# -- totals ---------------------------------------------------------------------------------
@dataclass
class Totals:
    count: int = 0
    paid_count: int = 0
    paid_krw: int = 0
    tips_krw: int = 0
    confirming_count: int = 0
    confirming_krw: int = 0
    open_count: int = 0
    unpaid_count: int = 0
    # Paid sales by way ('lightning', 'chain', 'both'): [count, won].
    by_way: dict = field(default_factory=lambda: {way: [0, 0] for way in WAYS})

    def add(self, invoice: Invoice, way: str | None = None) -> None:
        self.count += 1
        amount = invoice.amount_krw or 0
        if invoice.status in PAID_STATUSES:
            self.paid_count += 1
            self.paid_krw += amount
            self.tips_krw += _int(pos_data(invoice).get("tipKrw"))
            if way in self.by_way:  # a sale marked paid by staff has no way
                self.by_way[way][0] += 1
                self.by_way[way][1] += amount
        elif invoice.status in CONFIRMING_STATUSES:
            self.confirming_count += 1
            self.confirming_krw += amount
        elif invoice.status == "New":
            self.open_count += 1
        else:
            self.unpaid_count += 1


def totals(invoices: Iterable[Invoice], cashier_id: str | None = None,
           ways: dict[str, str] | None = None) -> Totals:
    """Sums over invoices; with ``cashier_id`` only the sales that cashier rang up; ``ways``
    (invoice id → way, see `ways_of`) splits the paid ones by how they were paid."""
    result = Totals()
    for invoice in invoices:
        if cashier_id is None or pos_data(invoice).get("cashierId") == cashier_id:
            result.add(invoice, (ways or {}).get(invoice.id))
    return result


def ways_of(session: Session, invoice_ids: list[str]) -> dict[str, str]:
    """How each invoice was paid (counted payments only): invoice id → way."""
    methods: dict[str, set] = {}
    for start in range(0, len(invoice_ids), 500):
        query = select(Payment.invoice_id, Payment.method).where(
            Payment.invoice_id.in_(invoice_ids[start:start + 500]), Payment.state == "seen")
        for invoice_id, method in session.exec(query):
            methods.setdefault(invoice_id, set()).add(method or METHOD_CHAIN)
    return {invoice_id: way_of(kinds) for invoice_id, kinds in methods.items()}


def exception_code(invoice: Invoice) -> str | None:
    """Why an invoice needs a look (PaidPartial, PaidOver, PaidLate, Invalid, Expired), or None."""
    if invoice.additional_status in EXCEPTION_ADDITIONAL:
        return invoice.additional_status
    if invoice.status in EXCEPTION_STATUSES:
        return invoice.status
    return None


# -- queries (a session is passed in) ---------------------------------------------------------
def day_invoices(session: Session, store_id: str, day: date, limit: int = 2000) -> list[Invoice]:
    start, end = day_bounds(day)
    query = (select(Invoice).where(Invoice.store_id == store_id, Invoice.created_at >= start,
                                   Invoice.created_at < end)
             .order_by(Invoice.created_at.desc(), Invoice.id).limit(limit))
    return list(session.exec(query))


def recent_invoices(session: Session, store_id: str, *, exceptions_only: bool = False,
                    limit: int = 50) -> list[Invoice]:
    query = select(Invoice).where(Invoice.store_id == store_id)
    if exceptions_only:
        query = query.where(Invoice.additional_status.in_(EXCEPTION_ADDITIONAL)
                            | Invoice.status.in_(EXCEPTION_STATUSES))
    query = query.order_by(Invoice.created_at.desc(), Invoice.id).limit(limit)
    return list(session.exec(query))


@dataclass
class DayLine:
    day: date
    invoices: int = 0
    paid_count: int = 0
    paid_krw: int = 0
    tips_krw: int = 0


def daily_sales(session: Session, store_id: str, first: date, last: date) -> list[DayLine]:
    """Per Asia/Seoul day from ``first`` to ``last`` inclusive: invoices and settled sales."""
    start, _ = day_bounds(first)
    _, end = day_bounds(last)
    lines = {first + timedelta(days=i): DayLine(first + timedelta(days=i))
             for i in range((last - first).days + 1)}
    query = select(Invoice).where(Invoice.store_id == store_id, Invoice.created_at >= start,
                                  Invoice.created_at < end)
    for invoice in session.exec(query):
        line = lines.get(seoul_day(invoice.created_at))
        if line is None:
            continue
        line.invoices += 1
        if invoice.status in PAID_STATUSES:
            line.paid_count += 1
            line.paid_krw += invoice.amount_krw or 0
            line.tips_krw += _int(pos_data(invoice).get("tipKrw"))
    return [lines[d] for d in sorted(lines)]
