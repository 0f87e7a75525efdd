"""Reconciliation (`flask ledger check`) and the merchant's daily statement (CSV).

The check verifies that
1. every journal entry balances per currency (and has postings);
2. each invoice's ledger position equals what its facts say (`rules.invoice_position`),
   and a credited invoice's recorded chain payments add up to the sats it was credited
   for (`paid_sats`);
3. each payout's entries match its status, and `payouts_in_transit` equals the payouts
   still on their way;
4. each finished conversion is posted.
An invoice changed in the last few minutes and not yet posted is *pending* (the posting
job runs every few seconds), reported but not a failure.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from functools import lru_cache

from sqlalchemy import case, func, or_, select

from settlement.ledger import account_kind, trial_balance, unbalanced_entries
from settlement.models import (Conversion, FeeRule, JournalEntry, LedgerAccount, LedgerInvoice,
                               Payout, Posting)
from settlement.rules import (CITY_FEES, IN_TRANSIT, INVOICE_KINDS, InvoiceFacts, invoice_position,
                              payable)

PENDING_GRACE = timedelta(minutes=5)
EXPECTED_KINDS = {  # the entry kinds a payout in each status may have
    "created": [{"payout_initiated"}], "sent": [{"payout_initiated"}],
    "paid": [{"payout_initiated", "payout_paid"}],
    "failed": [{"payout_initiated", "payout_returned"},
               {"payout_initiated", "payout_paid", "payout_returned"}],
    "returned": [{"payout_initiated", "payout_returned"},
                 {"payout_initiated", "payout_paid", "payout_returned"}],
}


def check_ledger(gateway, *, limit: int = 200) -> dict:
    from merchants.models import Store
    from payments.models import Invoice, Payment

    problems: list[dict] = []
    pending: list[dict] = []
    now = gateway.clock()
    with gateway.db.read() as session:
        tb = trial_balance(session)
        totals: dict[str, int] = defaultdict(int)
        for row in tb:
            totals[row["currency"]] += row["balance"]
        for bad in unbalanced_entries(session, limit):
            problems.append({"problem": "unbalanced entry", **bad})
        for currency, total in totals.items():
            if total:
                problems.append({"problem": "trial balance not zero", "currency": currency,
                                 "sum": str(total)})

        # -- invoices --------------------------------------------------------------
        posted = _posted_vectors(session)
        fee_rules = {r.category: r.fee_bps for r in session.execute(select(FeeRule)).scalars()}
        fixed_bps = dict(session.execute(select(LedgerInvoice.invoice_id, LedgerInvoice.fee_bps)).all())
        chain = dict(session.execute(select(Payment.invoice_id, func.sum(Payment.value_sats))
                                     .where(Payment.state == "seen")
                                     .group_by(Payment.invoice_id)).all())
        has_payments = set(session.execute(select(Payment.invoice_id).distinct()).scalars())
        rows = session.execute(
            select(Invoice.id, Invoice.store_id, Invoice.status, Invoice.additional_status,
                   Invoice.incident, Invoice.amount_krw, Invoice.due_sats, Invoice.paid_sats,
                   Invoice.rate, Invoice.updated_at, Store.settlement_mode, Store.category)
            .join(Store, Store.id == Invoice.store_id)
            .where(or_(Invoice.status == "Settled", Invoice.paid_sats > 0)))
        checked_invoices = 0
        seen_invoices = set()
        for r in rows:
            checked_invoices += 1
            seen_invoices.add(r.id)
            bps = fixed_bps.get(r.id, fee_rules.get(r.category, gateway.settings.fee_bps))
            facts = InvoiceFacts(r.id, r.store_id, r.settlement_mode, r.status, r.additional_status,
                                 r.incident, r.amount_krw, r.due_sats, r.paid_sats, r.rate, bps)
            want = _vector(invoice_position(facts), r.store_id)
            have = posted.get(r.id, _ZERO)
            if want != have:
                item = {"problem": "invoice position differs", "invoiceId": r.id,
                        "expected": _vector_json(want), "posted": _vector_json(have)}
                if r.updated_at and r.updated_at > now - PENDING_GRACE:
                    pending.append(item)
                else:
                    problems.append(item)
            if facts.credited and facts.settlement_mode != "btc" and r.id in has_payments \
                    and int(chain.get(r.id) or 0) != r.paid_sats:
                problems.append({"problem": "chain payments differ from credited sats",
                                 "invoiceId": r.id, "chainSats": str(int(chain.get(r.id) or 0)),
                                 "creditedSats": str(r.paid_sats)})
        for invoice_id in set(posted) - seen_invoices:
            if posted[invoice_id] != _ZERO:
                problems.append({"problem": "ledger position for an invoice with no money",
                                 "invoiceId": invoice_id, "posted": _vector_json(posted[invoice_id])})

        # -- payouts ---------------------------------------------------------------
        kinds: dict[str, dict[str, int]] = defaultdict(dict)
        for payout_id, kind, total in session.execute(
                select(JournalEntry.payout_id, JournalEntry.kind, func.sum(Posting.amount))
                .select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
                .where(JournalEntry.payout_id.is_not(None), Posting.amount > 0)
                .group_by(JournalEntry.payout_id, JournalEntry.kind)):
            kinds[payout_id][kind] = int(total)
        in_transit_expected = 0
        checked_payouts = 0
        for p in session.execute(select(Payout.id, Payout.status, Payout.amount_krw)):
            checked_payouts += 1
            have = kinds.pop(p.id, {})
            if set(have) not in EXPECTED_KINDS.get(p.status, []) or any(v != p.amount_krw for v in have.values()):
                problems.append({"problem": "payout entries differ from its status", "payoutId": p.id,
                                 "status": p.status, "amount": str(p.amount_krw),
                                 "entries": {k: str(v) for k, v in have.items()}})
            if p.status in ("created", "sent"):
                in_transit_expected += p.amount_krw
        for payout_id in kinds:
            problems.append({"problem": "entries for an unknown payout", "payoutId": payout_id})
        in_transit = -next((r["balance"] for r in tb if r["account"] == IN_TRANSIT), 0)
        if in_transit != in_transit_expected:
            problems.append({"problem": "payouts in transit differ", "ledger": str(in_transit),
                             "payouts": str(in_transit_expected)})

        # -- conversions -----------------------------------------------------------
        conv_posted = set(session.execute(select(JournalEntry.business_key).where(
            JournalEntry.kind == "conversion")).scalars())
        for c in session.execute(select(Conversion.id, Conversion.status)):
            if (c.status == "done") != (f"conversion:{c.id}" in conv_posted):
                problems.append({"problem": "conversion and ledger disagree", "conversionId": c.id,
                                 "status": c.status})
        entries = session.execute(select(func.count()).select_from(JournalEntry)).scalar_one()
    return {
        "ok": not problems,
        "totals": {c: str(v) for c, v in sorted(totals.items())},
        "checked": {"entries": int(entries), "invoices": checked_invoices,
                    "payouts": checked_payouts},
        "problems": problems[:limit], "problemCount": len(problems),
        "pending": pending[:limit], "pendingCount": len(pending),
        "trialBalance": [{"account": r["account"], "currency": r["currency"],
                          "balance": str(r["balance"])} for r in tb],
    }


# An invoice's position as a vector over the accounts an invoice can touch (its own store's
# payable/receivable; anything else is "other", which must stay zero), so the check can
# aggregate postings per invoice in SQL instead of per account in Python.
_SLOTS = (("treasury:btc", "BTC"), ("conversion:btc", "BTC"), ("refunds_owed:btc", "BTC"),
          ("conversion:krw", "KRW"), ("merchant_payable", "KRW"), ("city_fees:krw", "KRW"),
          ("fee_receivable", "KRW"), ("other", "any"))
_ZERO = (0,) * len(_SLOTS)


_SLOT_INDEX = {slot: i for i, slot in enumerate(_SLOTS)}


@lru_cache(maxsize=65_536)
def _kind(code: str) -> tuple[str, str | None]:
    return account_kind(code)


def _vector(position, store_id: str) -> tuple[int, ...]:
    out = [0] * len(_SLOTS)
    for (account, currency), amount in position.items():
        kind, store = _kind(account)
        slot = _SLOT_INDEX.get((kind, currency)) if store in (None, store_id) else None
        if slot is None:
            out[-1] += abs(amount)
        else:
            out[slot] += amount
    return tuple(out)


def _posted_vectors(session) -> dict[str, tuple[int, ...]]:
    """Per invoice, the sums its entries (of INVOICE_KINDS) posted, as `_vector`s."""
    ids = {code: i for i, code in session.execute(select(LedgerAccount.id, LedgerAccount.code))}
    own = LedgerAccount.store_id == JournalEntry.store_id
    columns = []
    known = []
    for name, _ in _SLOTS[:-1]:
        if name in ("merchant_payable", "fee_receivable"):
            cond = (LedgerAccount.kind == name) & own
        else:
            cond = Posting.account_id == ids.get(name, -1)
        known.append(cond)
        columns.append(func.sum(case((cond, Posting.amount), else_=0)))
    columns.append(func.sum(case((or_(*known), 0), else_=func.abs(Posting.amount))))
    rows = session.execute(
        select(JournalEntry.invoice_id, *columns).select_from(Posting)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.kind.in_(INVOICE_KINDS)).group_by(JournalEntry.invoice_id))
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in rows}


def _vector_json(vector) -> dict:
    return {f"{name} {cur}": str(v) for (name, cur), v in zip(_SLOTS, vector) if v}


STATEMENT_COLUMNS = ("time_kst", "entry", "kind", "invoice_id", "payout_id", "gross_krw",
                     "fee_krw", "net_krw", "balance_krw", "memo")


def statement_csv(gateway, store_id: str, day: date) -> str:
    """The merchant's payable for one Asia/Seoul day: opening balance, each entry (gross,
    city fee, net credit to the merchant; payouts negative), closing balance.
    Balances are what the city owes the merchant (positive)."""
    from settlement.daily import SEOUL, day_bounds

    start, end = day_bounds(day)
    account = payable(store_id)
    with gateway.db.read() as session:
        acct = session.execute(select(LedgerAccount).where(LedgerAccount.code == account)).scalar_one_or_none()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_COLUMNS)
        if acct is None:
            writer.writerow([f"{day.isoformat()} 00:00:00", "opening", "", "", "", "", "", "", "0", ""])
            writer.writerow([f"{day.isoformat()} 23:59:59", "closing", "", "", "", "", "", "", "0", ""])
            return out.getvalue()
        opening = -int(session.execute(
            select(func.coalesce(func.sum(Posting.amount), 0)).select_from(Posting)
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(Posting.account_id == acct.id, JournalEntry.created_at < start)).scalar_one())
        rows = session.execute(
            select(JournalEntry.id, JournalEntry.business_key, JournalEntry.kind,
                   JournalEntry.invoice_id, JournalEntry.payout_id, JournalEntry.created_at,
                   JournalEntry.memo, Posting.amount)
            .select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(Posting.account_id == acct.id, JournalEntry.created_at >= start,
                   JournalEntry.created_at < end)
            .order_by(JournalEntry.created_at, JournalEntry.id)).all()
        fee_acct = session.execute(select(LedgerAccount.id).where(LedgerAccount.code == CITY_FEES)).scalar()
        fees = {}
        if rows and fee_acct is not None:
            fees = dict(session.execute(
                select(Posting.entry_id, func.sum(Posting.amount))
                .where(Posting.account_id == fee_acct,
                       Posting.entry_id.in_([r.id for r in rows]))
                .group_by(Posting.entry_id)).all())
    writer.writerow([f"{day.isoformat()} 00:00:00", "opening", "", "", "", "", "", "", str(opening), ""])
    running = opening
    for r in rows:
        net = -int(r.amount)
        fee = -int(fees.get(r.id) or 0)
        running += net
        gross = net + fee if r.invoice_id else net
        writer.writerow([r.created_at.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M:%S"),
                         r.business_key, r.kind, r.invoice_id or "", r.payout_id or "",
                         str(gross), str(fee), str(net), str(running), r.memo])
    writer.writerow([f"{day.isoformat()} 23:59:59", "closing", "", "", "", "", "", "", str(running), ""])
    return out.getvalue()
