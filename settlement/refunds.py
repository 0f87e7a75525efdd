"""Refund claims: BTC owed back to a payer (paid over, paid late, paid part then expired).

1. `open_claim` makes a claim for what the ledger owes the payer on that invoice and a
   random key for the claimant (only its SHA-256 is stored). Several claims may stand side by
   side: whoever knows only the invoice id can open one, so no claim may block another;
2. each claimant gives a refund address with their own key (`submit_address`, validated for
   the network);
3. the treasury approves one claim (`approve`; the others on the invoice are rejected), sends
   from the offline wallet and records the txid (`record_sent`) — ledger: refunds owed →
   treasury BTC;
4. or a person credits the sats to the merchant instead (`credit_to_merchant`) — ledger:
   refunds owed → conversion at the invoice's locked rate, less the fee.

A refund the merchant funds (a Greenfield pull payment, `settlement.pull_payments`) is a claim
with `merchant_funded` set: its sats come from its own `merchant_refund` entry, so it has no
rivals (approving it rejects nothing, and the sats it holds are not offered to rival claims),
and it may have no invoice at all.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from merchants.service import random_id
from settlement.ledger import post
from settlement.models import JournalEntry, LedgerAccount, LedgerInvoice, Posting, RefundClaim
from settlement.rules import REFUNDS_OWED, overpayment_credit_entry, refund_sent_entry

ACTIVE = ("open", "submitted", "approved")
UNDECIDED = ("open", "submitted")


class RefundError(ValueError):
    pass


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owed_sats(session, invoice_id: str) -> int:
    """Sats the ledger owes the payer of this invoice that rival claims share: all its
    entries, less what unfinished merchant-funded refunds hold (those sats are theirs)."""
    total = session.execute(
        select(func.coalesce(func.sum(Posting.amount), 0)).select_from(Posting)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.invoice_id == invoice_id, LedgerAccount.code == REFUNDS_OWED)
    ).scalar_one()
    held = session.execute(select(func.coalesce(func.sum(RefundClaim.amount_sats), 0)).where(
        RefundClaim.invoice_id == invoice_id, RefundClaim.merchant_funded == True,  # noqa: E712
        RefundClaim.status.in_(ACTIVE))).scalar_one()
    return -int(total) - int(held)


def rivals(invoice_id: str):
    """The claims that compete for what the payer of this invoice is owed."""
    return select(RefundClaim).where(RefundClaim.invoice_id == invoice_id,
                                     RefundClaim.merchant_funded == False)  # noqa: E712


def approved_claim(session, invoice_id: str) -> RefundClaim | None:
    return session.execute(rivals(invoice_id).where(
        RefundClaim.status == "approved")).scalars().first()


def new_claim(session, store_id: str, invoice_id: str | None, amount_sats: int, moment: datetime,
              *, merchant_funded: bool = False,
              shown_unpaid_at: datetime | None = None) -> tuple[RefundClaim, str]:
    """A claim row and its random key (only the key's SHA-256 is stored; the caller shows
    the key once). Flushed, so a unique index that refuses it raises IntegrityError here."""
    key = secrets.token_urlsafe(32)
    claim = RefundClaim(id=random_id(24), token_hash=_hash(key), invoice_id=invoice_id,
                        store_id=store_id, amount_sats=amount_sats, status="open",
                        merchant_funded=merchant_funded, shown_unpaid_at=shown_unpaid_at,
                        created_at=moment, updated_at=moment)
    session.add(claim)
    session.flush()
    return claim, key


def open_claim(session, invoice_id: str, moment: datetime, *,
               shown_unpaid_at: datetime | None = None) -> tuple[RefundClaim, str]:
    """A new claim beside any others on the invoice, and its key (shown once)."""
    from payments.models import Invoice

    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise RefundError("unknown invoice")
    if approved_claim(session, invoice_id) is not None:
        raise RefundError(f"the treasury has already approved a refund claim for {invoice_id}")
    owed = owed_sats(session, invoice_id)
    if owed <= 0:
        raise RefundError("nothing is owed to the payer of this invoice")
    return new_claim(session, invoice.store_id, invoice_id, owed, moment,
                     shown_unpaid_at=shown_unpaid_at)


def claim_by_token(session, token: str) -> RefundClaim | None:
    return session.execute(select(RefundClaim).where(
        RefundClaim.token_hash == _hash(token))).scalar_one_or_none()


def claim_for_key(session, claim_id: str, key: str | None) -> RefundClaim | None:
    """The claim, when `key` is its key; None otherwise (constant-time comparison)."""
    claim = session.get(RefundClaim, claim_id) if claim_id and len(claim_id) <= 32 else None
    if claim is None or not key or len(key) > 100:
        return None
    return claim if hmac.compare_digest(claim.token_hash, _hash(key)) else None


def submit_address(session, token: str, address: str, network: str, moment: datetime) -> RefundClaim:
    from payments.addresses import InvalidAddress, validate_address

    claim = claim_by_token(session, token)
    if claim is None:
        raise RefundError("unknown refund link")
    if claim.status not in ("open", "submitted"):
        raise RefundError(f"this refund is already {claim.status}")
    try:
        claim.address = validate_address(address.strip(), network)
    except InvalidAddress as err:
        raise RefundError(f"not a valid {network} address: {err}") from None
    claim.status, claim.updated_at = "submitted", moment
    session.add(claim)
    return claim


def _claim(session, claim_id: str) -> RefundClaim:
    claim = session.get(RefundClaim, claim_id)
    if claim is None:
        raise RefundError("unknown refund claim")
    return claim


def approve(session, claim_id: str, by: str, moment: datetime) -> RefundClaim:
    """The treasury chooses this claim; every other undecided rival claim on the invoice is
    rejected. The database allows one approved rival claim per invoice (two approvals at
    once). A merchant-funded claim has no rivals: its own entry set its sats aside."""
    claim = _claim(session, claim_id)
    if claim.status != "submitted":
        raise RefundError(f"only a claim with an address can be approved (it is {claim.status})")
    if not claim.merchant_funded and owed_sats(session, claim.invoice_id) < claim.amount_sats:
        raise RefundError("that much is no longer owed to the payer of this invoice")
    claim.status, claim.decided_by, claim.updated_at = "approved", by, moment
    try:
        with session.begin_nested():
            session.add(claim)
            session.flush()
    except IntegrityError:
        raise RefundError("another claim on this invoice is already approved") from None
    if claim.merchant_funded:
        return claim
    for other in session.execute(rivals(claim.invoice_id).where(
            RefundClaim.id != claim.id, RefundClaim.status.in_(UNDECIDED))).scalars():
        other.status, other.decided_by, other.updated_at = "rejected", by, moment
        session.add(other)
    return claim


def record_sent(session, claim_id: str, txid: str, moment: datetime, fee_sats: int = 0) -> RefundClaim:
    claim = _claim(session, claim_id)
    if not re.fullmatch(r"[0-9a-fA-F]{64}", txid or ""):
        raise RefundError("a txid is 64 hex characters")
    if claim.status == "sent" and claim.txid == txid.lower():
        return claim
    if claim.status != "approved":
        raise RefundError(f"only an approved claim can be sent (it is {claim.status})")
    post(session, refund_sent_entry(claim.id, claim.invoice_id, claim.store_id, claim.amount_sats,
                                    txid.lower(), moment=moment))
    claim.status, claim.txid, claim.fee_sats, claim.updated_at = "sent", txid.lower(), fee_sats, moment
    session.add(claim)
    return claim


def credit_to_merchant(session, invoice_id: str, sats: int, by: str, moment: datetime,
                       default_bps: int) -> None:
    """A person decides the payer's extra sats go to the merchant (e.g. a tip)."""
    from payments.models import Invoice
    from settlement.posting_job import facts_for

    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise RefundError("unknown invoice")
    if sats <= 0 or sats > owed_sats(session, invoice_id):
        raise RefundError("credit at most what is owed to the payer")
    row = session.get(LedgerInvoice, invoice_id)
    facts = facts_for(session, invoice, row.fee_bps if row else default_bps)
    decision = random_id(12)
    post(session, overpayment_credit_entry(facts, sats, decision, moment=moment, by=by))
    for claim in session.execute(rivals(invoice_id).where(
            RefundClaim.status.in_(ACTIVE))).scalars():
        claim.status, claim.decided_by, claim.updated_at = "credited", by, moment
        session.add(claim)
