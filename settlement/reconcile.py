"""Reconciliation (`flask ledger check`) and the merchant's daily statement (CSV).

The check verifies that
1. every journal entry balances per currency (and has postings);
2. each invoice's ledger position equals what its facts say (`rules.invoice_position`:
   its on-chain sats in `treasury:btc`, its Lightning sats in `treasury_ln:btc`), and a
   credited invoice's recorded payments, on-chain and Lightning, add up to the sats it
   was credited for (`paid_sats`);
3. each payout's entries match its status, and `payouts_in_transit` equals the payouts
   still on their way;
4. each finished conversion is posted;
5. the money boundary (`settlement.rules`): for every invoice, the won credited to its
   merchant by all entries naming it is backed by sats received (won recognised in the
   conversion account at most the floor value of the sats there, those sats at most the
   counted ones), by a city loss entry of a 0-conf incident, or by an off-chain credit two
   people approved; no merchant credit without an invoice; no store paid out more than its
   backed credits (plus credits a deep-reorg incident took back after they were paid).
   All of it is aggregated per invoice and per store in SQL, in the same pass over the
   postings as (2).
An invoice changed in the last few minutes and not yet posted is *pending* (the posting
job runs every few seconds), reported but not a failure.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from sqlalchemy import case, func, or_, select

from settlement.ledger import account_kind, trial_balance, unbalanced_entries
from settlement.models import (Conversion, FeeRule, JournalEntry, LedgerAccount, LedgerInvoice,
                               Payout, Posting)
from settlement.rules import (CITY_FEES, CITY_LOSS, CITY_OFFCHAIN, CONVERSION_BTC, CONVERSION_KRW,
                              IN_TRANSIT, INVOICE_KINDS, InvoiceFacts, invoice_position, payable,
                              received_krw)

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
    from payments.models import METHOD_LIGHTNING, Invoice, Payment

    problems: list[dict] = []
    pending: list[dict] = []
    incidents: list[dict] = []  # flagged invoices a person must decide; not failures
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

        # -- invoices ------------------------------------------------------------------
        posted = _posted_vectors(session)
        other, clawbacks = _other_money(session)
        fee_rules = {r.category: r.fee_bps for r in session.execute(select(FeeRule)).scalars()}
        fixed_bps = dict(session.execute(select(LedgerInvoice.invoice_id, LedgerInvoice.fee_bps)).all())
        chain = dict(session.execute(select(Payment.invoice_id, func.sum(Payment.value_sats))
                                     .where(Payment.state == "seen")
                                     .group_by(Payment.invoice_id)).all())
        lightning = dict(session.execute(select(Payment.invoice_id, func.sum(Payment.value_sats))
                                         .where(Payment.state == "seen",
                                                Payment.method == METHOD_LIGHTNING)
                                         .group_by(Payment.invoice_id)).all())
        has_payments = set(session.execute(select(Payment.invoice_id).distinct()).scalars())
        approved = _approved_offchain(session)
        columns = (Invoice.id, Invoice.store_id, Invoice.status, Invoice.additional_status,
                   Invoice.incident, Invoice.amount_krw, Invoice.due_sats, Invoice.paid_sats,
                   Invoice.rate, Invoice.updated_at, Invoice.chain_status, Invoice.settled_sats,
                   Store.settlement_mode, Store.category)
        rows = session.execute(select(*columns).join(Store, Store.id == Invoice.store_id)
                               .where(or_(Invoice.status == "Settled", Invoice.paid_sats > 0)))
        checked_invoices = 0
        seen_invoices = set()
        backed: dict[str, int] = defaultdict(int)  # per store: won credited and backed
        grace_start = now - PENDING_GRACE

        def check_invoice(r):
            seen_invoices.add(r.id)
            bps = fixed_bps.get(r.id, fee_rules.get(r.category, gateway.settings.fee_bps))
            facts = InvoiceFacts(r.id, r.store_id, r.settlement_mode, r.status, r.additional_status,
                                 r.incident, r.amount_krw, r.due_sats, r.paid_sats, r.rate, bps,
                                 chain_status=r.chain_status, settled_sats=r.settled_sats,
                                 paid_ln_sats=int(lightning.get(r.id) or 0))
            recent = bool(r.updated_at and r.updated_at > grace_start)
            want = _vector(invoice_position(facts), r.store_id)
            have = posted.get(r.id, _ZERO)
            if want != have:
                (pending if recent else problems).append({
                    "problem": "invoice position differs", "invoiceId": r.id,
                    "expected": _vector_json(want), "posted": _vector_json(have)})
            if facts.credited and facts.settlement_mode != "btc" and r.id in has_payments \
                    and int(chain.get(r.id) or 0) != r.paid_sats:
                problems.append({"problem": "chain payments differ from credited sats",
                                 "invoiceId": r.id, "chainSats": str(int(chain.get(r.id) or 0)),
                                 "creditedSats": str(r.paid_sats)})
            extra = other.get(r.id)
            if have is not _ZERO or extra is not None:
                m = _money(have, extra, clawbacks.get(r.id, 0))
                problem, where, amount = _backing_problem(facts, m, approved.get(r.id, 0))
                if problem:
                    found = {"invoiceId": r.id, **problem}
                    if where == "incidents":
                        incidents.append({**found, "incident": r.incident})
                    elif where == "pending" and recent:
                        pending.append(found)
                    else:
                        problems.append(found)
                backed[r.store_id] += amount

        for r in rows:
            checked_invoices += 1
            check_invoice(r)
        # invoices with entries but neither settled nor paid (e.g. an off-chain credit)
        unseen = sorted((set(posted) | set(other)) - seen_invoices)
        for part in (unseen[i:i + 1000] for i in range(0, len(unseen), 1000)):
            for r in session.execute(select(*columns).join(Store, Store.id == Invoice.store_id)
                                     .where(Invoice.id.in_(part))):
                checked_invoices += 1
                check_invoice(r)
        for invoice_id in (set(posted) | set(other)) - seen_invoices:  # no such invoice
            m = _money(posted.get(invoice_id, _ZERO), other.get(invoice_id), 0)
            if posted.get(invoice_id, _ZERO) != _ZERO or m.credit > 0:
                problems.append({"problem": "ledger entries for an invoice that does not exist",
                                 "invoiceId": invoice_id, "credited": str(m.credit)})
        problems.extend(_unbacked_store_money(session, backed))

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
        "incidents": incidents[:limit], "incidentCount": len(incidents),
        "trialBalance": [{"account": r["account"], "currency": r["currency"],
                          "balance": str(r["balance"])} for r in tb],
    }


# An invoice's position as a vector over the accounts an invoice can touch (its own store's
# payable/receivable; anything else is "other", which must stay zero), so the check can
# aggregate postings per invoice in SQL instead of per account in Python.
_SLOTS = (("treasury:btc", "BTC"), ("treasury_ln:btc", "BTC"), ("conversion:btc", "BTC"), ("refunds_owed:btc", "BTC"),
          ("conversion:krw", "KRW"), ("merchant_payable", "KRW"), ("city_fees:krw", "KRW"),
          ("fee_receivable", "KRW"), ("city_loss:krw", "KRW"), ("other", "any"))
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


@dataclass
class _Money:
    """What the entries naming one invoice did to money: the merchant's credit (won owed to
    it, net), the sats and won recognised in the conversion account, the city's loss and
    off-chain credits, and credits a deep-reorg incident took back."""
    credit: int = 0
    sats: int = 0
    krw: int = 0
    city_loss: int = 0
    offchain: int = 0
    clawback: int = 0


_PAYABLE, _CONV_BTC, _CONV_KRW, _CITY_LOSS = (
    _SLOT_INDEX[("merchant_payable", "KRW")], _SLOT_INDEX[("conversion:btc", "BTC")],
    _SLOT_INDEX[("conversion:krw", "KRW")], _SLOT_INDEX[("city_loss:krw", "KRW")])


def _money(vector: tuple[int, ...], extra: _Money | None, clawback: int) -> _Money:
    """An invoice's money: its position's part (from its vector) plus its other entries'."""
    extra = extra or _Money()
    return _Money(credit=-vector[_PAYABLE] + extra.credit, sats=-vector[_CONV_BTC] + extra.sats,
                  krw=vector[_CONV_KRW] + extra.krw,
                  city_loss=vector[_CITY_LOSS] + extra.city_loss, offchain=extra.offchain,
                  clawback=clawback)


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


def _other_money(session) -> tuple[dict[str, _Money], dict[str, int]]:
    """Per invoice: what its entries outside its position (a person's credit of owed sats,
    an off-chain credit, refunds, anything written by hand) did to money; and the credit
    deep-reorg incidents took back. Both read only the few entries of those kinds (by
    their journal rows), not the postings of every invoice."""
    ids = {code: i for i, code in session.execute(select(LedgerAccount.id, LedgerAccount.code))}
    on_payable = LedgerAccount.kind == "merchant_payable"

    def on(code):
        return Posting.account_id == ids.get(code, -1)

    rows = session.execute(
        select(JournalEntry.invoice_id,
               func.sum(case((on_payable, -Posting.amount), else_=0)),
               func.sum(case((on(CONVERSION_BTC), -Posting.amount), else_=0)),
               func.sum(case((on(CONVERSION_KRW), Posting.amount), else_=0)),
               func.sum(case((on(CITY_LOSS), Posting.amount), else_=0)),
               func.sum(case((on(CITY_OFFCHAIN), Posting.amount), else_=0)))
        .select_from(JournalEntry).join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.invoice_id.is_not(None), JournalEntry.kind.not_in(INVOICE_KINDS))
        .group_by(JournalEntry.invoice_id))
    other = {r[0]: _Money(*(int(v or 0) for v in r[1:])) for r in rows}
    clawback = {i: int(t) for i, t in session.execute(
        select(JournalEntry.invoice_id, func.sum(Posting.amount))
        .select_from(JournalEntry).join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.kind == "invoice_reversal", JournalEntry.flags.like("%incident%"),
               on_payable, Posting.amount > 0)
        .group_by(JournalEntry.invoice_id))}
    return other, clawback


def _approved_offchain(session) -> dict[str, int]:
    """Per invoice: the won of off-chain credits two people approved."""
    from settlement.models import OffchainCredit

    return {i: int(t) for i, t in session.execute(
        select(OffchainCredit.invoice_id, func.sum(OffchainCredit.amount_krw))
        .where(OffchainCredit.status == "approved", OffchainCredit.invoice_id.is_not(None))
        .group_by(OffchainCredit.invoice_id))}


def _backing_problem(f: InvoiceFacts, m: _Money, approved_krw: int
                     ) -> tuple[dict | None, str, int]:
    """The money boundary for one invoice (see `settlement.rules`): the won credited to its
    merchant is backed by sats received (the won recognised for them is at most their
    value at the locked rate, and those sats at most the counted ones), by a city loss
    entry of a 0-conf incident, or by an approved off-chain credit.

    Returns the problem (or None); where it belongs: "problems", "pending" (the posting
    job may not have caught up with the invoice's newest facts yet) or "incidents" (sats a
    person credited from what was owed to the payer, lost since in a flagged reorg: the
    incident a person must decide, like the reversed credit itself); and the won of the
    credit that is backed.
    """
    backing = max(m.krw, 0) + max(m.city_loss, 0) + max(m.offchain, 0)
    value = received_krw(m.sats, f.rate)
    if m.credit > backing:
        return {"problem": "merchant credit exceeds what was received",
                "credited": str(m.credit), "backedBy": str(backing)}, "problems", \
            backing + m.clawback
    if m.krw > value:
        return {"problem": "won recognised beyond the value of the sats received",
                "recognisedKrw": str(m.krw), "valueKrw": str(value)}, "problems", 0
    if m.offchain > approved_krw:
        return {"problem": "off-chain credit without an approved treasury decision",
                "offchainKrw": str(m.offchain), "approvedKrw": str(approved_krw)}, "problems", 0
    # these two follow the invoice's facts, which the posting job may not have caught up with
    if m.sats > max(f.paid_sats, 0):
        return {"problem": "merchant credited for sats that were not received",
                "recognisedSats": str(m.sats), "countedSats": str(f.paid_sats)}, \
            "incidents" if f.incident else "pending", m.credit + m.clawback
    if m.city_loss and not f.city_loss:
        return {"problem": "a city loss entry without a 0-conf incident",
                "cityLossKrw": str(m.city_loss)}, "pending", m.credit + m.clawback
    return None, "", m.credit + m.clawback


def _unbacked_store_money(session, backed: dict[str, int]) -> list[dict]:
    """Won credited to a merchant by no invoice, and payouts beyond the merchant's backed
    credits (plus credits a deep-reorg incident took back after they were paid out)."""
    payout_kinds = ("payout_initiated", "payout_paid", "payout_returned")
    problems = []
    rows = session.execute(
        select(LedgerAccount.store_id,
               func.sum(case((JournalEntry.kind.in_(payout_kinds), Posting.amount), else_=0)),
               func.sum(case((JournalEntry.kind.in_(payout_kinds), 0), else_=-Posting.amount)))
        .select_from(JournalEntry).join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.kind == "merchant_payable", JournalEntry.invoice_id.is_(None))
        .group_by(LedgerAccount.store_id))
    for store_id, paid_out, loose in rows:
        paid_out, loose = int(paid_out or 0), int(loose or 0)
        if loose > 0:
            problems.append({"problem": "merchant credit with no invoice behind it",
                             "storeId": store_id, "credited": str(loose)})
        # a debit with no invoice (a refund the merchant funds for a shop's pull payment)
        # spends the merchant's backed won just as a payout does
        paid_out += max(-loose, 0)
        if paid_out > backed.get(store_id, 0):
            problems.append({"problem": "payouts exceed the merchant's backed credits",
                             "storeId": store_id, "paidOut": str(paid_out),
                             "backed": str(backed.get(store_id, 0))})
    return problems


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
