"""Parse a Greenfield create-invoice body into a typed request, or a list of errors.

Pure: every problem is collected as (path, message) so the API can answer 422 with all
of them at once, and nothing is written.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlparse

from payments.quoting import Price, QuoteError, parse_amount, parse_currency, parse_price
from untrusted import UntrustedInput, plain_decimal

SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")
LANGUAGES = ("ko", "en", "zh", "ja")
MAX_EXPIRATION_MINUTES = 7 * 24 * 60
MAX_MONITORING_MINUTES = 30 * 24 * 60
MAX_METADATA_BYTES = 16 * 1024
KNOWN_CHECKOUT_FIELDS = {
    "speedPolicy", "paymentMethods", "defaultPaymentMethod", "lazyPaymentMethods",
    "expirationMinutes", "monitoringMinutes", "paymentTolerance", "redirectURL",
    "redirectAutomatically", "defaultLanguage", "requiresRefundEmail", "checkoutType",
}


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def as_json(self) -> dict:
        return {"path": self.path, "message": self.message}


class InvalidRequest(ValueError):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class CheckoutOptions:
    speed_policy: str | None = None
    expiration_minutes: int | None = None
    monitoring_minutes: int | None = None
    payment_tolerance: Decimal | None = None
    redirect_url: str | None = None
    redirect_automatically: bool = False
    default_language: str | None = None


@dataclass(frozen=True)
class InvoiceRequest:
    price: Price | None  # None: a top-up invoice (any amount counts as full)
    currency: str = "KRW"
    metadata: dict = field(default_factory=dict)
    checkout: CheckoutOptions = field(default_factory=CheckoutOptions)

    @property
    def order_id(self) -> str | None:
        value = self.metadata.get("orderId")
        return None if value is None else str(value)[:200]


def _minutes(raw: Any, path: str, maximum: int, errors: list[FieldError]) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, Decimal, str)):
        errors.append(FieldError(path, "must be a number of minutes"))
        return None
    try:
        value = plain_decimal(str(raw).strip())
    except UntrustedInput:
        errors.append(FieldError(path, "must be a number of minutes"))
        return None
    if value != value.to_integral_value() or not 1 <= value <= maximum:
        errors.append(FieldError(path, f"must be whole minutes from 1 to {maximum}"))
        return None
    return int(value)


def normalize_language(raw: str) -> str | None:
    """'zh-CN', 'ja_JP', 'EN' → the catalogue we have, or None."""
    base = raw.replace("_", "-").split("-")[0].strip().lower()
    return base if base in LANGUAGES else None


def parse_checkout(raw: Any, errors: list[FieldError]) -> CheckoutOptions:
    if raw is None:
        return CheckoutOptions()
    if not isinstance(raw, dict):
        errors.append(FieldError("checkout", "checkout must be an object"))
        return CheckoutOptions()
    for name in raw:
        if name not in KNOWN_CHECKOUT_FIELDS:
            errors.append(FieldError(f"checkout.{name}", "unknown field"))
    speed = raw.get("speedPolicy")
    if speed is not None:
        match = [p for p in SPEED_POLICIES if isinstance(speed, str) and p.lower() == speed.lower()]
        if not match:
            errors.append(FieldError("checkout.speedPolicy",
                                     f"unknown speed policy: use one of {', '.join(SPEED_POLICIES)}"))
        speed = match[0] if match else None
    tolerance = raw.get("paymentTolerance")
    if tolerance is not None:
        try:
            if isinstance(tolerance, bool) or not isinstance(tolerance, (str, int, Decimal)):
                raise InvalidOperation
            tolerance = plain_decimal(str(tolerance))  # ASCII digits only, finite
            if not Decimal(0) <= tolerance <= Decimal(100):
                raise InvalidOperation
        except (InvalidOperation, UntrustedInput):
            errors.append(FieldError("checkout.paymentTolerance",
                                     "must be a percentage from 0 to 100"))
            tolerance = None
    redirect = raw.get("redirectURL")
    if redirect is not None:
        parsed = urlparse(redirect) if isinstance(redirect, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            errors.append(FieldError("checkout.redirectURL", "must be an http(s) URL"))
            redirect = None
    auto = raw.get("redirectAutomatically")
    if auto is not None and not isinstance(auto, bool):
        errors.append(FieldError("checkout.redirectAutomatically", "must be true or false"))
        auto = None
    language = raw.get("defaultLanguage")
    if language is not None:
        if not isinstance(language, str) or normalize_language(language) is None:
            errors.append(FieldError("checkout.defaultLanguage",
                                     "unsupported language: use ko, en, zh or ja"))
            language = None
        else:
            language = normalize_language(language)
    methods = raw.get("paymentMethods")
    if methods is not None:
        if not isinstance(methods, list) or any(
                not isinstance(m, str) or m.upper() not in ("BTC", "BTC-CHAIN", "BTC-ONCHAIN")
                for m in methods):
            errors.append(FieldError("checkout.paymentMethods",
                                     "only on-chain bitcoin (BTC) is offered"))
    return CheckoutOptions(
        speed_policy=speed,
        expiration_minutes=_minutes(raw.get("expirationMinutes"), "checkout.expirationMinutes",
                                    MAX_EXPIRATION_MINUTES, errors),
        monitoring_minutes=_minutes(raw.get("monitoringMinutes"), "checkout.monitoringMinutes",
                                    MAX_MONITORING_MINUTES, errors),
        payment_tolerance=tolerance,
        redirect_url=redirect,
        redirect_automatically=bool(auto),
        default_language=language,
    )


def parse_metadata(raw: Any, errors: list[FieldError], *, required: bool = False) -> dict:
    """The client's free metadata object, as create and update both take it: numbers with a
    fraction become ordinary JSON numbers again (not a money path), NaN/Infinity and numbers
    beyond a double are refused (they would be stored and sent back as invalid JSON), and
    `orderId`, which the invoice list searches, is a string or whole number of ≤ 200 chars."""
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        errors.append(FieldError("metadata", "metadata must be an object"))
        return {}
    before = len(errors)
    metadata = _plain_json(raw, "metadata", errors)
    if len(errors) > before:
        return {}
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        errors.append(FieldError("metadata", f"metadata is larger than {MAX_METADATA_BYTES} bytes"))
    order_id = metadata.get("orderId")
    if order_id is not None and (not isinstance(order_id, (str, int)) or isinstance(order_id, bool)
                                 or len(str(order_id)) > 200):
        errors.append(FieldError("metadata.orderId", "orderId must be a string of at most 200 characters"))
    return metadata


def tolerance_errors(tolerance: Decimal | None, max_tolerance: Decimal) -> list[FieldError]:
    """The city caps the payment tolerance (BUSANPAY_MAX_PAYMENT_TOLERANCE): it forgives
    the status of a short payment, never the won (the merchant is credited what came)."""
    if tolerance is not None and tolerance > max_tolerance:
        return [FieldError("checkout.paymentTolerance",
                           f"must be at most {max_tolerance} (the city's maximum tolerance, "
                           "in percent)")]
    return []


def won_value_errors(amount_krw: int | None, max_krw: int) -> list[FieldError]:
    """BUSANPAY_MAX_INVOICE_KRW applies to the won value at the locked rate, whatever the
    currency the price was asked in (a BTC or SATS price is checked once the rate is locked)."""
    if amount_krw is not None and amount_krw > max_krw:
        return [FieldError("amount", f"is worth ₩{amount_krw:,} at the current rate: the "
                                     f"largest invoice is ₩{max_krw:,}")]
    return []


def _plain_json(value: Any, path: str, errors: list[FieldError]) -> Any:
    if isinstance(value, dict):
        return {k: _plain_json(v, f"{path}.{k}", errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, (Decimal, float)) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            errors.append(FieldError(path, "numbers must be finite and within ±1.7e308 "
                                           "(NaN and Infinity are not JSON)"))
        return number
    return value


def parse_invoice_request(body: Any, *, max_krw: int) -> InvoiceRequest:
    """The body as decoded with Decimal floats. Raises InvalidRequest listing every problem."""
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("", "the request body must be a JSON object")])
    known = {"amount", "currency", "metadata", "checkout", "receipt", "additionalSearchTerms"}
    for name in body:
        if name not in known:
            errors.append(FieldError(name, "unknown field"))
    price: Price | None = None
    amount = body.get("amount")
    try:
        currency = parse_currency(body.get("currency"))
    except QuoteError as err:
        errors.append(FieldError(err.path, err.message))
        currency = None
    if amount is not None:  # Greenfield: no amount means a top-up invoice
        try:
            if currency is None:
                parse_amount(amount)  # still report a bad amount alongside the currency
            else:
                price = parse_price(amount, currency, max_krw=max_krw)
        except QuoteError as err:
            errors.append(FieldError(err.path, err.message))
    metadata = parse_metadata(body.get("metadata"), errors)
    checkout = parse_checkout(body.get("checkout"), errors)
    if errors:
        raise InvalidRequest(errors)
    return InvoiceRequest(price=price, currency=currency or "KRW", metadata=metadata,
                          checkout=checkout)
