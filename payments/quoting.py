"""Quoting: a price and a locked rate become the satoshis due.

Named rounding rule: BTC due rounds UP to the next whole satoshi, so the merchant is
never short. Rounding happens once, here.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

from untrusted import UntrustedInput, plain_decimal

SATS_PER_BTC = 100_000_000
MAX_SATS = 21_000_000 * SATS_PER_BTC
CURRENCIES = ("KRW", "BTC", "SATS")


class QuoteError(ValueError):
    """The price cannot be quoted; `path` names the offending field."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Price:
    """A parsed price: whole won, or satoshis when asked in BTC/SATS."""

    currency: str
    amount_text: str
    amount_krw: int | None
    amount_sats: int | None


def parse_currency(currency: object) -> str:
    if currency is None:
        return "KRW"
    if not isinstance(currency, str) or currency.strip().upper() not in CURRENCIES:
        raise QuoteError("currency", (
            f"Unsupported currency {currency!r}: Busan Pay prices in Korean won. Set the shop's "
            "currency to KRW (South Korean won) and send whole won: round the price to a whole "
            "number, KRW has no minor unit. BTC and SATS are accepted too."))
    return currency.strip().upper()


def parse_amount(amount: object, *, allow_zero: bool = False) -> Decimal:
    """A decimal string or number (never a binary float) as an exact Decimal: ASCII digits
    only (Decimal itself takes full-width and Arabic-Indic ones), finite, and small enough
    that no arithmetic on it overflows (`1e999999999` would)."""
    if amount is None:
        raise QuoteError("amount", "amount is required")
    if isinstance(amount, bool) or not isinstance(amount, (str, int, Decimal)):
        raise QuoteError("amount", "amount must be a decimal string or a number")
    try:
        value = plain_decimal(amount.strip() if isinstance(amount, str) else str(amount))
    except UntrustedInput as err:
        raise QuoteError("amount", f"amount {err.message}") from None
    if value < 0:
        raise QuoteError("amount", "amount must not be negative")
    if value == 0 and not allow_zero:
        raise QuoteError("amount", "amount must be greater than zero")
    return value.copy_abs()  # "-0" is zero


def parse_price(amount: object, currency: object, *, max_krw: int,
                allow_zero: bool = False) -> Price:
    """Validate a price as the API receives it (decimal string or number)."""
    currency = parse_currency(currency)
    value = parse_amount(amount, allow_zero=allow_zero)
    text = format(value.normalize(), "f") if value else "0"
    if currency == "KRW":
        if value != value.to_integral_value():
            raise QuoteError("amount", "won has no minor unit: round the amount to whole won")
        if value > max_krw:
            raise QuoteError("amount", f"amount is above the limit of {max_krw} won per invoice")
        return Price("KRW", text, int(value), None)
    if currency == "BTC":
        sats = value * SATS_PER_BTC
        if sats != sats.to_integral_value():
            raise QuoteError("amount", "BTC amounts have at most 8 decimal places")
    else:
        sats = value
        if sats != sats.to_integral_value():
            raise QuoteError("amount", "SATS amounts must be whole satoshis")
    if sats > MAX_SATS:
        raise QuoteError("amount", "amount is larger than all bitcoin")
    return Price(currency, text, None, int(sats))


def sats_due(amount_krw: int, krw_per_btc: Decimal) -> int:
    """Satoshis due for a won price at a rate, rounded up (never under-collects)."""
    if not isinstance(amount_krw, int) or isinstance(amount_krw, bool) or amount_krw < 0:
        raise ValueError("amount_krw must be a non-negative int")
    if not isinstance(krw_per_btc, Decimal) or not krw_per_btc.is_finite() or krw_per_btc <= 0:
        raise ValueError("krw_per_btc must be a positive finite Decimal")
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any realistic price and rate
        ctx.rounding = ROUND_CEILING
        sats = (Decimal(amount_krw) * SATS_PER_BTC / krw_per_btc).to_integral_value(
            rounding=ROUND_CEILING)
    return int(sats)


def krw_value(sats: int, krw_per_btc: Decimal) -> Decimal:
    """Exact won value of satoshis at a rate (for display and ledger decisions)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(sats) * krw_per_btc / SATS_PER_BTC
