"""Greenfield JSON shapes for stores, API keys and a store's payment methods (no Flask).

Field names, types and enums follow BTCPay Server's Greenfield reference (stores,
api-keys, stores-payment-methods); values describe what Busan Pay really does: KRW prices,
on-chain bitcoin and (while the city's node is configured) Lightning, no payjoin, no network
fee added to invoices.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping
from urllib.parse import urlsplit

from merchants.models import ApiKey, Store

PAYMENT_METHOD_ID = "BTC-CHAIN"
# The WooCommerce plugin builds its "separate gateways" from the store payment method's
# `paymentMethod` (BTCPay 1.x's name), so that one old field stays on store payment methods.
LEGACY_PAYMENT_METHOD = "BTC"
LIGHTNING_METHOD_ID = "BTC-LN"
LEGACY_LIGHTNING_METHOD = "BTC-LightningNetwork"  # BTCPay 1.x's name for BTC-LN


def permission_strings(key: ApiKey) -> list[str]:
    """The key's permissions as granted, scoped to its store (`name:<storeId>`), as
    Greenfield lists them. Not expanded: plugins compare the list with what they asked for."""
    return [f"{name}:{key.store_id}" for name in sorted(key.permission_set)]


def api_key_json(key: ApiKey, token: str) -> dict:
    # Only the token's hash is stored: `apiKey` echoes the token the caller presented.
    return {"apiKey": token, "label": key.label, "permissions": permission_strings(key)}


def _number(value: Decimal) -> int | float:
    # A percentage (0–100) shown as a JSON number, as Greenfield does; not money.
    return int(value) if value == value.to_integral_value() else float(value)


def store_json(store: Store, *, expiration_minutes: int, monitoring_minutes: int) -> dict:
    return {
        "id": store.id,
        "name": store.name,
        "website": store.website,
        "supportUrl": None,
        "logoUrl": None,
        "cssUrl": None,
        "paymentSoundUrl": None,
        "brandColor": None,
        "applyBrandColorToBackend": False,
        "defaultCurrency": "KRW",
        "additionalTrackedRates": [],
        "invoiceExpiration": expiration_minutes * 60,
        "refundBOLT11Expiration": 30,
        "displayExpirationTimer": 300,
        "monitoringExpiration": monitoring_minutes * 60,
        "speedPolicy": store.speed_policy,
        "lightningDescriptionTemplate": None,
        "paymentTolerance": _number(store.payment_tolerance),
        "archived": store.archived,
        "anyoneCanCreateInvoice": False,
        "receipt": {"enabled": True, "showQR": True, "showPayments": True},
        "lightningAmountInSatoshi": False,
        "lightningPrivateRouteHints": False,
        "onChainWithLnInvoiceFallback": False,
        "redirectAutomatically": False,
        "showRecommendedFee": False,
        "recommendedFeeBlockTarget": 1,
        "defaultLang": store.default_language,
        "htmlTitle": None,
        "networkFeeMode": "Never",
        "payJoinEnabled": False,
        "autoDetectLanguage": True,
        "showPayInWalletButton": True,
        "showStoreHeader": True,
        "celebratePayment": False,
        "playSoundOnPayment": False,
        "lazyPaymentMethods": False,
        "defaultPaymentMethod": PAYMENT_METHOD_ID,
        "paymentMethodCriteria": None,
    }


def store_payment_methods_json(store: Store, own_key_text: str | None, *,
                               include_config: bool, only_enabled: bool | None,
                               lightning: bool = False) -> list[dict]:
    """The store's payment methods: on-chain bitcoin, always enabled. Its config is the
    store's own account key (public, and the store's) when it settles in BTC; the city
    treasury's key is not the store's to see, so it is left out. With `lightning` (the city's
    node is configured) BTC-LN too, enabled unless the store is paid in BTC to its own wallet
    (Lightning pays the city's node); its config never shows the node's connection."""
    treasury = store.settlement_mode != "btc" or not own_key_text
    items = [{"enabled": True, "paymentMethodId": PAYMENT_METHOD_ID,
              "paymentMethod": LEGACY_PAYMENT_METHOD}]
    if include_config:
        items[0]["config"] = {
            "derivationScheme": None if treasury else own_key_text,
            "label": "Busan city treasury" if treasury else "Store's own key",
            "accountKeyPath": None,
        }
    if lightning:
        items.append({"enabled": store.settlement_mode != "btc",
                      "paymentMethodId": LIGHTNING_METHOD_ID,
                      "paymentMethod": LEGACY_LIGHTNING_METHOD})
        if include_config:
            items[1]["config"] = {"connectionString": None,
                                  "label": "Busan city Lightning node",
                                  "disableBOLT11PaymentOption": False}
    if only_enabled is None:
        return items
    return [i for i in items if i["enabled"] == only_enabled]


# -- /api-keys/authorize -----------------------------------------------------------------
MAX_APPLICATION_NAME = 120
MAX_REDIRECT = 2000
MAX_ORIGIN = 200  # Store.website's length


@dataclass(frozen=True)
class AuthorizeRequest:
    """What a shop asks the owner for on `/api-keys/authorize` (parsed, not yet approved)."""
    permissions: tuple[str, ...]      # known permission names, without store scope
    not_granted: tuple[str, ...]      # asked for but not offered here (strict=false only)
    application_name: str
    redirect: str | None              # an absolute http(s) URL, or None
    shop_origin: str | None           # scheme://host[:port] of `redirect`
    shop_host: str | None             # what the owner is shown: the host (and port)


class AuthorizeRefused(ValueError):
    """The request cannot be shown for approval; `problems` say why (codes + params)."""

    def __init__(self, problems: list[tuple[str, dict]]):
        super().__init__("; ".join(code for code, _ in problems))
        self.problems = problems


def shop_origin(url: str) -> tuple[str, str]:
    """(origin, host) of an absolute http(s) URL; ValueError otherwise. URLs carrying a
    user name or password are refused: `https://bank.example@evil.example/` would show the
    owner a misleading host."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("not an absolute http(s) URL")
    if parsed.username is not None or parsed.password is not None or "\\" in url:
        raise ValueError("credentials in the URL")
    host = parsed.hostname.encode("idna").decode("ascii") if not parsed.hostname.isascii() \
        else parsed.hostname
    port = parsed.port  # raises ValueError for a bad port
    default = {"http": 80, "https": 443}[parsed.scheme]
    shown = host if port in (None, default) else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets
        shown = f"[{host}]" if port in (None, default) else f"[{host}]:{port}"
    origin = f"{parsed.scheme}://{shown}"
    if len(origin) > MAX_ORIGIN:  # it may become the store's website (200 characters)
        raise ValueError("host too long")
    return origin, shown


def parse_authorize_request(args: Mapping[str, list[str]], known: tuple[str, ...]) \
        -> AuthorizeRequest:
    """The shop's query (`permissions` repeated, `applicationName`, `strict`,
    `selectiveStores`, `redirect`, `applicationIdentifier`) → what to show the owner.
    Store-scoped permissions (`name:<storeId>`) are matched by name; the owner picks the
    store. Unknown permissions refuse the request unless `strict=false`."""
    problems: list[tuple[str, dict]] = []
    wanted, unknown = [], []
    for raw in args.get("permissions", []):
        for item in raw.split(","):  # a few clients join them with commas
            name = item.strip().split(":", 1)[0]
            if not name:
                continue
            (wanted if name in known else unknown).append(name)
    strict = (args.get("strict") or ["true"])[-1].strip().lower() != "false"
    if unknown and strict:
        problems.append(("permissions.unknown", {"names": ", ".join(sorted(set(unknown)))}))
    if not wanted:
        problems.append(("permissions.none", {}))
    name = " ".join((args.get("applicationName") or [""])[-1].split())[:MAX_APPLICATION_NAME]
    redirect = (args.get("redirect") or [""])[-1].strip() or None
    origin = host = None
    if redirect is not None:
        try:
            if len(redirect) > MAX_REDIRECT:
                raise ValueError("too long")
            origin, host = shop_origin(redirect)
        except ValueError:
            problems.append(("redirect.invalid", {}))
    if problems:
        raise AuthorizeRefused(problems)
    return AuthorizeRequest(permissions=tuple(sorted(set(wanted))),
                            not_granted=tuple(sorted(set(unknown))),
                            application_name=name or host or "API client", redirect=redirect,
                            shop_origin=origin, shop_host=host)
