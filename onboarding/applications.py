"""Merchant applications: parsing what a business typed at /apply, recording it (nothing
else), and the city's decision. No Flask here.

Approving creates the store through `merchants.service.create_store` (so it gets whatever
every store gets) with the city's defaults, and an owner invitation.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from accounts.service import Actor, audit
from backoffice.service import Problem, Refused  # one field problem shape for every form
from merchants.districts import CATEGORIES, DISTRICTS
from merchants.models import Store
from merchants.service import create_store, random_id
from onboarding.brn import normalize_brn
from onboarding.invitations import IssuedInvitation, create_invitation
from onboarding.models import MerchantApplication, locked_pending

MAX_VOLUME_KRW = 10**12
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{7,18}[0-9]$")
# required text fields: their longest
TEXT_FIELDS = {"name_ko": 120, "name_en": 120, "address": 300, "contact_name": 120}


class ApplicationRefused(Refused):
    """The back office's form refusal (its `problems`), named for applications."""


class DecisionRefused(ValueError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ApplicationData:
    name_ko: str
    name_en: str
    brn: str
    district: str
    category: str
    address: str
    contact_name: str
    email: str
    phone: str
    monthly_volume_krw: int
    settlement_mode: str
    xpub: str


def _text(value) -> str:
    return unicodedata.normalize("NFC", value if isinstance(value, str) else "").strip()


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in "\n" for ch in text)


def _check_text(problems: list, name: str, text: str, limit: int) -> None:
    if not text:
        problems.append(Problem(name, "required"))
    elif len(text) > limit:
        problems.append(Problem(name, "too_long", {"max": limit}))
    elif "<" in text or ">" in text or _has_control(text):
        problems.append(Problem(name, "characters"))


def _check_place(problems: list, district: str, category: str, email: str) -> None:
    if district not in DISTRICTS:
        problems.append(Problem("district", "choose"))
    if category not in CATEGORIES:
        problems.append(Problem("category", "choose"))
    if len(email) > 200 or not _EMAIL.match(email):
        problems.append(Problem("email", "invalid"))


def _check_settlement(problems: list, mode: str, xpub: str, network: str) -> str:
    """The normalized key text for BTC settlement ('' for won)."""
    from payments.addresses import ExtendedKey, InvalidExtendedKey

    xpub = "".join((xpub or "").split())
    if mode not in ("krw", "btc"):
        problems.append(Problem("settlement_mode", "choose"))
    elif mode == "btc":
        if not xpub:
            problems.append(Problem("xpub", "required"))
        elif len(xpub) > 200:
            problems.append(Problem("xpub", "invalid", {"reason": "too long"}))
        else:
            try:
                return ExtendedKey.parse(xpub, network).text
            except InvalidExtendedKey as err:
                problems.append(Problem("xpub", "invalid", {"reason": str(err)}))
    return ""


def parse_application(form: Mapping[str, str], network: str) -> ApplicationData:
    """Every field checked at once; raises ApplicationRefused listing each problem."""
    problems: list[Problem] = []
    values = {name: _text(form.get(name)) for name in
              (*TEXT_FIELDS, "brn", "district", "category", "email", "phone",
               "monthly_volume", "settlement_mode", "xpub")}
    for name, limit in TEXT_FIELDS.items():
        _check_text(problems, name, values[name], limit)
    brn = normalize_brn(values["brn"]) if len(values["brn"]) <= 20 else None
    if brn is None:
        problems.append(Problem("brn", "required" if not values["brn"] else "invalid"))
    email = values["email"].lower()
    _check_place(problems, values["district"], values["category"], email)
    phone = values["phone"]
    if len(phone) > 32 or not _PHONE.match(phone):
        problems.append(Problem("phone", "invalid"))
    volume_text = values["monthly_volume"].replace(",", "").replace("₩", "").strip()
    volume = 0
    if not volume_text.isascii() or not volume_text.isdigit() or len(volume_text) > 13:
        problems.append(Problem("monthly_volume", "number"))
    else:
        volume = int(volume_text)
        if volume > MAX_VOLUME_KRW:
            problems.append(Problem("monthly_volume", "number"))
    mode = values["settlement_mode"] or "krw"
    xpub = _check_settlement(problems, mode, values["xpub"], network)
    if problems:
        raise ApplicationRefused(problems)
    return ApplicationData(name_ko=values["name_ko"], name_en=values["name_en"], brn=brn,
                           district=values["district"], category=values["category"],
                           address=values["address"], contact_name=values["contact_name"],
                           email=email, phone=phone, monthly_volume_krw=volume,
                           settlement_mode=mode, xpub=xpub)


def submit_application(session: Session, data: ApplicationData, *, language: str, ip: str,
                       now: datetime) -> MerchantApplication | None:
    """Record the application, or None when its number is already pending or approved:
    then nothing is created, and the reviewer sees the attempt flagged on that application
    (commit the session either way). A number rejected before is accepted and flagged."""
    earlier = list(session.execute(select(MerchantApplication).where(
        MerchantApplication.brn == data.brn)).scalars())
    live = [a for a in earlier if a.status in ("pending", "approved")]
    if not live:
        app = MerchantApplication(id=random_id(20), status="pending", language=language,
                                  client_ip=ip[:64], created_at=now,
                                  flags="previously-rejected" if earlier else "",
                                  **data.__dict__)
        try:
            with session.begin_nested():  # a parallel submission of the same number loses
                session.add(app)
                session.flush()
        except IntegrityError:
            live = list(session.execute(select(MerchantApplication).where(
                MerchantApplication.brn == data.brn)).scalars())
        else:
            audit(session, Actor(None, "public", ip), "application.submitted", target=app.id,
                  brn=data.brn)
            return app
    for app in live:
        if "duplicate-attempt" not in app.flags.split():
            app.flags = f"{app.flags} duplicate-attempt".strip()
            session.add(app)
    audit(session, Actor(None, "public", ip), "application.duplicate_refused",
          target=live[0].id if live else "", brn=data.brn, email=data.email)
    return None


def _pending(session: Session, application_id: str) -> MerchantApplication:
    app = locked_pending(session, MerchantApplication, application_id)
    if app is None:
        raise DecisionRefused("not-pending")
    return app


def approve_application(session: Session, actor: Actor, application_id: str, *, network: str,
                        now: datetime, reason: str = "",
                        invitation_days: int = 7) -> tuple[Store, IssuedInvitation]:
    """Create the store (city defaults; fees follow its category) and the owner's invitation."""
    from payments.service import register_key

    app = _pending(session, application_id)
    key_id = register_key(session, app.xpub, network, "store").id \
        if app.settlement_mode == "btc" else None
    store = create_store(session, name=app.name_ko, district=app.district,
                         category=app.category, settlement_mode=app.settlement_mode,
                         key_id=key_id, default_language=app.language)
    issued = create_invitation(session, actor, store.id, app.email, now=now, days=invitation_days)
    app.status, app.decided_by, app.decided_at = "approved", actor.id, now
    app.decision_reason, app.store_id = reason[:500], store.id
    session.add(app)
    audit(session, actor, "application.approved", target=app.id, store_id=store.id,
          reason=app.decision_reason)
    return store, issued


def reject_application(session: Session, actor: Actor, application_id: str, *, reason: str,
                       now: datetime) -> MerchantApplication:
    reason = _text(reason)
    if not reason or len(reason) > 500:
        raise ApplicationRefused([Problem("reason", "required")])
    app = _pending(session, application_id)
    app.status, app.decided_by, app.decided_at, app.decision_reason = "rejected", actor.id, now, reason
    session.add(app)
    audit(session, actor, "application.rejected", target=app.id, reason=reason)
    return app


def duplicates_of(session: Session, app: MerchantApplication) -> list[MerchantApplication]:
    return list(session.execute(select(MerchantApplication).where(
        MerchantApplication.brn == app.brn, MerchantApplication.id != app.id)
        .order_by(MerchantApplication.created_at)).scalars())



def create_merchant(session: Session, actor: Actor, *, name: str, district: str, category: str,
                    email: str, settlement_mode: str, xpub: str, network: str,
                    now: datetime) -> tuple[Store, IssuedInvitation]:
    """The city admin creates a store directly (no application) and its owner invitation."""
    from merchants.service import StoreError
    from payments.service import register_key

    name, email = _text(name), _text(email).lower()
    problems: list[Problem] = []
    _check_text(problems, "name", name, 120)
    _check_place(problems, district, category, email)
    key_text = _check_settlement(problems, settlement_mode, xpub, network)
    if problems:
        raise ApplicationRefused(problems)
    key_id = register_key(session, key_text, network, "store").id if settlement_mode == "btc" else None
    try:
        store = create_store(session, name=name, district=district, category=category,
                             settlement_mode=settlement_mode, key_id=key_id)
    except StoreError as err:
        raise ApplicationRefused([Problem("name", "invalid", {"reason": err.message})]) from None
    audit(session, actor, "merchant.created", target=store.id, store_id=store.id, email=email,
          settlement_mode=settlement_mode)
    return store, create_invitation(session, actor, store.id, email, now=now)
