"""Daily settlement at the Asia/Seoul cut-off: one payout per merchant per business day.

`run_settlement(gateway, day)` pays each KRW merchant what was credited to its payable
up to the end of `day` in Asia/Seoul (or up to now, for a day not yet over), less
everything already debited (earlier payouts, reversals) whenever it happened:

    due = −( Σ payable postings of entries before the cut-off
             + Σ payable debits after it )

so a run for an earlier day after a later one can never pay the same won twice. A
merchant is paid when `due ≥ BUSANPAY_PAYOUT_MIN_KRW`.

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
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

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


def payable_due(session, cutoff: datetime, store_ids: list[str] | None = None) -> dict[str, int]:
    """Per store: won due at the cut-off (credits before it, all debits ever)."""
    counted = case((JournalEntry.created_at < cutoff, Posting.amount),
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


def create_payouts(gateway, day: date, cutoff: datetime, *, chunk: int = 1000) -> list[str]:
    """Step 1: the day's payout rows and their ledger entries; returns new payout ids."""
    cfg = settlement_config(gateway)
    available = rails_for(gateway).keys()
    with gateway.db.read() as session:
        candidates = sorted(s for s, due in payable_due(session, cutoff).items()
                            if due >= cfg.min_payout_krw)
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
                if amount < cfg.min_payout_krw:
                    continue
                rail, destination = choose_rail(cfg.payout_rail, accounts.get(store_id), available)
                rows.append({"id": random_id(24), "store_id": store_id, "day": day,
                             "amount_krw": amount, "rail": rail, "destination": destination or "",
                             "status": "created", "attempts": 0, "needs_attention": False,
                             "created_at": now, "updated_at": now})
            if not rows:
                continue
            new = dict(_insert_payouts(session, rows))
            count_after_commit(session, PAYOUTS, len(new), status="created")
            amounts = {r["id"]: r["amount_krw"] for r in rows}
            post_many(session, [payout_initiated_entry(pid, store_id, amounts[pid], day, moment=now)
                                for pid, store_id in new.items()])
            created.extend(new)
    return created


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
    new_ids = create_payouts(gateway, day, cutoff)
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
            "waiting": int(waiting)}


def auto_settle(gateway) -> dict | None:
    """The worker's daily job: settle the day that just ended (idempotent, so calling it
    every few minutes only pays what became due since)."""
    cfg = settlement_config(gateway)
    if not cfg.auto_settlement:
        return None
    return run_settlement(gateway, default_day(gateway.clock()))
