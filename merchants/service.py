"""Store and API-key operations. No Flask here: callers pass a session."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from database import utc_now
from merchants import store_codes
from merchants.districts import CATEGORIES, normalize_district
from merchants.models import ApiKey, Store

CAN_CREATE_INVOICE = "btcpay.store.cancreateinvoice"
CAN_VIEW_INVOICES = "btcpay.store.canviewinvoices"
CAN_MODIFY_INVOICES = "btcpay.store.canmodifyinvoices"
CAN_MODIFY_WEBHOOKS = "btcpay.store.webhooks.canmodifywebhooks"
CAN_MODIFY_STORE = "btcpay.store.canmodifystoresettings"
CAN_VIEW_STORE = "btcpay.store.canviewstoresettings"
# Refunds: a pull payment here is a refund claim the treasury approves (never auto-approved).
CAN_CREATE_PULL_PAYMENTS = "btcpay.store.cancreatepullpayments"
CAN_CREATE_NONAPPROVED_PULL_PAYMENTS = "btcpay.store.cancreatenonapprovedpullpayments"
CAN_VIEW_PULL_PAYMENTS = "btcpay.store.canviewpullpayments"
ALL_PERMISSIONS = (CAN_CREATE_INVOICE, CAN_VIEW_INVOICES, CAN_MODIFY_INVOICES,
                   CAN_MODIFY_WEBHOOKS, CAN_VIEW_STORE, CAN_CREATE_NONAPPROVED_PULL_PAYMENTS,
                   CAN_CREATE_PULL_PAYMENTS, CAN_VIEW_PULL_PAYMENTS, CAN_MODIFY_STORE)
# Greenfield's umbrella permissions imply the narrower ones.
IMPLIED = {
    CAN_MODIFY_STORE: set(ALL_PERMISSIONS),
    CAN_MODIFY_INVOICES: {CAN_VIEW_INVOICES, CAN_CREATE_INVOICE},
    CAN_CREATE_PULL_PAYMENTS: {CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, CAN_VIEW_PULL_PAYMENTS},
    CAN_CREATE_NONAPPROVED_PULL_PAYMENTS: {CAN_VIEW_PULL_PAYMENTS},
}
SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")
_ID_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def random_id(length: int) -> str:
    """An unguessable base58 identifier (about 5.86 bits per character)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StoreError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    token: str  # shown once, never stored


def create_store(session: Session, *, name: str, district: str = "jung-gu",
                 category: str = "retail", speed_policy: str = "MediumSpeed",
                 zero_conf_limit_krw: int = 0, payment_tolerance: Decimal = Decimal("0"),
                 settlement_mode: str = "krw", key_id: int | None = None,
                 default_language: str = "ko") -> Store:
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise StoreError("name", "name is required (at most 120 characters)")
    try:
        district = normalize_district(district)
    except ValueError as err:
        raise StoreError("district", str(err)) from None
    if category not in CATEGORIES:
        raise StoreError("category", f"unknown category {category!r}: use one of {', '.join(CATEGORIES)}")
    if speed_policy not in SPEED_POLICIES:
        raise StoreError("speedPolicy", f"unknown speed policy {speed_policy!r}")
    if settlement_mode not in ("krw", "btc"):
        raise StoreError("settlementMode", "settlement mode is krw or btc")
    if settlement_mode == "btc" and key_id is None:
        raise StoreError("xpub", "BTC settlement needs the store's own extended public key")
    if not (Decimal(0) <= payment_tolerance <= Decimal(100)):
        raise StoreError("paymentTolerance", "payment tolerance is a percentage from 0 to 100")
    if zero_conf_limit_krw < 0:
        raise StoreError("zeroConfLimit", "the 0-conf limit cannot be negative")
    store = Store(id=random_id(32), name=name, district=district, category=category,
                  speed_policy=speed_policy, zero_conf_limit_krw=zero_conf_limit_krw,
                  payment_tolerance=payment_tolerance, settlement_mode=settlement_mode,
                  key_id=key_id, default_language=default_language)
    for attempt in range(8):
        store.pos_code = store_codes.new_code()
        try:
            with session.begin_nested():  # a clashing code undoes only this insert
                session.add(store)
                session.flush()
            return store
        except IntegrityError:
            if attempt == 7:
                raise
    raise AssertionError("unreachable")


def issue_api_key(session: Session, store_id: str, permissions=ALL_PERMISSIONS,
                  label: str = "") -> IssuedKey:
    unknown = set(permissions) - set(ALL_PERMISSIONS)
    if unknown:
        raise StoreError("permissions", f"unknown permissions: {', '.join(sorted(unknown))}")
    token = secrets.token_hex(32)
    key = ApiKey(id=random_id(16), store_id=store_id, label=label,
                 token_hash=hash_token(token), permissions=" ".join(sorted(set(permissions))))
    session.add(key)
    session.flush()
    return IssuedKey(key, token)


def revoke_api_key(session: Session, store_id: str, key_id: str) -> bool:
    key = session.get(ApiKey, key_id)
    if key is None or key.store_id != store_id or key.revoked_at is not None:
        return False
    key.revoked_at = utc_now()
    session.add(key)
    return True


@dataclass(frozen=True)
class StoreTerms:
    """What a new invoice takes from its store."""
    id: str
    archived: bool
    settlement_mode: str
    key_id: int | None
    speed_policy: str
    payment_tolerance: Decimal
    default_language: str
    zero_conf_limit_krw: int
    standing: str = "active"  # suspended or closed stores take no new invoices


STORE_TERMS_COLUMNS = (Store.id, Store.archived, Store.settlement_mode, Store.key_id,
                       Store.speed_policy, Store.payment_tolerance, Store.default_language,
                       Store.zero_conf_limit_krw, Store.standing)


@dataclass(frozen=True)
class ApiKeyGrant:
    """A live API key as one request sees it, with its store's terms (one query)."""
    id: str
    store_id: str
    permissions: str
    store: StoreTerms

    @property
    def permission_set(self) -> frozenset[str]:
        return frozenset(self.permissions.split())


_LIVE_KEY = select(ApiKey.id, ApiKey.permissions, *STORE_TERMS_COLUMNS).join(
    Store, Store.id == ApiKey.store_id).where(
    ApiKey.token_hash == bindparam("token_hash"), ApiKey.revoked_at.is_(None))


def find_api_key(connection, token: str) -> ApiKeyGrant | None:
    """The live key for a presented token, or None. Every API request asks, so this is
    one Core statement (a session or a connection), never a cached answer: a revoked key
    stops working at once."""
    if not token or len(token) > 200:
        return None
    row = connection.execute(_LIVE_KEY, {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    key_id, permissions, *terms = row
    store = StoreTerms(*terms)
    return ApiKeyGrant(id=key_id, store_id=store.id, permissions=permissions, store=store)


def has_permission(key: ApiKey | ApiKeyGrant, permission: str) -> bool:
    granted = set(key.permission_set)
    for umbrella, implied in IMPLIED.items():
        if umbrella in granted:
            granted |= implied
    return permission in granted
