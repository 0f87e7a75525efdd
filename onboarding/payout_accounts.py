"""Payout-account changes with four eyes. No Flask here.

Whoever enters a destination (the owner on the web, an operator on the CLI) only creates a
`PayoutAccountChange`. Settlement reads `merchant_payout_account` alone, and the only
writer of that row is `approve_change`, which refuses the person who entered the change
and anyone not in the treasury role. Until then payouts go to the last approved account.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select, update
from sqlmodel import Session

from accounts.models import User
from accounts.service import Actor, audit
from merchants.models import Store
from merchants.service import random_id
from onboarding.models import MerchantApplication, PayoutAccountChange, locked_pending
from settlement.models import MerchantPayoutAccount

APPROVER_ROLES = ("treasury",)
MAX_EXPLANATION = 500
_ACCOUNT_NUMBER = re.compile(r"^[0-9][0-9-]{4,30}[0-9]$")
_STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{6,58}$")
# Company-form words that do not make a holder name differ from the business name.
_MARKS = ("(주)", "㈜", "(유)")
_LEGAL_FORMS = ("주식회사", "유한회사", "coltd", "corp", "ltd", "inc", "llc")


@dataclass(frozen=True)
class Problem:
    field: str
    code: str


class ChangeRefused(ValueError):
    """The entered destination is not acceptable; `problems` say which fields and why."""

    def __init__(self, problems: list[Problem]):
        super().__init__(", ".join(f"{p.field}: {p.code}" for p in problems))
        self.problems = problems


class DecisionRefused(PermissionError):
    """An approval or rejection this actor may not make (code: same-person, role, not-pending)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _clean(text: str | None) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFC", text or "")
                   if unicodedata.category(ch)[0] != "C").strip()


def normalized_name(name: str) -> str:
    text = unicodedata.normalize("NFKC", name or "").lower()
    for mark in _MARKS:
        text = text.replace(mark, "")
    text = "".join(ch for ch in text if ch.isalnum())
    for form in _LEGAL_FORMS:  # as a prefix or suffix only
        text = text.removeprefix(form).removesuffix(form)
    return text


def holder_matches(holder: str, business_names: list[str]) -> bool:
    wanted = normalized_name(holder)
    return bool(wanted) and any(wanted == normalized_name(n) for n in business_names if n)


def business_names(session: Session, store: Store) -> list[str]:
    names = [store.name]
    for app in session.execute(select(MerchantApplication).where(
            MerchantApplication.store_id == store.id)).scalars():
        names += [app.name_ko, app.name_en]
    return names


def request_change(session: Session, actor: Actor, store_id: str, *, bank_name: str = "",
                   bank_account: str = "", account_holder: str = "",
                   stripe_account_id: str = "", explanation: str = "",
                   now: datetime) -> PayoutAccountChange:
    """Record a pending destination for `store_id` (superseding a pending one) and audit it.
    Raises ChangeRefused with every problem at once."""
    store = session.get(Store, store_id)
    if store is None:
        raise ChangeRefused([Problem("store", "unknown")])
    if not actor.id or session.get(User, actor.id) is None:
        raise ChangeRefused([Problem("actor", "unknown")])  # four eyes needs named people
    bank_name, holder = _clean(bank_name), _clean(account_holder)
    account = re.sub(r"\s+", "", _clean(bank_account))
    stripe, explanation = _clean(stripe_account_id), _clean(explanation)
    problems = []
    bank_given = bool(bank_name or account or holder)
    if not bank_given and not stripe:
        problems.append(Problem("bank_account", "required"))
    if bank_given:
        if not bank_name or len(bank_name) > 64:
            problems.append(Problem("bank_name", "length"))
        if not _ACCOUNT_NUMBER.match(account) or sum(c.isdigit() for c in account) < 6:
            problems.append(Problem("bank_account", "format"))
        if not holder or len(holder) > 120:
            problems.append(Problem("account_holder", "length"))
    if stripe and not _STRIPE_ACCOUNT.match(stripe):
        problems.append(Problem("stripe_account_id", "format"))
    if len(explanation) > MAX_EXPLANATION:
        problems.append(Problem("explanation", "length"))
    matches = not holder or holder_matches(holder, business_names(session, store))
    if holder and not matches and not explanation:
        problems.append(Problem("explanation", "required"))
    if problems:
        raise ChangeRefused(problems)
    session.execute(update(PayoutAccountChange)
                    .where(PayoutAccountChange.store_id == store_id,
                           PayoutAccountChange.status == "pending")
                    .values(status="superseded", decided_at=now, decided_by=actor.id)
                    .execution_options(synchronize_session=False))
    session.flush()
    change = PayoutAccountChange(
        id=random_id(20), store_id=store_id, status="pending",
        rail="stripe" if stripe else "bankfile", stripe_account_id=stripe or None,
        bank_name=bank_name, bank_account=account, account_holder=holder,
        holder_matches=matches, holder_explanation=explanation if not matches else "",
        requested_by=actor.id, requested_role=actor.role, requested_at=now)
    session.add(change)
    session.flush()
    audit(session, actor, "payout_account.requested", target=change.id, store_id=store_id,
          bank_name=bank_name, bank_account_last4=account[-4:], holder=holder,
          stripe=bool(stripe), holder_matches=matches)
    return change


def _pending(session: Session, change_id: str) -> PayoutAccountChange:
    change = locked_pending(session, PayoutAccountChange, change_id)
    if change is None:
        raise DecisionRefused("not-pending")
    return change


def _check_decider(actor: Actor, change: PayoutAccountChange) -> None:
    if actor.role not in APPROVER_ROLES:
        raise DecisionRefused("role")
    if not actor.id or actor.id == change.requested_by:
        raise DecisionRefused("same-person")


def approve_change(session: Session, actor: Actor, change_id: str, now: datetime,
                   note: str = "") -> MerchantPayoutAccount:
    """A treasury operator other than the requester approves: the change becomes the
    store's payout account (the one settlement pays)."""
    change = _pending(session, change_id)
    _check_decider(actor, change)
    account = session.get(MerchantPayoutAccount, change.store_id) or \
        MerchantPayoutAccount(store_id=change.store_id)
    previous = account.bank_account if account.updated_at else ""
    account.rail, account.stripe_account_id = change.rail, change.stripe_account_id
    account.bank_name, account.bank_account = change.bank_name, change.bank_account
    account.account_holder, account.updated_at = change.account_holder, now
    session.add(account)
    change.status, change.decided_by, change.decided_at = "approved", actor.id, now
    change.decision_note = _clean(note)[:500]
    session.add(change)
    session.flush()
    audit(session, actor, "payout_account.approved", target=change.id, store_id=change.store_id,
          requested_by=change.requested_by, bank_account_last4=change.bank_account[-4:],
          previous_last4=previous[-4:], note=change.decision_note)
    return account


def reject_change(session: Session, actor: Actor, change_id: str, now: datetime,
                  reason: str) -> PayoutAccountChange:
    change = _pending(session, change_id)
    _check_decider(actor, change)
    reason = _clean(reason)
    if not reason or len(reason) > 500:
        raise ChangeRefused([Problem("reason", "length")])
    change.status, change.decided_by, change.decided_at = "rejected", actor.id, now
    change.decision_note = reason
    session.add(change)
    audit(session, actor, "payout_account.rejected", target=change.id, store_id=change.store_id,
          reason=reason)
    return change


def pending_changes(session: Session) -> list[tuple[PayoutAccountChange, Store]]:
    rows = session.execute(select(PayoutAccountChange, Store)
                           .join(Store, Store.id == PayoutAccountChange.store_id)
                           .where(PayoutAccountChange.status == "pending")
                           .order_by(PayoutAccountChange.requested_at))
    return [(c, s) for c, s in rows]


def latest_change(session: Session, store_id: str) -> PayoutAccountChange | None:
    """The pending change if there is one, else the last decided one."""
    pending_first = case((PayoutAccountChange.status == "pending", 0), else_=1)
    return session.execute(select(PayoutAccountChange)
                           .where(PayoutAccountChange.store_id == store_id,
                                  PayoutAccountChange.status != "superseded")
                           .order_by(pending_first, PayoutAccountChange.decided_at.desc(),
                                     PayoutAccountChange.requested_at.desc())
                           .limit(1)).scalar_one_or_none()
