"""Display helpers: won, BTC, Asia/Seoul times. Integers in, text out (never floats on money)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from payments.bip21 import format_btc

SEOUL = ZoneInfo("Asia/Seoul")


def won(amount: int | None) -> str:
    if amount is None:
        return "–"
    sign = "−" if amount < 0 else ""
    return f"{sign}₩{abs(int(amount)):,}"


def btc(sats: int | None) -> str:
    if sats is None:
        return "–"
    sign = "−" if sats < 0 else ""
    return f"{sign}{format_btc(abs(int(sats)))} BTC"


def btc_number(sats: int | None) -> str:
    """The BTC amount without its unit (a KPI shows the unit apart)."""
    return btc(sats)[:-4] if sats is not None else "–"


def count(n: int | None) -> str:
    return "–" if n is None else f"{int(n):,}"


def compact_won(amount: int, language: str = "ko") -> str:
    """Axis labels: 1.2억 / 3,400만 in Korean, ₩1.2M / ₩340K otherwise."""
    n = int(amount)
    if language == "ko":
        if abs(n) >= 100_000_000:
            return f"{n / 100_000_000:.1f}".rstrip("0").rstrip(".") + "억"
        if abs(n) >= 10_000:
            return f"{n // 10_000:,}만"
        return f"{n:,}"
    for size, unit in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if abs(n) >= size:
            return "₩" + f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return f"₩{n:,}"


def half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (integers; 0 when nothing to divide)."""
    if not denominator:
        return 0
    q, r = divmod(int(numerator), int(denominator))
    return q + (1 if 2 * r >= denominator else 0)


def seoul(moment: datetime | None, seconds: bool = False) -> str:
    if moment is None:
        return "–"
    local = moment.astimezone(SEOUL)
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def seoul_day(moment: datetime) -> date:
    return moment.astimezone(SEOUL).date()


def seoul_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), SEOUL).astimezone(timezone.utc)


def day_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
