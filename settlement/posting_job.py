"""The posting job: turns the invoice outbox into ledger entries.

Each outbox event (other than InvoiceCreated) makes the job *reconcile* its invoice:
compute the invoice's ledger position from its current facts (`rules.invoice_position`)
and post the difference from what is already posted, in one transaction that also marks
the events handled. Safe with several workers at once:

- the invoice's `ledger_invoice` row is locked (SELECT … FOR UPDATE on PostgreSQL; SQLite
  serialises writers) so one worker reconciles one invoice at a time;
- entry business keys are UNIQUE (`invoice:<id>:settled`, `invoice:<id>:adj:<n>`), so even
  without the lock an entry posts once;
- a worker that lost the race finds nothing left to post.

Changes to the money facts that emit no status event (a late payment on an expired
invoice, its partial payment double-spent, the chain status of an invoice a merchant
marked) come as a `BusanPayMoneyFacts` outbox event (never sent to webhooks), incidents
as `BusanPayInvoiceIncident`; `sweep` re-reads recent invoices as a second line.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from database import insert_ignore, utc_now
from settlement.ledger import Entry, post
from settlement.models import (FeeRule, JournalEntry, LedgerAccount, LedgerCursor, LedgerEventDone,
                               LedgerInvoice, Posting)
from settlement.rules import CITY_LOSS, INVOICE_KINDS, InvoiceFacts, invoice_entry

log = logging.getLogger(__name__)

CURSOR = "invoice_event"
#: A transaction is assumed never to stay open longer than this: the watermark only
#: passes events older than it, so an event committed late is never skipped.
COMMIT_LAG = timedelta(minutes=5)
SWEEP_WINDOW = timedelta(days=7)


class InvoiceMissing(LookupError):
    pass


def fee_bps_for(session, category: str, default_bps: int) -> int:
    rule = session.get(FeeRule, category)
    return rule.fee_bps if rule is not None else default_bps


def set_fee_rule(session, category: str, fee_bps: int, moment: datetime | None = None) -> None:
    from database import upsert

    if not 0 <= fee_bps <= 10_000:
        raise ValueError("fee_bps is from 0 to 10,000")
    upsert(session, FeeRule.__table__, {"category": category, "fee_bps": fee_bps,
                                        "updated_at": moment or utc_now()},
           key=["category"], update=["fee_bps", "updated_at"])


def _lock_invoice(session, invoice, default_bps: int) -> LedgerInvoice:
    """The invoice's ledger row, created with the fee rate of now, locked for this txn."""
    from merchants.models import Store

    store = session.get(Store, invoice.store_id)
    insert_ignore(session, LedgerInvoice.__table__, {
        "invoice_id": invoice.id, "store_id": invoice.store_id,
        "fee_bps": fee_bps_for(session, store.category, default_bps), "entries": 0,
        "updated_at": utc_now()}, conflict=["invoice_id"])
    stmt = select(LedgerInvoice).where(LedgerInvoice.invoice_id == invoice.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one()


def lightning_sats(session, invoice_id: str) -> int:
    """Sats of the invoice's counting Lightning payments (they sit in the node)."""
    from payments.models import METHOD_LIGHTNING, Payment

    return int(session.execute(select(func.coalesce(func.sum(Payment.value_sats), 0)).where(
        Payment.invoice_id == invoice_id, Payment.method == METHOD_LIGHTNING,
        Payment.state == "seen")).scalar_one())


def facts_for(session, invoice, fee_bps: int) -> InvoiceFacts:
    from merchants.models import Store

    store = session.get(Store, invoice.store_id)
    return InvoiceFacts(
        invoice_id=invoice.id, store_id=invoice.store_id, settlement_mode=store.settlement_mode,
        status=invoice.status, additional_status=invoice.additional_status,
        incident=invoice.incident, amount_krw=invoice.amount_krw, due_sats=invoice.due_sats,
        paid_sats=invoice.paid_sats, rate=invoice.rate, fee_bps=fee_bps,
        chain_status=invoice.chain_status, settled_sats=invoice.settled_sats,
        paid_ln_sats=lightning_sats(session, invoice.id))


def posted_position(session, invoice_id: str) -> tuple[dict[tuple[str, str], int], int]:
    """What the invoice's entries (of INVOICE_KINDS) contributed, and how many there are."""
    rows = session.execute(
        select(LedgerAccount.code, Posting.currency, func.sum(Posting.amount))
        .select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.invoice_id == invoice_id, JournalEntry.kind.in_(INVOICE_KINDS))
        .group_by(LedgerAccount.code, Posting.currency))
    position = {(code, cur): int(total) for code, cur, total in rows if total}
    count = session.execute(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.invoice_id == invoice_id, JournalEntry.kind.in_(INVOICE_KINDS))).scalar_one()
    return position, int(count)


def reconcile_invoice(session, invoice_id: str, *, default_bps: int,
                      moment: datetime | None = None) -> Entry | None:
    """Post what the invoice's facts add to the ledger (in the caller's transaction)."""
    from payments.models import Invoice

    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    if invoice is None:
        raise InvoiceMissing(invoice_id)
    row = _lock_invoice(session, invoice, default_bps)
    session.refresh(invoice)  # read the facts after taking the lock
    facts = facts_for(session, invoice, row.fee_bps)
    posted, count = posted_position(session, invoice_id)
    entry = invoice_entry(facts, posted, seq=count, moment=moment)
    if entry is None:
        return None
    if not post(session, entry):
        return None  # another worker posted this very step (only possible without the lock)
    loss = sum(line.amount for line in entry.lines if line.account == CITY_LOSS)
    if loss:  # the city carries a lost 0-conf payment: a human must see it
        from accounts.service import Actor, audit

        audit(session, Actor(None, "system"), "ledger.city_loss", target=invoice_id,
              store_id=invoice.store_id, cityLossKrw=str(loss), entry=entry.business_key,
              settledSats=str(invoice.settled_sats), paidSats=str(invoice.paid_sats))
    row.entries = count + 1
    row.updated_at = utc_now()
    session.add(row)
    return entry


def _watermark(session) -> int:
    row = session.get(LedgerCursor, CURSOR)
    return row.value if row else 0


def pending_events(session, limit: int) -> list[tuple[int, str, datetime]]:
    from payments.models import InvoiceEvent as E

    wm = _watermark(session)
    done = select(LedgerEventDone.event_id).where(LedgerEventDone.event_id == E.id).exists()
    rows = session.execute(
        select(E.id, E.invoice_id, E.created_at)
        .where(E.id > wm, E.event_type != "InvoiceCreated", ~done)
        .order_by(E.id).limit(limit))
    return [(int(i), inv, at) for i, inv, at in rows]


def advance_watermark(gateway) -> int:
    """Move the low watermark past events that are handled and old enough."""
    from payments.models import InvoiceEvent as E

    db = gateway.db
    with db.write() as session:
        wm = _watermark(session)
        cap = session.execute(select(func.max(E.id)).where(
            E.id > wm, E.created_at < gateway.clock() - COMMIT_LAG)).scalar_one()
        if cap is None:
            return wm
        done = select(LedgerEventDone.event_id).where(LedgerEventDone.event_id == E.id).exists()
        first_pending = session.execute(select(func.min(E.id)).where(
            E.id > wm, E.id <= cap, E.event_type != "InvoiceCreated", ~done)).scalar_one()
        new = cap if first_pending is None else first_pending - 1
        if new > wm:
            from database import upsert

            upsert(session, LedgerCursor.__table__, {"name": CURSOR, "value": new,
                                                     "updated_at": utc_now()},
                   key=["name"], update=["value", "updated_at"])
            # handled rows below the watermark are no longer needed for the anti-join
            session.execute(LedgerEventDone.__table__.delete().where(
                LedgerEventDone.event_id <= new))
        return max(new, wm)


def post_pending(gateway, *, limit: int = 500) -> dict:
    """One pass over unhandled outbox events; returns counts."""
    default_bps = gateway.settings.fee_bps
    with gateway.db.read() as session:
        events = pending_events(session, limit)
    by_invoice: OrderedDict[str, list[tuple[int, datetime]]] = OrderedDict()
    for event_id, invoice_id, at in events:
        by_invoice.setdefault(invoice_id, []).append((event_id, at))
    posted = failed = 0
    for invoice_id, items in by_invoice.items():
        moment = max(at for _, at in items)
        try:
            with gateway.db.write() as session:
                if reconcile_invoice(session, invoice_id, default_bps=default_bps, moment=moment):
                    posted += 1
                for event_id, _ in items:
                    insert_ignore(session, LedgerEventDone.__table__, {
                        "event_id": event_id, "done_at": utc_now()}, conflict=["event_id"])
        except Exception:  # one bad invoice must not hold up the others; retried next pass
            failed += 1
            log.exception("could not post invoice %s; will retry", invoice_id)
    return {"events": len(events), "invoices": len(by_invoice), "entries": posted,
            "failed": failed}


def sweep(gateway, *, window: timedelta = SWEEP_WINDOW) -> int:
    """Reconcile recent invoices whose money moved without a status event: late payments
    on expired invoices, incidents on settled ones. Returns entries posted."""
    from payments.models import Invoice

    since = gateway.clock() - window
    with gateway.db.read() as session:
        ids = list(session.execute(select(Invoice.id).where(
            Invoice.status.in_(("Expired", "Settled", "Invalid")),
            Invoice.monitoring_expires_at > since,
            or_(Invoice.incident.is_not(None), Invoice.chain_status.is_not(None),
                and_(Invoice.status != "Settled", Invoice.paid_sats > 0),
                Invoice.paid_sats > Invoice.due_sats))).scalars())
    posted = 0
    for invoice_id in ids:
        with gateway.db.write() as session:
            if reconcile_invoice(session, invoice_id, default_bps=gateway.settings.fee_bps,
                                 moment=gateway.clock()):
                posted += 1
    return posted


def run_once(gateway) -> dict:
    """The job body: drain the outbox, then move the watermark."""
    total = {"events": 0, "invoices": 0, "entries": 0, "failed": 0}
    while True:
        result = post_pending(gateway)
        for k in total:
            total[k] += result[k]
        if result["events"] < 500 or result["failed"] == result["invoices"]:
            break
    advance_watermark(gateway)
    return total
