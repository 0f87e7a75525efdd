"""The double-entry ledger: a pure core (`Line`, `Entry`, balancing) and posting to the DB.

Sign convention: a posting's `amount` is a signed integer in its currency's smallest
unit (won for KRW, satoshis for BTC); debit > 0, credit < 0. An entry balances when,
for each currency, its amounts sum to zero. `post` refuses an unbalanced entry before
touching the database, and posts an entry once per `business_key`: the key is UNIQUE
and inserted with ON CONFLICT DO NOTHING, so retries and parallel workers post once.

Nothing here updates or deletes: a correction is a new entry.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

from sqlalchemy import func, select

from database import utc_now

CURRENCIES = ("KRW", "BTC")


class LedgerError(ValueError):
    """An entry that must never reach the ledger."""


class UnbalancedEntry(LedgerError):
    pass


@dataclass(frozen=True)
class Line:
    account: str
    currency: str
    amount: int  # debit > 0, credit < 0


@dataclass(frozen=True)
class Entry:
    business_key: str
    kind: str
    lines: tuple[Line, ...]
    memo: str = ""
    store_id: str | None = None
    invoice_id: str | None = None
    payout_id: str | None = None
    flags: tuple[str, ...] = ()
    created_at: datetime | None = None  # the business moment; now when None

    def __post_init__(self):
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "flags", tuple(self.flags))
        check_entry(self)

    def totals(self) -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for line in self.lines:
            sums[line.currency] += line.amount
        return dict(sums)


def check_entry(entry: Entry) -> None:
    """Raise unless the entry is well formed and balances per currency."""
    if not entry.business_key or len(entry.business_key) > 200:
        raise LedgerError("an entry needs a business key of at most 200 characters")
    if not entry.lines:
        raise LedgerError(f"entry {entry.business_key} has no lines")
    currencies: dict[str, str] = {}
    for line in entry.lines:
        if not isinstance(line.amount, int) or isinstance(line.amount, bool):
            raise LedgerError(f"amounts are integers (won or satoshis), got {line.amount!r}")
        if line.amount == 0:
            raise LedgerError(f"entry {entry.business_key}: a zero line on {line.account}")
        if line.currency not in CURRENCIES:
            raise LedgerError(f"unknown currency {line.currency!r}")
        if currencies.setdefault(line.account, line.currency) != line.currency:
            raise LedgerError(f"account {line.account} used in two currencies")
    unbalanced = {c: s for c, s in entry.totals().items() if s != 0}
    if unbalanced:
        raise UnbalancedEntry(f"entry {entry.business_key} does not balance: {unbalanced}")


def entry_from_amounts(business_key: str, kind: str, amounts: Mapping[tuple[str, str], int],
                       **fields) -> Entry | None:
    """An entry from {(account, currency): amount}, zero amounts dropped; None if empty."""
    lines = tuple(Line(acct, cur, amt) for (acct, cur), amt in sorted(amounts.items()) if amt)
    return Entry(business_key, kind, lines, **fields) if lines else None


def account_kind(code: str) -> tuple[str, str | None]:
    """`merchant_payable:<storeId>` → ("merchant_payable", storeId); `city_fees:krw` → ("city_fees", None)."""
    head, _, tail = code.partition(":")
    if tail.lower() in ("krw", "btc") or not tail:
        return code, None
    if head == "venue_btc":  # per conversion venue, not per store
        return head, None
    return head, tail


# -- database ---------------------------------------------------------------------------

def _tables():
    from settlement.models import JournalEntry, LedgerAccount, Posting

    return JournalEntry.__table__, Posting.__table__, LedgerAccount.__table__


def _insert(session, table):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def account_ids(session, wanted: Mapping[str, str]) -> dict[str, int]:
    """Ids of accounts {code: currency}, creating missing ones (safe under concurrency)."""
    _, _, accounts = _tables()
    if not wanted:
        return {}
    codes = sorted(wanted)
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(codes, 1000):
        for row in session.execute(select(accounts.c.code, accounts.c.id, accounts.c.currency)
                                   .where(accounts.c.code.in_(chunk))):
            found[row.code] = (row.id, row.currency)
    missing = [c for c in codes if c not in found]
    if missing:
        now = utc_now()
        rows = []
        for code in missing:
            kind, store_id = account_kind(code)
            rows.append({"code": code, "currency": wanted[code], "kind": kind,
                         "store_id": store_id, "created_at": now})
        session.execute(_insert(session, accounts).on_conflict_do_nothing(
            index_elements=["code"]), rows)
        for chunk in _chunks(missing, 1000):
            for row in session.execute(select(accounts.c.code, accounts.c.id, accounts.c.currency)
                                       .where(accounts.c.code.in_(chunk))):
                found[row.code] = (row.id, row.currency)
    for code, currency in wanted.items():
        if found[code][1] != currency:
            raise LedgerError(f"account {code} is in {found[code][1]}, not {currency}")
    return {code: found[code][0] for code in codes}


def post(session, entry: Entry) -> bool:
    """Post one entry in the caller's transaction; True when it was new."""
    return bool(post_many(session, [entry]))


def post_many(session, entries: Iterable[Entry]) -> list[str]:
    """Post entries (each checked first); returns the business keys that were new.

    The journal rows go in with INSERT … ON CONFLICT (business_key) DO NOTHING RETURNING,
    and postings are written only for the rows this call inserted: a concurrent worker
    posting the same key waits on the unique index, then inserts nothing.
    """
    entries = list(entries)
    for entry in entries:
        check_entry(entry)
    if not entries:
        return []
    keys = [e.business_key for e in entries]
    if len(set(keys)) != len(keys):
        raise LedgerError("the same business key twice in one batch")
    journal, postings, _ = _tables()
    wanted: dict[str, str] = {}
    for entry in entries:
        for line in entry.lines:
            wanted[line.account] = line.currency
    ids = account_ids(session, wanted)
    now = utc_now()
    by_key = {e.business_key: e for e in entries}
    new: dict[str, int] = {}
    for chunk in _chunks(entries, 1000):
        stmt = _insert(session, journal).values([{
            "business_key": e.business_key, "kind": e.kind, "memo": e.memo,
            "store_id": e.store_id, "invoice_id": e.invoice_id, "payout_id": e.payout_id,
            "flags": " ".join(e.flags), "created_at": e.created_at or now, "posted_at": now,
        } for e in chunk]).on_conflict_do_nothing(index_elements=["business_key"]).returning(
            journal.c.id, journal.c.business_key)
        for row in session.execute(stmt):
            new[row.business_key] = row.id
    rows = [{"entry_id": entry_id, "account_id": ids[line.account], "currency": line.currency,
             "amount": line.amount}
            for key, entry_id in new.items() for line in by_key[key].lines]
    for chunk in _chunks(rows, 5000):
        session.execute(postings.insert(), chunk)
    return [k for k in keys if k in new]


def balance(session, account_code: str) -> int:
    journal, postings, accounts = _tables()
    value = session.execute(select(func.coalesce(func.sum(postings.c.amount), 0))
                            .select_from(postings.join(accounts, accounts.c.id == postings.c.account_id))
                            .where(accounts.c.code == account_code)).scalar_one()
    return int(value)


def balances(session, *, kind: str | None = None, before: datetime | None = None) -> dict[str, int]:
    """Balance of every account (of one kind), optionally of entries before a moment."""
    journal, postings, accounts = _tables()
    stmt = (select(accounts.c.code, func.sum(postings.c.amount))
            .select_from(postings.join(accounts, accounts.c.id == postings.c.account_id)))
    if before is not None:
        stmt = stmt.join(journal, journal.c.id == postings.c.entry_id).where(
            journal.c.created_at < before)
    if kind is not None:
        stmt = stmt.where(accounts.c.kind == kind)
    return {code: int(total) for code, total in session.execute(stmt.group_by(accounts.c.code))}


def trial_balance(session) -> list[dict]:
    """Every account with its balance, and nothing else: sums per currency must be zero."""
    _, postings, accounts = _tables()
    rows = session.execute(
        select(accounts.c.code, accounts.c.currency, func.coalesce(func.sum(postings.c.amount), 0),
               func.count(postings.c.id))
        .select_from(accounts.outerjoin(postings, postings.c.account_id == accounts.c.id))
        .group_by(accounts.c.code, accounts.c.currency).order_by(accounts.c.code))
    return [{"account": code, "currency": currency, "balance": int(total), "postings": int(n)}
            for code, currency, total, n in rows]


def unbalanced_entries(session, limit: int = 100) -> list[dict]:
    """Entries whose postings do not sum to zero in some currency (should never exist)."""
    journal, postings, _ = _tables()
    rows = session.execute(
        select(postings.c.entry_id, postings.c.currency, func.sum(postings.c.amount))
        .group_by(postings.c.entry_id, postings.c.currency)
        .having(func.sum(postings.c.amount) != 0).limit(limit))
    found = [{"entryId": int(e), "currency": c, "sum": int(s)} for e, c, s in rows]
    empty = session.execute(
        select(journal.c.id).where(~select(postings.c.id).where(
            postings.c.entry_id == journal.c.id).exists()).limit(limit))
    found += [{"entryId": int(e), "currency": None, "sum": 0, "problem": "no postings"}
              for (e,) in empty]
    return found


def _chunks(items, size):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def lock(session, name: str) -> None:
    """A transaction-scoped named lock (PostgreSQL advisory lock; SQLite writers are already
    serialised by BEGIN IMMEDIATE)."""
    from sqlalchemy import text

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


def insert_new(session, table, values: dict, *, conflict: list[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when the row was new.

    Like `database.insert_ignore`, but asks SQLAlchemy to keep the row count: with
    SQLAlchemy 2.1 and psycopg an INSERT's `rowcount` is -1 unless `preserve_rowcount`
    is set, which would make every insert look like a duplicate on PostgreSQL.
    """
    stmt = _insert(session, table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    result = session.execute(stmt.execution_options(preserve_rowcount=True))
    return (result.rowcount or 0) > 0
