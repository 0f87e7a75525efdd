"""The city's Lightning figures (no Flask): the share of payments by method and the day's
expected Lightning volume that the node's inbound liquidity must cover.

Payments are the counted ones (state `seen`), dated by when the gateway saw them, on the
Asia/Seoul day; their won is their sats at their invoice's locked rate, rounded down to
whole won (a display figure, not a ledger amount).

Expected Lightning volume for a day: the larger of
- the average Lightning volume per day over the last EXPECTED_DAYS full Seoul days, and
- today's Lightning volume so far, extrapolated to the whole day (not before an hour of it
  has passed, so one early coffee is not read as a flood).
Each sat received over Lightning uses one sat of the node's inbound liquidity, so a node
whose inbound is below the expected volume may refuse payments before the day is over.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR

from sqlalchemy import func, select

from dashboard.fmt import seoul_day, seoul_midnight_utc
from lightning.backend import MSAT_PER_SAT
from payments.models import METHOD_CHAIN, METHOD_LIGHTNING, Invoice, Payment
from payments.quoting import krw_value

METHODS = (METHOD_CHAIN, METHOD_LIGHTNING)
EXPECTED_DAYS = 7
MIN_EXTRAPOLATION = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class MethodShare:
    method: str
    payments: int
    sats: int
    krw: int


def method_share(session, start: datetime, end: datetime) -> list[MethodShare]:
    """Payments seen in [start, end) by method (both methods, zero when none)."""
    rows = session.execute(
        select(Payment.method, Invoice.rate, func.count(Payment.id), func.sum(Payment.value_sats))
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Payment.state == "seen", Payment.seen_at >= start, Payment.seen_at < end)
        .group_by(Payment.method, Invoice.rate))
    found = {m: [0, 0, 0] for m in METHODS}
    for method, rate, n, sats in rows:
        entry = found.setdefault(method, [0, 0, 0])
        entry[0] += n
        entry[1] += int(sats or 0)
        # One rounding per locked rate (every invoice of that rate alike): whole won, down.
        entry[2] += int(krw_value(int(sats or 0), rate).to_integral_value(ROUND_FLOOR))
    return [MethodShare(m, *v) for m, v in found.items()]


def lightning_sats(session, start: datetime, end: datetime) -> int:
    total = session.execute(select(func.sum(Payment.value_sats)).where(
        Payment.method == METHOD_LIGHTNING, Payment.state == "seen",
        Payment.seen_at >= start, Payment.seen_at < end)).scalar()
    return int(total or 0)


@dataclass(frozen=True)
class Expected:
    average_sats: int        # per day over the last EXPECTED_DAYS full days
    today_sats: int          # received over Lightning today so far
    extrapolated_sats: int   # today's pace for a whole day (0 before MIN_EXTRAPOLATION)
    day: date                # today (Seoul)

    @property
    def sats(self) -> int:
        return max(self.average_sats, self.extrapolated_sats)

    @property
    def msat(self) -> int:
        return self.sats * MSAT_PER_SAT

    @property
    def basis(self) -> str:
        """Which figure set the expectation: "average" or "today"."""
        return "today" if self.extrapolated_sats > self.average_sats else "average"


def expected_volume(session, now: datetime) -> Expected:
    today = seoul_day(now)
    midnight = seoul_midnight_utc(today)
    past = lightning_sats(session, seoul_midnight_utc(today - timedelta(days=EXPECTED_DAYS)),
                          midnight)
    average = -(-past // EXPECTED_DAYS)  # rounded up: the node should cover the whole day
    so_far = lightning_sats(session, midnight, now + timedelta(microseconds=1))
    elapsed = now - midnight
    extrapolated = 0
    if elapsed >= MIN_EXTRAPOLATION:
        whole, part = DAY // timedelta(microseconds=1), elapsed // timedelta(microseconds=1)
        extrapolated = -(-so_far * whole // part)
    return Expected(average, so_far, extrapolated, today)
