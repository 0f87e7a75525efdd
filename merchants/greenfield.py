"""Greenfield JSON shapes for stores, API keys and a store's payment methods (no Flask).

Field names, types and enums follow BTCPay Server's Greenfield reference (stores,
api-keys, stores-payment-methods); values describe what Busan Pay really does: KRW prices,
on-chain bitcoin only, no Lightning, no payjoin, no network fee added to invoices.
"""
from __future__ import annotations

from decimal import Decimal

from merchants.models import ApiKey, Store

PAYMENT_METHOD_ID = "BTC-CHAIN"
# The WooCommerce plugin builds its "separate gateways" from the store payment method's
# `paymentMethod` (BTCPay 1.x's name), so that one old field stays on store payment methods.
LEGACY_PAYMENT_METHOD = "BTC"


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
                               include_config: bool, only_enabled: bool | None) -> list[dict]:
    """The store's payment methods: on-chain bitcoin, always enabled. Its config is the
    store's own account key (public, and the store's) when it settles in BTC; the city
    treasury's key is not the store's to see, so it is left out."""
    if only_enabled is False:
        return []
    item = {"enabled": True, "paymentMethodId": PAYMENT_METHOD_ID,
            "paymentMethod": LEGACY_PAYMENT_METHOD}
    if include_config:
        treasury = store.settlement_mode != "btc" or not own_key_text
        item["config"] = {
            "derivationScheme": None if treasury else own_key_text,
            "label": "Busan city treasury" if treasury else "Store's own key",
            "accountKeyPath": None,
        }
    return [item]
