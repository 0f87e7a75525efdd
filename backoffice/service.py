"""What a merchant owner changes in the back office: store settings, cashiers, API keys.

No Flask here: callers pass a session and the acting person. Every change writes an audit
entry in the same transaction. Validation errors are (field, code, params): the web edge
words them in the owner's language. Secrets (PINs, API tokens) never reach the audit log.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Mapping

from sqlalchemy import inspect
from sqlmodel import Session, select

from untrusted import UntrustedInput, plain_decimal

from accounts.models import User
from accounts.service import AccountError, Actor, audit, create_user
from merchants.models import ApiKey, Store
from merchants.service import (ALL_PERMISSIONS, SPEED_POLICIES, IssuedKey, issue_api_key,
                               revoke_api_key)

LANGUAGES = ("ko", "en", "zh", "ja")
MAX_TOLERANCE_PLACES = 2
MAX_LABEL = 120
MAX_NAME = 60


@dataclass(frozen=True)
class Problem:
    field: str
    code: str
    params: dict = field(default_factory=dict)


class Refused(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.field}: {p.code}" for p in problems))
        self.problems = problems


class NotFound(LookupError):
    """Not in this store (or not at all): the web edge answers 404 either way."""


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreSettings:
    speed_policy: str
    payment_tolerance: Decimal
    zero_conf_limit_krw: int
    default_language: str

    @classmethod
    def of(cls, store: Store) -> "StoreSettings":
        return cls(store.speed_policy, store.payment_tolerance, store.zero_conf_limit_krw,
                   store.default_language)


def parse_settings(form: Mapping[str, str], *, city_zero_conf_limit: int,
                   city_max_tolerance: Decimal = Decimal(100)) -> StoreSettings:
    problems: list[Problem] = []
    speed = (form.get("speed_policy") or "").strip()
    if speed not in SPEED_POLICIES:
        problems.append(Problem("speed_policy", "speed.unknown"))
    raw_tolerance = (form.get("payment_tolerance") or "").strip().replace(",", ".")
    tolerance = Decimal(0)
    try:
        tolerance = plain_decimal(raw_tolerance or "x")  # ASCII digits, finite
        if not Decimal(0) <= tolerance <= Decimal(100):
            problems.append(Problem("payment_tolerance", "tolerance.range"))
        elif tolerance > city_max_tolerance:
            problems.append(Problem("payment_tolerance", "tolerance.city",
                                    {"max": city_max_tolerance}))
        elif -tolerance.as_tuple().exponent > MAX_TOLERANCE_PLACES:
            problems.append(Problem("payment_tolerance", "tolerance.places",
                                    {"places": MAX_TOLERANCE_PLACES}))
    except (InvalidOperation, UntrustedInput):
        problems.append(Problem("payment_tolerance", "tolerance.number"))
    raw_limit = (form.get("zero_conf_limit_krw") or "").strip().lstrip("₩").replace(",", "")
    limit = 0
    if not re.fullmatch(r"[0-9]{1,12}", raw_limit):  # ASCII: \d takes any script's digits
        problems.append(Problem("zero_conf_limit_krw", "limit.number"))
    else:
        limit = int(raw_limit)
        if limit > city_zero_conf_limit:
            problems.append(Problem("zero_conf_limit_krw", "limit.city",
                                    {"max": city_zero_conf_limit}))
    language = (form.get("default_language") or "").strip()
    if language not in LANGUAGES:
        problems.append(Problem("default_language", "language.unknown"))
    if problems:
        raise Refused(problems)
    # Keep the tolerance's text tidy ("1.50" → "1.5", "0.00" → "0") but exact.
    tolerance = tolerance.normalize() if tolerance else Decimal(0)
    if tolerance == tolerance.to_integral_value():
        tolerance = tolerance.quantize(Decimal(1))
    return StoreSettings(speed, tolerance, limit, language)


def update_settings(session: Session, store_id: str, new: StoreSettings, actor: Actor) -> dict:
    """Apply the settings; returns {field: [old, new]} for what changed (and audits that)."""
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound(store_id)
    old = StoreSettings.of(store)
    changes = {}
    for name in ("speed_policy", "payment_tolerance", "zero_conf_limit_krw", "default_language"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            changes[name] = [str(before), str(after)]
            setattr(store, name, after)
    if changes:
        session.add(store)
        audit(session, actor, "store.settings", target=store_id, store_id=store_id,
              changes=changes)
    return changes


# -- staff ----------------------------------------------------------------------------------
def weak_pin(pin: str) -> bool:
    """All one digit (0000) or a straight run up or down (1234, 9876): the first guesses."""
    if len(set(pin)) == 1:
        return True
    steps = {int(b) - int(a) for a, b in zip(pin, pin[1:])}
    return steps in ({1}, {-1})


def staff(session: Session, store_id: str) -> list[User]:
    return list(session.exec(select(User).where(User.store_id == store_id)
                             .order_by(User.role.desc(), User.created_at, User.id)))


def add_cashier(session: Session, store_id: str, *, name: str, pin: str, pin_again: str,
                actor: Actor) -> User:
    problems: list[Problem] = []
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        problems.append(Problem("name", "name.length", {"max": MAX_NAME}))
    pin = (pin or "").strip()
    if not re.fullmatch(r"\d{4,8}", pin):
        problems.append(Problem("pin", "pin.format"))
    elif weak_pin(pin):
        problems.append(Problem("pin", "pin.weak"))
    elif pin != (pin_again or "").strip():
        problems.append(Problem("pin_again", "pin.mismatch"))
    if not problems and session.exec(select(User).where(
            User.store_id == store_id, User.role == "cashier", User.pin_label == name)).first():
        problems.append(Problem("name", "name.taken"))
    if problems:
        raise Refused(problems)
    try:
        user = create_user(session, role="cashier", store_id=store_id, pin=pin, display_name=name)
    except AccountError as err:
        code = "pin.taken" if err.field == "pin" else "account.refused"
        raise Refused([Problem(err.field, code, {"message": err.message})]) from None
    audit(session, actor, "staff.create", target=user.id, store_id=store_id, role="cashier",
          name=name)
    return user


def set_disabled(session: Session, store_id: str, user_id: str, disabled: bool,
                 actor: Actor) -> User:
    user = session.get(User, user_id)
    if user is None or user.store_id != store_id or user.role != "cashier":
        raise NotFound(user_id)
    if user.disabled != disabled:
        user.disabled = disabled
        session.add(user)
        audit(session, actor, "staff.disable" if disabled else "staff.enable", target=user.id,
              store_id=store_id, name=user.display_name)
    return user


# -- API keys -------------------------------------------------------------------------------
def api_keys(session: Session, store_id: str) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).where(ApiKey.store_id == store_id)
                             .order_by(ApiKey.created_at.desc(), ApiKey.id)))


def create_key(session: Session, store_id: str, *, label: str, permissions: list[str],
               actor: Actor) -> IssuedKey:
    problems: list[Problem] = []
    label = (label or "").strip()
    if not label or len(label) > MAX_LABEL:
        problems.append(Problem("label", "label.length", {"max": MAX_LABEL}))
    chosen = sorted(set(permissions))
    if not chosen:
        problems.append(Problem("permissions", "permissions.none"))
    elif set(chosen) - set(ALL_PERMISSIONS):
        problems.append(Problem("permissions", "permissions.unknown"))
    if problems:
        raise Refused(problems)
    issued = issue_api_key(session, store_id, chosen, label=label)
    audit(session, actor, "apikey.create", target=issued.key.id, store_id=store_id, label=label,
          permissions=chosen)
    return issued


def revoke_key(session: Session, store_id: str, key_id: str, actor: Actor) -> None:
    key = session.get(ApiKey, key_id)
    if key is None or key.store_id != store_id:
        raise NotFound(key_id)
    if revoke_api_key(session, store_id, key_id):
        audit(session, actor, "apikey.revoke", target=key_id, store_id=store_id, label=key.label)


# -- payouts (from the settlement package, when its tables are there) --------------------------
def payouts(session: Session, store_id: str, limit: int = 60) -> list | None:
    """The store's payouts, newest first; None while settlement has no payout table yet."""
    try:
        from settlement.models import Payout
    except ImportError:
        return None
    if not inspect(session.get_bind()).has_table(Payout.__tablename__):
        return None
    return list(session.exec(select(Payout).where(Payout.store_id == store_id)
                             .order_by(Payout.day.desc()).limit(limit)))


def mask(account_number: str) -> str:
    """Only the last four characters of a bank account are shown."""
    text = (account_number or "").strip()
    return ("•" * max(0, len(text) - 4) + text[-4:]) if text else ""


def payout_account(session: Session, store_id: str) -> dict | None:
    """Where payouts go (rail, bank, masked account), or None when none is recorded."""
    try:
        from settlement.models import MerchantPayoutAccount
    except ImportError:
        return None
    if not inspect(session.get_bind()).has_table(MerchantPayoutAccount.__tablename__):
        return None
    account = session.get(MerchantPayoutAccount, store_id)
    if account is None:
        return None
    return {"rail": account.rail or "", "bank": account.bank_name,
            "account": mask(account.bank_account), "holder": account.account_holder,
            "stripe": bool(account.stripe_account_id)}
