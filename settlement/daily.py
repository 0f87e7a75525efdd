"""Daily settlement at the Asia/Seoul cut-off: one payout per merchant per business day.

`run_settlement(gateway, day)` pays each KRW merchant what was credited to its payable
up to the end of `day` in Asia/Seoul (or up to now, for a day not yet over), less
everything already debited (earlier payouts, reversals) whenever it happened:

    due = −( Σ payable postings of entries before the cut-off
             + Σ payable debits after it )

so a run for an earlier day after a later one can never pay the same won twice. A
merchant is paid when `due ≥ BUSANPAY_PAYOUT_MIN_KRW`; a closed store whenever `due > 0`
(no minimum: won that settles after its final payout still reaches it). A store without
an approved payout account the rails can pay is skipped: its balance stays payable,
the run's summary lists it under "skipped", and the city's payout-accounts page flags it
until a treasury operator approves an account; the next run then pays the whole balance.

`create_final_payout` is the payout the city's close makes (under the same lock, with
the same ledger entry and rail idempotency): the store's whole payable balance.

Steps, each crash-safe:
1. per chunk of merchants, one transaction (under a named lock): recompute `due`,
   insert the payout rows (UNIQUE store+day, ON CONFLICT DO NOTHING) and post
   payable → payouts in transit for the rows that were new;
2. send every `created` payout (this run's and any left by a crash) through its rail,
   with the payout id as the idempotency key;
3. record each result (sent, or still created with the error).
Running twice for the same day creates nothing new.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from merchants.models import Store
from merchants.service import random_id
from settlement.config import settlement_config
from settlement.ledger import lock, post_many
from settlement.models import JournalEntry, LedgerAccount, MerchantPayoutAccount, Payout, Posting
from operations.metrics import PAYOUTS, count_after_commit
from settlement.payouts import (PayoutOrder, choose_rail, payout_json, rails_for, record_send,
                                record_sent_many)
from settlement.rules import payout_initiated_entry

log = logging.getLogger(__name__)
SEOUL = ZoneInfo("Asia/Seoul")
LOCK = "busanpay:settlement"
NO_ACCOUNT = "no approved payout account"


def business_day(moment: datetime) -> date:
    return moment.astimezone(SEOUL).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of an Asia/Seoul day, in UTC."""
    start = datetime.combine(day, time(0), tzinfo=SEOUL)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=SEOUL)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def default_day(now: datetime) -> date:
    """The last business day that is over (yesterday in Seoul)."""
    return business_day(now) - timedelta(days=1)


def payable_due(session, cutoff: datetime | None, store_ids: list[str] | None = None) -> dict[str, int]:
    """Per store: won due at the cut-off (credits before it, all debits ever); with no
    cut-off, the whole payable balance."""
    counted = Posting.amount if cutoff is None else case(
        (JournalEntry.created_at < cutoff, Posting.amount),
        (Posting.amount > 0, Posting.amount), else_=0)
    stmt = (select(LedgerAccount.store_id, func.sum(counted))
            .select_from(Posting)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .join(JournalEntry, JournalEntry.id == Posting.entry_id)
            .where(LedgerAccount.kind == "merchant_payable"))
    if store_ids is not None:
        stmt = stmt.where(LedgerAccount.store_id.in_(store_ids))
    rows = session.execute(stmt.group_by(LedgerAccount.store_id))
    return {store: -int(total) for store, total in rows if total is not None and -int(total) > 0}


def _blocked_stores(session, max_attempts: int, day: date) -> set[str]:
    """Stores whose last `max_attempts` payouts (within 90 days) all failed: a person
    must look first (`flask settlement unblock`, or fix the account)."""
    rows = session.execute(select(Payout.store_id, Payout.status)
                           .where(Payout.status.in_(("failed", "returned", "paid", "sent")),
                                  Payout.day > day - timedelta(days=90),
                                  Payout.needs_attention.is_(True) | Payout.status.in_(("paid", "sent")))
                           .order_by(Payout.store_id, Payout.day.desc()))
    streak: dict[str, int] = {}
    broken: set[str] = set()
    for store_id, status in rows:
        if store_id in broken:
            continue
        if status in ("failed", "returned"):
            streak[store_id] = streak.get(store_id, 0) + 1
        else:
            broken.add(store_id)
    return {s for s, n in streak.items() if n >= max_attempts}


def _insert_payouts(session, rows: list[dict]) -> list[tuple[str, str]]:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(Payout.__table__).values(rows).on_conflict_do_nothing(
        index_elements=["store_id", "day"]).returning(Payout.__table__.c.id,
                                                      Payout.__table__.c.store_id)
    return [(r.id, r.store_id) for r in session.execute(stmt)]


def closed_stores(session, store_ids) -> set[str]:
    return set(session.execute(select(Store.id).where(Store.id.in_(list(store_ids)),
                                                      Store.standing == "closed")).scalars())


def create_payouts(gateway, day: date, cutoff: datetime, *, chunk: int = 1000,
                   skipped: dict[str, int] | None = None) -> list[str]:
    """Step 1: the day's payout rows and their ledger entries; returns new payout ids.
    Stores owed won but without an approved account go into `skipped` (store → won)."""
    cfg = settlement_config(gateway)
    available = rails_for(gateway).keys()
    skipped = {} if skipped is None else skipped
    with gateway.db.read() as session:
        owed = payable_due(session, cutoff)
        closed = closed_stores(session, owed)
        candidates = sorted(s for s, due in owed.items() if due >= cfg.min_payout_krw or s in closed)
        already = set(session.execute(select(Payout.store_id).where(Payout.day == day)).scalars())
        blocked = _blocked_stores(session, cfg.max_payout_attempts, day)
    candidates = [s for s in candidates if s not in already and s not in blocked]
    created: list[str] = []
    for start in range(0, len(candidates), chunk):
        stores = candidates[start:start + chunk]
        with gateway.db.write() as session:
            lock(session, LOCK)
            now = gateway.clock()
            due = payable_due(session, cutoff, stores)  # again, under the lock
            accounts = {a.store_id: a for a in session.execute(
                select(MerchantPayoutAccount).where(MerchantPayoutAccount.store_id.in_(stores))
            ).scalars()}
            rows = []
            for store_id in stores:
                amount = due.get(store_id, 0)
                if amount <= 0 or (amount < cfg.min_payout_krw and store_id not in closed):
                    continue
                rail, destination = choose_rail(cfg.payout_rail, accounts.get(store_id), available)
                if not destination:  # never a transfer with empty bank details
                    skipped[store_id] = amount
                    continue
                rows.append(_payout_row(store_id, day, amount, rail, destination, now))
            if not rows:
                continue
            new = dict(_insert_payouts(session, rows))
            count_after_commit(session, PAYOUTS, len(new), status="created")
            amounts = {r["id"]: r["amount_krw"] for r in rows}
            post_many(session, [payout_initiated_entry(pid, store_id, amounts[pid], day, moment=now)
                                for pid, store_id in new.items()])
            created.extend(new)
    if skipped:
        log.warning("settlement %s: %d stores skipped (%s): %s", day.isoformat(), len(skipped),
                    NO_ACCOUNT, " ".join(sorted(skipped)))
    return created


def _payout_row(store_id: str, day: date, amount: int, rail: str, destination: str,
                now: datetime, kind: str = "daily") -> dict:
    return {"id": random_id(24), "store_id": store_id, "day": day, "amount_krw": amount,
            "rail": rail, "destination": destination, "status": "created", "attempts": 0,
            "needs_attention": False, "kind": kind, "created_at": now, "updated_at": now}


@dataclass(frozen=True)
class FinalPayout:
    """What a close did about the store's balance: `outcome` is created (payout_id,
    amount), nothing-due, no-account (amount stays payable and is flagged) or
    day-taken (the store already has a payout for this business day: the next daily
    run pays the rest, with no minimum)."""

    outcome: str
    amount: int = 0
    payout_id: str | None = None


def create_final_payout(session, store_id: str, now: datetime, *, default_rail: str,
                        available) -> FinalPayout:
    """In the caller's transaction (the close): the store's whole payable balance becomes
    one payout, under the settlement lock, so a concurrent daily run or merchant-funded
    refund sees the won already gone. Sent afterwards by `send_created`."""
    lock(session, LOCK)
    amount = payable_due(session, None, [store_id]).get(store_id, 0)
    if amount <= 0:
        return FinalPayout("nothing-due")
    account = session.get(MerchantPayoutAccount, store_id)
    rail, destination = choose_rail(default_rail, account, available)
    if not destination:
        log.warning("final payout of %s: %s; ₩%d stays payable", store_id, NO_ACCOUNT, amount)
        return FinalPayout("no-account", amount)
    day = business_day(now)
    row = _payout_row(store_id, day, amount, rail, destination, now, kind="final")
    if not _insert_payouts(session, [row]):
        return FinalPayout("day-taken", amount)
    count_after_commit(session, PAYOUTS, status="created")
    post_many(session, [payout_initiated_entry(row["id"], store_id, amount, day, moment=now)])
    return FinalPayout("created", amount, row["id"])


@dataclass(frozen=True)
class Closing:
    """What a closed store is told: its final payout (if one was made), the won still
    payable, and whether an approved account can receive it."""

    payout: Payout | None
    owed: int
    has_account: bool


def closing_of(session, store_id: str) -> Closing:
    payout = session.execute(select(Payout).where(Payout.store_id == store_id,
                                                  Payout.kind == "final")).scalars().first()
    account = session.get(MerchantPayoutAccount, store_id)
    return Closing(payout, payable_due(session, None, [store_id]).get(store_id, 0),
                   bool(account and (account.bank_account or account.stripe_account_id)))


def unpaid_without_account(session) -> list[tuple[Store, int]]:
    """KRW stores owed won that no run can pay: no approved account with a destination
    (what the treasury must fix), by name."""
    accounts = select(MerchantPayoutAccount.store_id).where(
        (MerchantPayoutAccount.bank_account != "") | MerchantPayoutAccount.stripe_account_id.is_not(None))
    ids = list(session.execute(select(Store.id).where(Store.settlement_mode == "krw",
                                                      Store.id.not_in(accounts))).scalars())
    owed = payable_due(session, None, ids) if ids else {}
    stores = session.execute(select(Store).where(Store.id.in_(list(owed)))).scalars() if owed else []
    return sorted(((s, owed[s.id]) for s in stores), key=lambda pair: pair[0].name)


def send_created(gateway, *, only: set[str] | None = None) -> dict[str, Payout]:
    """Steps 2–3: send every payout still `created` through its rail; returns them."""
    cfg = settlement_config(gateway)
    rails = rails_for(gateway)
    with gateway.db.read() as session:
        stmt = select(Payout).where(Payout.status == "created").order_by(Payout.day, Payout.store_id)
        payouts = list(session.execute(stmt).scalars())
    if only is not None:
        payouts = [p for p in payouts if p.id in only]
    results: dict[str, Payout] = {}
    by_rail: dict[str, list[Payout]] = {}
    for payout in payouts:
        by_rail.setdefault(payout.rail, []).append(payout)
    for rail_name, group in by_rail.items():
        rail = rails.get(rail_name)
        if rail is None:
            log.warning("%d payouts wait for the %s rail, which is not configured", len(group),
                        rail_name)
            continue
        orders = [PayoutOrder(p.id, p.store_id, p.day, p.amount_krw, p.destination, p.rail,
                              p.attempts) for p in group]
        if rail_name == "bankfile":  # one file for the batch, one bulk update
            sent = rail.send_many(orders)
            with gateway.db.write() as session:
                record_sent_many(session, sent, gateway.clock())
            for payout in group:
                results[payout.id] = payout
            continue
        for order in orders:  # one at a time: each result is recorded before the next send
            result = rail.send(order)
            with gateway.db.write() as session:
                payout = record_send(session, result, gateway.clock(), cfg.max_payout_attempts)
                if payout is not None:
                    results[payout.id] = payout
    return results


def run_settlement(gateway, day: date | None = None, *, post_first: bool = True) -> dict:
    """Settle `day` (default: the last business day that is over); see the module doc.
    Pending outbox events are posted first so the day's credits are in the ledger."""
    if post_first:
        from settlement.posting_job import run_once

        run_once(gateway)
    now = gateway.clock()
    day = day or default_day(now)
    _, end = day_bounds(day)
    cutoff = min(end, now)
    skipped: dict[str, int] = {}
    new_ids = create_payouts(gateway, day, cutoff, skipped=skipped)
    sent = send_created(gateway)
    with gateway.db.read() as session:
        fresh = {p.id: p for p in session.execute(
            select(Payout).where(Payout.id.in_(list(new_ids) + list(sent)))).scalars()} \
            if (new_ids or sent) else {}
        waiting = session.execute(select(func.count()).select_from(Payout).where(
            Payout.status == "created")).scalar_one()
    created = [payout_json(fresh[i]) for i in sorted(new_ids, key=lambda i: fresh[i].store_id)]
    retried = [payout_json(p) for i, p in sorted(fresh.items()) if i not in set(new_ids)]
    total = sum(fresh[i].amount_krw for i in new_ids)
    return {"date": day.isoformat(), "cutoff": cutoff.isoformat().replace("+00:00", "Z"),
            "created": created, "retried": retried,
            "total": {"count": len(created), "amount": str(total), "currency": "KRW"},
            "skipped": [{"storeId": store, "amount": str(amount), "currency": "KRW",
                         "reason": NO_ACCOUNT} for store, amount in sorted(skipped.items())],
            "waiting": int(waiting)}


def auto_settle(gateway) -> dict | None:
    """The worker's daily job: settle the day that just ended (idempotent, so calling it
    every few minutes only pays what became due since)."""
    cfg = settlement_config(gateway)
    if not cfg.auto_settlement:
        return None
    return run_settlement(gateway, default_day(gateway.clock()))
