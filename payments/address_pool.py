"""Writing a new invoice with its InvoiceCreated outbox event, and the receive addresses
derived ahead of use that let PostgreSQL do it in one statement: it takes the key's next
index, reads that index's address, and inserts the invoice and its event.

Why: every invoice on a key increments the key's `next_index` row, so that row's lock
serialises creation. Held across round trips (UPDATE, address derivation in Python,
INSERT, COMMIT) it capped throughput; held for one autocommitted statement it is released
as soon as the statement's commit is flushed. Indexes stay consecutive: the statement is
atomic, so an invoice that fails to insert gives its index back.

The pool is a plain table of (key, index, address), a pure function of the key. Refills
run on a background thread, one per key at once (an advisory lock), derive a quarter of
the pool at a time, and lock the key's row only to publish the new end
(`extended_key.derived_until`).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from psycopg.errors import DivisionByZero
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError

from payments.models import ExtendedKeyRecord, Invoice, InvoiceEvent, KeyAddress

if TYPE_CHECKING:  # pragma: no cover
    from database import Database
    from payments.service import KeyRing

log = logging.getLogger(__name__)
_INVOICE = Invoice.__table__
_EVENT = InvoiceEvent.__table__
# The outbox row's columns other than invoice_id (the new invoice's, inside the statement).
EVENT_COLUMNS = ("dedupe_key", "store_id", "event_type", "payload_json", "created_at")
# The invoice's columns the creation statement binds; index and address come from the pool.
POOLED_COLUMNS = tuple(c for c in _INVOICE.columns if c.name not in ("key_index", "address"))
MAX_AHEAD = 400
MIN_AHEAD = 20


def pool_size(next_index: int) -> int:
    """How far ahead to derive: grows with the key's use, so the treasury key keeps
    hundreds of addresses ready while a shop's own key with a few invoices keeps 20."""
    return min(MAX_AHEAD, max(MIN_AHEAD, next_index))


def needs_refill(next_index: int, derived_until: int) -> bool:
    """Refill in small batches (a quarter of the pool) so no request derives for long."""
    return derived_until - next_index <= pool_size(next_index) * 3 // 4


def insert_created_invoice(connection: Connection, invoice: Invoice, event: dict) -> None:
    """Insert a new invoice that has its index and address, with its outbox row
    (`invoice_json.outbox_row`): SQLite's path, inside the caller's transaction."""
    connection.execute(insert(_INVOICE), {c.name: getattr(invoice, c.name)
                                          for c in _INVOICE.columns})
    connection.execute(insert(_EVENT), event)


def _take_and_create_statement():
    names = ", ".join(f'"{c.name}"' for c in POOLED_COLUMNS)
    values = ", ".join(f":{c.name}" for c in POOLED_COLUMNS)
    event_names = ", ".join(EVENT_COLUMNS)
    event_values = ", ".join(f":event_{name}" for name in EVENT_COLUMNS)
    # READ COMMITTED: the UPDATE waits for the key's row lock and then sees its newest
    # version; the key_address join reads the statement's snapshot, so an address
    # committed by a refill after the statement began may be invisible. Then `created`
    # is empty while `taken` is not, and the last line divides by zero on purpose: the
    # error undoes the whole statement, index included, and the caller retries with a
    # fresh snapshot. (Plain SQL has no RAISE; the divisor depends on a row, so it is
    # not folded at planning time.)
    sql = f"""
        WITH taken AS (
            UPDATE extended_key SET next_index = next_index + 1
            WHERE id = :key_id AND next_index < derived_until
            RETURNING next_index - 1 AS key_index, derived_until),
        created AS (
            INSERT INTO invoice ({names}, key_index, address)
            SELECT {values}, taken.key_index, key_address.address
            FROM taken JOIN key_address ON key_address.key_id = :key_id
                                       AND key_address.key_index = taken.key_index
            RETURNING id, address),
        created_event AS (
            INSERT INTO invoice_event (invoice_id, {event_names})
            SELECT created.id, {event_values} FROM created)
        SELECT taken.key_index, taken.derived_until, created.address,
               1 / (CASE WHEN created.address IS NULL THEN 0 ELSE 1 END) AS address_seen
        FROM taken LEFT JOIN created ON true"""
    binds = [bindparam(c.name, type_=c.type) for c in POOLED_COLUMNS]
    binds += [bindparam(f"event_{name}", type_=_EVENT.c[name].type) for name in EVENT_COLUMNS]
    return text(sql).bindparams(*binds).columns(key_index=Integer, derived_until=Integer,
                                                address=String, address_seen=Integer)


_TAKE_AND_CREATE = _take_and_create_statement()
_CURSOR = select(
    ExtendedKeyRecord.next_index, ExtendedKeyRecord.derived_until,
    select(func.coalesce(func.max(KeyAddress.key_index) + 1, 0))
    .where(KeyAddress.key_id == ExtendedKeyRecord.id).scalar_subquery(),
).where(ExtendedKeyRecord.id == bindparam("key_id"))


# Advisory-lock keys: this namespace's high bits, the key's id in the low ones.
_LOCK_SPACE = 0x42555341 << 32  # "BUSA"
_REFILL_LOCK = text("SELECT pg_advisory_xact_lock(:space + :key_id)").bindparams(space=_LOCK_SPACE)
_TRY_REFILL_LOCK = text("SELECT pg_try_advisory_xact_lock(:space + :key_id)").bindparams(
    space=_LOCK_SPACE)


class PoolExhausted(RuntimeError):
    pass


class PoolEmpty(Exception):
    """Inside a caller's transaction the pool had no address to give: the caller rolls
    back (its failed UPDATE may still hold the key's row, which a refill must update),
    refills and retries."""


class AddressPool:
    def __init__(self, db: Database, keys: KeyRing):
        self.db = db
        self.keys = keys
        self._refilling = threading.Lock()  # one background refill per process
        self._thread: threading.Thread | None = None
        self._vacuumed_at = float("-inf")

    def create_invoice(self, connection: Connection, invoice: Invoice, event: dict, *,
                       autocommit: bool = True) -> bool:
        """Give `invoice` its key's next index and address and insert it with `event`
        (its `invoice_json.outbox_row`), in one statement on `connection`. True when the pool
        runs low: the caller refills once its transaction no longer holds the key's row.
        Not `autocommit` (the caller's transaction): an empty pool raises PoolEmpty."""
        params = {c.name: getattr(invoice, c.name) for c in POOLED_COLUMNS}
        params.update({f"event_{name}": event[name] for name in EVENT_COLUMNS})
        for _attempt in range(5):
            try:
                row = connection.execute(_TAKE_AND_CREATE, params).first()
            except DataError as err:
                if not isinstance(err.orig, DivisionByZero):
                    raise
                row = None  # the address was not visible (see the statement): undone
            if row is None:  # nothing derived ahead (or all taken): derive, then retry
                if not autocommit:
                    raise PoolEmpty(invoice.key_id)
                self.refill(invoice.key_id, wait=True)
                continue
            invoice.key_index, invoice.address = row.key_index, row.address
            return needs_refill(row.key_index + 1, row.derived_until)
        raise PoolExhausted(f"no receive address could be derived ahead for key {invoice.key_id}")

    def refill_soon(self, key_id: int) -> None:
        """Refill on a thread of this process, so that no response waits for it. The pool
        is an optimisation only: if this never runs, creation refills when it finds the
        pool empty."""
        if not self._refilling.acquire(blocking=False):
            return  # one is running

        def run():
            try:
                self.refill(key_id, wait=False)
                self.vacuum_cursors()
            except Exception:  # noqa: BLE001 - logged; the next creation retries
                log.exception("refilling the address pool of key %s failed", key_id)
            finally:
                self._refilling.release()

        self._thread = threading.Thread(target=run, name="address-pool-refill", daemon=True)
        self._thread.start()

    def vacuum_cursors(self) -> bool:
        """VACUUM the key-cursor table, at most once a second per process.

        Every invoice updates its key's cursor row, hundreds of times a second at peak.
        HOT updates keep that cheap only while each row's page can be pruned; versions a
        waiting creation's snapshot still pins spill to new pages, and until a VACUUM
        the table and its index grow and every update gets slower (measured: 340 → 175
        invoices/s over two minutes with autovacuum off, 430/s again after a VACUUM).
        Autovacuum, when on, runs a minute apart at best: this keeps the table at a page
        or two. SKIP_LOCKED: a VACUUM already running elsewhere is enough."""
        now = time.monotonic()
        if now - self._vacuumed_at < 1.0:
            return False
        self._vacuumed_at = now
        with self.db.one_shot() as connection:
            connection.exec_driver_sql("VACUUM (SKIP_LOCKED) extended_key")
        return True

    def drain(self) -> None:
        """Wait for a background refill (before closing the database)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def refill(self, key_id: int, *, wait: bool) -> int:
        """Derive the key's next addresses into the pool; returns how many were added.
        One refill per key at a time (an advisory lock): without `wait`, a refill
        already running anywhere is enough.

        Rows are derived a pool ahead of what is admitted (`derived_until`). A background
        refill admits only rows an earlier refill committed, so a creation whose snapshot
        predates this commit still sees every index it can take; a waiting refill (the
        pool is empty) admits its own rows right after committing them. A creation whose
        snapshot still misses an address is undone and retried."""
        with self.db.transaction() as connection:
            if wait:
                connection.execute(_REFILL_LOCK, {"key_id": key_id})
            elif not connection.execute(_TRY_REFILL_LOCK, {"key_id": key_id}).scalar():
                return 0
            next_index, derived_until, rows_until = connection.execute(
                _CURSOR, {"key_id": key_id}).one()
            if not needs_refill(next_index, derived_until):
                return 0  # refilled while this one waited
            size = pool_size(next_index)
            key = self.keys.get(connection, key_id)
            rows = [{"key_id": key_id, "key_index": index, "address": key.address(index)}
                    for index in range(max(rows_until, next_index), next_index + 2 * size)]
            if rows:
                connection.execute(pg_insert(KeyAddress.__table__).on_conflict_do_nothing(),
                                   rows)
            if not wait:
                self._admit(connection, key_id, min(next_index + size, rows_until))
                return len(rows)
        # The pool is empty: admit the new rows at once, but only after they committed, so
        # that a creation must have waited through both commits to miss one.
        with self.db.transaction() as connection:
            self._admit(connection, key_id, next_index + size)
        return len(rows)

    @staticmethod
    def _admit(connection: Connection, key_id: int, until: int) -> None:
        # Last in its transaction, so the key's row is locked only for the commit.
        connection.execute(
            update(ExtendedKeyRecord).where(ExtendedKeyRecord.id == key_id)
            .values(derived_until=func.greatest(ExtendedKeyRecord.derived_until, until)))
