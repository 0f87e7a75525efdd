"""The treasury's off-chain credit: won the city received outside the chain (e.g. a tourist
paid the rest of a short payment in cash at the counter), credited to the merchant for one
invoice by two people.

A merchant's API call can never credit won (its mark changes only its shop's status); this
is the one way to credit more than the sats received, and it is a city decision:

1. a treasury operator or city admin *proposes* "credit ₩N to store S for invoice I,
   reason R" (audited; nothing is posted);
2. a *different* treasury operator or city admin *approves* it: the entry
   ``offchain:<id>`` posts ``city_offchain:krw`` (debit) / ``merchant_payable:<S>``
   (credit), and ``ledger check`` counts it as backing for that invoice's credit; or
   rejects it. Each decision is audited; an approval posts once (unique business key and a
   conditional status update), whatever retries or parallel clicks do.

N is at most what the invoice's price still lacks: the price less the won already credited
for it from the chain and earlier approved off-chain credits.

No Flask here: callers pass a session and the acting person (an ``accounts.service.Actor``).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from accounts.service import Actor, audit
from merchants.service import random_id
from settlement.ledger import post
from settlement.models import JournalEntry, LedgerAccount, OffchainCredit, Posting
from settlement.rules import CITY_LOSS, offchain_credit_entry, payable

ROLES = ("treasury", "city_admin")
MAX_REASON = 500


class CreditRefused(ValueError):
    """A proposal or decision that must not happen (the message says why)."""


def _require_role(actor: Actor) -> None:
    if actor.role not in ROLES or not actor.id:
        raise CreditRefused("only a treasury operator or a city admin decides off-chain credits")


def credited_for_invoice(session, invoice_id: str, store_id: str) -> int:
    """Won credited to the merchant for this invoice so far, by every entry naming it."""
    total = session.execute(
        select(func.coalesce(func.sum(Posting.amount), 0)).select_from(Posting)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.invoice_id == invoice_id, LedgerAccount.code == payable(store_id))
    ).scalar_one()
    return -int(total)


def room_for(session, invoice, *, besides: str | None = None) -> int:
    """How much an off-chain credit may still add: the price less what is credited or
    waiting for approval (other than the proposal `besides`)."""
    if invoice.amount_krw is None:
        return 0
    waiting = session.execute(
        select(func.coalesce(func.sum(OffchainCredit.amount_krw), 0))
        .where(OffchainCredit.invoice_id == invoice.id, OffchainCredit.status == "proposed",
               OffchainCredit.id != (besides or ""))
    ).scalar_one()
    return max(invoice.amount_krw - credited_for_invoice(session, invoice.id, invoice.store_id)
               - int(waiting), 0)


def _require_room(session, credit: OffchainCredit) -> None:
    """The invoice may have been credited since the proposal (its payment came on the
    chain meanwhile): approving must not take the credit past the price."""
    from payments.models import Invoice

    room = room_for(session, session.get(Invoice, credit.invoice_id), besides=credit.id)
    if credit.amount_krw > room:
        raise CreditRefused(f"at most ₩{room:,} can be credited for this invoice now (it was "
                            "credited since this proposal): reject it and propose again")


def propose(session, actor: Actor, *, store_id: str, invoice_id: str, amount_krw: int,
            reason: str, moment: datetime) -> OffchainCredit:
    from payments.models import Invoice

    _require_role(actor)
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise CreditRefused(f"say why, in 1 to {MAX_REASON} characters")
    if isinstance(amount_krw, bool) or not isinstance(amount_krw, int) or amount_krw <= 0:
        raise CreditRefused("the amount is a positive whole number of won")
    invoice = session.get(Invoice, (invoice_id or "")[:32])
    if invoice is None or invoice.store_id != store_id:
        raise CreditRefused("no such invoice in this store")
    room = room_for(session, invoice)
    if amount_krw > room:
        raise CreditRefused(f"at most ₩{room:,} can be credited for this invoice (its price "
                            "less what is already credited or proposed)")
    credit = OffchainCredit(id=random_id(24), store_id=store_id, invoice_id=invoice.id,
                            amount_krw=amount_krw, reason=reason, status="proposed",
                            proposed_by=actor.id, created_at=moment)
    session.add(credit)
    audit(session, actor, "treasury.offchain_credit.proposed", target=credit.id,
          store_id=store_id, invoiceId=invoice.id, amountKrw=str(amount_krw), reason=reason)
    return credit


def decide(session, actor: Actor, credit_id: str, *, approve: bool,
           moment: datetime) -> OffchainCredit:
    """Approve (posts the credit) or reject a proposal; never by the person who proposed it."""
    _require_role(actor)
    credit = session.get(OffchainCredit, (credit_id or "")[:32])
    if credit is None:
        raise CreditRefused("no such off-chain credit")
    if credit.status != "proposed":
        raise CreditRefused(f"this credit is already {credit.status}")
    if credit.proposed_by == actor.id:
        raise CreditRefused("a second person must decide: you proposed this credit")
    if approve:
        _require_room(session, credit)
    status = "approved" if approve else "rejected"
    # Only the first decision wins, also with two clicks at once.
    done = session.execute(
        update(OffchainCredit).where(OffchainCredit.id == credit.id,
                                     OffchainCredit.status == "proposed")
        .values(status=status, decided_by=actor.id, decided_at=moment)
        .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        raise CreditRefused("this credit was decided meanwhile")
    if approve:
        post(session, offchain_credit_entry(
            credit.id, credit.store_id, credit.invoice_id, credit.amount_krw,
            proposed_by=credit.proposed_by, approved_by=actor.id, reason=credit.reason,
            moment=moment))
    audit(session, actor, f"treasury.offchain_credit.{status}", target=credit.id,
          store_id=credit.store_id, invoiceId=credit.invoice_id,
          amountKrw=str(credit.amount_krw), proposedBy=credit.proposed_by)
    session.refresh(credit)
    return credit


def credits(session, *, limit: int = 200) -> list[OffchainCredit]:
    """Proposals first (oldest first), then the latest decisions."""
    waiting = list(session.execute(select(OffchainCredit).where(
        OffchainCredit.status == "proposed").order_by(OffchainCredit.created_at)).scalars())
    decided = list(session.execute(select(OffchainCredit).where(
        OffchainCredit.status != "proposed").order_by(OffchainCredit.decided_at.desc())
        .limit(limit)).scalars())
    return waiting + decided


def city_losses(session, *, limit: int = 200) -> tuple[int, list[dict]]:
    """The city loss account: its balance (won lost to 0-conf payments the city accepted)
    and its latest entries, per invoice."""
    rows = session.execute(
        select(JournalEntry.invoice_id, JournalEntry.store_id, JournalEntry.business_key,
               JournalEntry.created_at, JournalEntry.memo, Posting.amount)
        .select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.code == CITY_LOSS)
        .order_by(JournalEntry.created_at.desc(), JournalEntry.id.desc()).limit(limit)).all()
    total = session.execute(
        select(func.coalesce(func.sum(Posting.amount), 0)).select_from(Posting)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.code == CITY_LOSS)).scalar_one()
    return int(total), [{"invoiceId": r.invoice_id, "storeId": r.store_id, "entry": r.business_key,
                         "at": r.created_at, "memo": r.memo, "amountKrw": int(r.amount)}
                        for r in rows]
