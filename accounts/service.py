"""Accounts: creation, password/PIN checks (throttled per client and per account, with the
hash checked outside any transaction), server-side sessions, the audit log. No Flask here."""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.models import CITY_ROLES, ROLES, AuditEntry, LoginSession, User
from accounts.throttle import Claim, Limit, Throttled, claim, client_key, succeeded
from database import Database
from merchants import store_codes
from merchants.models import Store
from merchants.service import random_id

PIN_PATTERN = re.compile(r"^\d{4,8}$")
# Checked against when a login names no real account, so timing does not reveal which exist.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


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


@dataclass(frozen=True)
class LoginPolicy:
    """Wrong attempts allowed before growing delays start (accounts/throttle.py)."""
    free_per_client: int = 10
    free_per_account: int = 5


@dataclass(frozen=True)
class Attempt:
    """Who is trying: the client's address and, when the browser carries a valid device
    cookie signed by us, that device and the stores/accounts it has signed in to before."""
    client: str
    device: str | None = None
    known: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LoggedIn:
    user: User
    session_id: str
    principal: str  # "store:ID" or "user:ID": what the device now knows


class LoginRefused(Exception):
    """Wrong credentials (``reason`` "pin", "password") or a disabled account."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LoginThrottled(LoginRefused):
    def __init__(self, retry_after: int):
        super().__init__("throttled")
        self.retry_after = retry_after


_EMAIL = re.compile(r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")
_STORE_REF = re.compile(r"^[A-Za-z0-9 -]{1,48}$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


def _limits(attempt: Attempt, principal: str, policy: LoginPolicy) -> tuple[list[Limit], list[str]]:
    """A device that signed in to this store/account before is throttled on its own, so
    guesses from elsewhere (even from the same café's Wi-Fi) never lock it out; anything
    else counts against its address and against the store/account it names."""
    if attempt.device and principal in attempt.known:
        device = Limit(f"device:{attempt.device}", policy.free_per_account)
        return [device], [device.key]
    return ([Limit(client_key(attempt.client), policy.free_per_client),
             Limit(principal, policy.free_per_account)], [principal])


def _checked(db: Database, attempt: Attempt, principal: str, policy: LoginPolicy, now,
             check) -> tuple[Claim, list[str], User | None]:
    """Count the attempt, then run the slow hash ``check`` outside any transaction."""
    limits, reset = _limits(attempt, principal, policy)
    try:
        done = claim(db, limits, now)
    except Throttled as throttled:
        raise LoginThrottled(throttled.retry_after) from None
    user = check()
    if user is None and done.started_blocks:
        with db.write() as session:
            audit(session, Actor(None, "anonymous", attempt.client), "login.throttled",
                  target=principal, keys=done.started_blocks)
    return done, reset, user


def _finish(db: Database, done: Claim, reset: list[str], user: User, attempt: Attempt,
            principal: str, how: str, now: datetime) -> LoggedIn:
    with db.write() as session:
        current = session.get(User, user.id)
        if current is None or current.disabled:
            raise LoginRefused("disabled")
        succeeded(session, done, reset=reset)
        session_id = start_session(session, current, attempt.client, now)
        audit(session, Actor(current.id, current.role, attempt.client), "login", target=how,
              store_id=current.store_id)
        session.flush()
        session.expunge(current)
    return LoggedIn(current, session_id, principal)


def find_store_for_login(session: Session, typed: str) -> Store | None:
    """The store a cashier named by its short code (any case) or by its storeId."""
    typed = (typed or "").strip()
    if not _STORE_REF.match(typed):
        return None
    code = store_codes.normalize(typed)
    return session.exec(select(Store).where(
        (Store.pos_code == code) | (Store.id == typed), Store.archived == False)).first()  # noqa: E712


def login_with_pin(db: Database, store_ref: str, pin: str, attempt: Attempt, now: datetime,
                   policy: LoginPolicy = LoginPolicy()) -> LoggedIn:
    """A cashier's PIN for a store (code or id). The same refusal whatever was wrong."""
    with db.read() as session:
        store = find_store_for_login(session, store_ref)
        cashiers = [] if store is None else list(session.exec(select(User).where(
            User.store_id == store.id, User.role == "cashier", User.disabled == False)))  # noqa: E712
    principal = f"store:{store.id}" if store else \
        "store?:" + _digest(store_codes.normalize(store_ref or ""))

    def check() -> User | None:
        if not cashiers or not PIN_PATTERN.match(pin or ""):
            check_password_hash(_DUMMY_HASH, pin or "")
            return None
        # PINs are guessed against every cashier of the store at once: one count per store.
        return next((c for c in cashiers if c.pin_hash and check_password_hash(c.pin_hash, pin)),
                    None)

    done, reset, user = _checked(db, attempt, principal, policy, now, check)
    if user is None:
        raise LoginRefused("pin")
    return _finish(db, done, reset, user, attempt, principal, "pin", now)


def login_with_password(db: Database, email: str, password: str, attempt: Attempt,
                        now: datetime, policy: LoginPolicy = LoginPolicy()) -> LoggedIn:
    email = (email or "").strip().lower()
    user = None
    if _EMAIL.match(email):
        with db.read() as session:
            user = session.exec(select(User).where(User.email == email)).first()
    principal = f"user:{user.id}" if user else "email:" + _digest(email)

    def check() -> User | None:
        if user is None or not user.password_hash:
            check_password_hash(_DUMMY_HASH, password or "")
            return None
        return user if check_password_hash(user.password_hash, password or "") else None

    done, reset, found = _checked(db, attempt, principal, policy, now, check)
    if found is None:
        raise LoginRefused("password")
    return _finish(db, done, reset, found, attempt, principal, "password", now)


# -- sessions ---------------------------------------------------------------------------------
def start_session(session: Session, user: User, ip: str, now: datetime) -> str:
    row = LoginSession(id=secrets.token_urlsafe(24), user_id=user.id, created_at=now, ip=ip[:64])
    session.add(row)
    return row.id


def session_user(session: Session, session_id: str) -> User | None:
    """The person of a live session (not ended, account not disabled), else None."""
    if not session_id or len(session_id) > 32:
        return None
    row = session.exec(select(User).join(LoginSession, LoginSession.user_id == User.id).where(
        LoginSession.id == session_id, LoginSession.ended_at.is_(None),
        User.disabled == False)).first()  # noqa: E712
    return row


def end_session(session: Session, session_id: str, now: datetime) -> None:
    row = session.get(LoginSession, session_id) if session_id else None
    if row is not None and row.ended_at is None:
        row.ended_at = now
        session.add(row)


def audit(session: Session, actor: Actor, action: str, *, target: str = "",
          store_id: str | None = None, **details) -> None:
    session.add(AuditEntry(actor_id=actor.id, actor_role=actor.role, action=action,
                           store_id=store_id, target=target, ip=actor.ip,
                           details_json=json.dumps(details, default=str, ensure_ascii=False)))
