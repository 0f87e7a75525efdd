"""Accounts: creation, password/PIN checks with lock-out, the audit log. No Flask here."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.models import CITY_ROLES, ROLES, AuditEntry, User
from merchants.service import random_id

MAX_FAILURES = 5
LOCK_MINUTES = 15
PIN_PATTERN = re.compile(r"^\d{4,8}$")
# Checked against when a login names no real account, so timing does not reveal which exist.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


class LoginRefused(Exception):
    """Wrong credentials or a locked account; the message is safe to show."""


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit log."""
    id: str | None
    role: str
    ip: str = ""


def create_user(session: Session, *, role: str, email: str | None = None,
                password: str | None = None, store_id: str | None = None,
                pin: str | None = None, display_name: str = "", language: str = "ko") -> User:
    if role not in ROLES:
        raise AccountError("role", f"unknown role {role!r}")
    if role in ("owner", "cashier") and not store_id:
        raise AccountError("store", "merchant staff belong to a store")
    if role in CITY_ROLES and store_id:
        raise AccountError("store", "city staff do not belong to a store")
    user = User(id=random_id(20), role=role, store_id=store_id, display_name=display_name,
                language=language)
    if role == "cashier":
        if not pin or not PIN_PATTERN.match(pin):
            raise AccountError("pin", "a PIN is 4 to 8 digits")
        for other in session.exec(select(User).where(User.store_id == store_id,
                                                     User.role == "cashier")):
            if other.pin_hash and check_password_hash(other.pin_hash, pin):
                raise AccountError("pin", "another cashier of this store has that PIN")
        user.pin_hash = generate_password_hash(pin)
        user.pin_label = display_name or f"cashier-{user.id[:4]}"
    else:
        email = (email or "").strip().lower()
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
            raise AccountError("email", "a valid email address is required")
        if not password or len(password) < 10:
            raise AccountError("password", "a password has at least 10 characters")
        if session.exec(select(User).where(User.email == email)).first():
            raise AccountError("email", "that email is already registered")
        user.email = email
        user.password_hash = generate_password_hash(password)
    session.add(user)
    session.flush()
    return user


def _check_lock(user: User, now: datetime) -> None:
    if user.disabled:
        raise LoginRefused("This account is disabled.")
    if user.locked_until and user.locked_until > now:
        minutes = int((user.locked_until - now).total_seconds() // 60) + 1
        raise LoginRefused(f"Too many failed attempts: try again in {minutes} minutes.")


def _failed(session: Session, user: User, now: datetime) -> None:
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILURES:
        user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        user.failed_logins = 0
        audit(session, Actor(user.id, user.role), "account.locked", target=user.id,
              store_id=user.store_id)
    session.add(user)


def login_with_password(session: Session, email: str, password: str, now: datetime) -> User:
    user = session.exec(select(User).where(User.email == (email or "").strip().lower())).first()
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password or "")
        raise LoginRefused("Wrong email or password.")
    _check_lock(user, now)
    if not check_password_hash(user.password_hash, password or ""):
        _failed(session, user, now)
        raise LoginRefused("Wrong email or password.")
    user.failed_logins, user.locked_until = 0, None
    session.add(user)
    return user


def login_with_pin(session: Session, store_id: str, pin: str, now: datetime) -> User:
    cashiers = list(session.exec(select(User).where(User.store_id == (store_id or "").strip(),
                                                    User.role.in_(("cashier",)))))
    if not cashiers or not PIN_PATTERN.match(pin or ""):
        check_password_hash(_DUMMY_HASH, pin or "")
        raise LoginRefused("Wrong store or PIN.")
    # A store-wide lock: PIN guessing spreads over cashiers, so count failures per store.
    for cashier in cashiers:
        _check_lock(cashier, now)
    for cashier in cashiers:
        if cashier.pin_hash and check_password_hash(cashier.pin_hash, pin):
            for other in cashiers:
                other.failed_logins, other.locked_until = 0, None
                session.add(other)
            return cashier
    for cashier in cashiers:
        _failed(session, cashier, now)
    raise LoginRefused("Wrong store or PIN.")


def audit(session: Session, actor: Actor, action: str, *, target: str = "",
          store_id: str | None = None, **details) -> None:
    session.add(AuditEntry(actor_id=actor.id, actor_role=actor.role, action=action,
                           store_id=store_id, target=target, ip=actor.ip,
                           details_json=json.dumps(details, default=str, ensure_ascii=False)))
