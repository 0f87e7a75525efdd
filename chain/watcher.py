"""The chain watcher: follows blocks and the mempool, records payments, feeds the decision.

One pass (`Watcher.run_once`):

0. **Can the node know?** (`node_state`, Bitcoin Core only.) While it is in initial block
   download (a reindex too), its mempool is not loaded, or its tip is below the processed
   height (a restart that lost blocks), the pass waits: it judges nothing and stores why
   (``chain_watcher_state.waiting``, shown by `health`).
1. **Blocks.** From the last processed block to the backend's tip. A stored block hash
   that the backend no longer has at its height is a reorg: walk back to the fork
   (`chain.logic.find_fork`), mark the blocks after it orphaned, and take their payments
   out of their blocks (back to the mempool, or ``orphaned`` when the backend no longer
   knows them). Then each new block in ONE transaction with its ``chain_block`` row: the
   outputs it pays to invoice addresses (looked up in chunks of ``address IN (…)`` on the
   unique index, so the cost follows the block, not the number of open invoices), the
   conflicts it confirms against pending payments (double spends), confirmations and
   ``InvoicePaymentSettled``, and the re-decided invoices with their events. A block is
   processed only by a transaction that finds its parent as the stored cursor (fencing),
   so a second watcher or a restart after SIGKILL can never process a block twice.
2. **Mempool.** `mempool_txs(watched)` for the addresses of invoices still monitored;
   pending payments missing from the answer are asked for by txid (`tx_status`):
   gone means ``replaced`` (``double_spent`` once a conflicting transaction confirms).
   Then the tip is read again: if a block came during the scan nothing is written and the
   pass catches up and scans again (a payment mined in between would look gone).
3. **Time and incidents.** In the same transaction as the mempool results: invoices whose
   expiry or monitoring end has come are re-decided, and incidents are judged (opened,
   or closed when their facts are gone; `chain.logic.incident_facts`), each recorded in
   ``invoice_incident`` and told by a ``BusanPayInvoiceIncident`` outbox event.

Rule for time-based transitions (never expire or invalidate because the backend was
down): expiry and end of monitoring are decided only at the start time of a pass whose
chain catch-up AND mempool scan both succeeded (``covered_at``). Block and reorg
transactions decide at the previous ``covered_at``, so they never apply a time
transition that no successful scan has covered. A payment is dated by the node's own
first-seen time when it gives one (Core's ``getmempoolentry`` ``time``); first seen in a
block, by the later of "just after the last complete scan" and the block's median time
past (`chain.logic.block_arrival_time`); otherwise just after the last complete scan
(`chain.logic.arrival_time`): it may have arrived then, so an outage never turns an
on-time payment late. A payment seen
after its invoice's monitoring ended is recorded and flagged (``late``, incident
``paid-after-monitoring``), never credited.

Backend failures: the pass stops, the error and a back-off (at least the server's
Retry-After) are stored in ``chain_watcher_state``; until it ends a pass is one cheap
probe (at most every PROBE_SECONDS) and runs in full as soon as the probe answers or a
ZMQ notification arrives (`nudge`). Everything is kept; nothing is decided from missing
data. `health(gateway)` reads it.
"""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import String, and_, any_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY

from chain.backends import READY, BackendError, Block, ChainTx, NodeState
from chain.logic import (Match, arrival_time, backoff_seconds, block_arrival_time,
                         candidate_addresses, chunks, classify, confirmations,
                         conflicting_spends, find_fork, incident_facts, outputs_paying,
                         watch_done)
from chain.models import (ChainBlock, ChainPaymentTrack, ChainTxInput, ChainWatcherState,
                          InvoiceIncident)
from database import insert_ignore
from payments.bip21 import format_btc
from operations.metrics import PAYMENTS_RECEIVED, count_after_commit, count_transition
from payments.invoice_json import outbox_row, unix
from payments.invoice_status import (EVENT_MONEY_FACTS, AdditionalStatus, InvoiceFacts,
                                     PaymentFact, PaymentState, confirmations_required, decide)
from payments.models import (METHOD_CHAIN, METHOD_LIGHTNING, ExtendedKeyRecord, Invoice,
                             InvoiceEvent, Payment)

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
STATE_ID = 1
EVENT_RECEIVED = "InvoiceReceivedPayment"
EVENT_PAYMENT_SETTLED = "InvoicePaymentSettled"
#: Busan Pay's own webhook event: an incident opened or closed (sent only to webhooks that
#: name it in specificEvents; see webhooks/rules.py).
EVENT_INCIDENT = "BusanPayInvoiceIncident"
#: While the backend is down, one cheap probe at most this often (seconds); a probe that
#: answers (or a ZMQ notification) ends the back-off at once.
PROBE_SECONDS = 0.5
#: Passes redone when the tip moved during the mempool scan, before giving up this round.
TIP_RETRIES = 3
#: Seconds between re-asking the backend about replaced/orphaned payments (every new
#: block also triggers it).
SLOW_CHECK_SECONDS = 30.0
#: Pending-payment inputs read whole up to this many rows (else probed by the block's).
PENDING_INPUTS_READ_WHOLE = 5_000
#: Advisory lock key on PostgreSQL ("BUSANWAT").
PG_LOCK_KEY = 0x4255_5341_4E57_4154

_P = Payment.__table__
_T = ChainPaymentTrack.__table__
_I = ChainTxInput.__table__
_B = ChainBlock.__table__
_INV = Invoice.__table__
_E = InvoiceEvent.__table__
_X = InvoiceIncident.__table__


def _by_key(table):
    return and_(table.c.txid == bindparam("k_txid"), table.c.vout == bindparam("k_vout"))


def _many(s, stmt, rows: list[dict]) -> None:
    """One executemany (compiled once, cached), nothing when there is nothing to do."""
    if rows:
        s.execute(stmt, rows)


class _Outbox:
    """Outbox events of one transaction, written together at its end, in order.

    The rows of `payments.service.record_event` (`invoice_json.outbox_row`, insert-once
    on the unique key), batched: a block with hundreds of payments writes its
    events in one executemany instead of one statement each."""

    def __init__(self):
        self.rows: list[dict] = []
        self._keys: set[str] = set()
        self.received: set[str] = set()  # invoices with a new payment in this batch

    def add(self, invoice, event_type: str, moment: datetime, dedupe: str | None = None,
            **extra) -> None:
        row = outbox_row(invoice, event_type, moment, dedupe, **extra)
        if row["dedupe_key"] in self._keys:
            return
        self._keys.add(row["dedupe_key"])
        self.rows.append(row)
        if event_type == EVENT_RECEIVED:
            self.received.add(invoice.id)

    def flush(self, s) -> int:
        """Write the new ones; returns how many were new."""
        if not self.rows:
            return 0
        stmt = _dialect_insert(s, _E).on_conflict_do_nothing(
            index_elements=["dedupe_key"]).returning(_E.c.dedupe_key)
        written = len(s.execute(stmt, self.rows).all())
        self.rows, self._keys, self.received = [], set(), set()
        return written


class Fenced(Exception):
    """Another watcher moved the cursor since this pass read it: stop, retry next pass."""


# --------------------------------------------------------------------------- the lock

class PassLock:
    """Only one watcher pass at a time, across threads and processes; released by the OS
    or the server when its holder dies (no lease to wait out after a SIGKILL).

    PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an flock on a
    file beside the database. Correctness never rests on it alone: every write is fenced.
    """

    def __init__(self, db):
        self.db = db
        self._conn = None
        self._file = None
        self._thread_lock: threading.Lock | None = None
        path = db.engine.url.database if db.is_sqlite else None
        self._path = f"{path}.watcher.lock" if path and path != ":memory:" else None
        if db.is_sqlite and self._path is None:
            self._thread_lock = threading.Lock()

    def acquire(self, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            if self._try():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _try(self) -> bool:
        if self._thread_lock is not None:
            return self._thread_lock.acquire(blocking=False)
        if self._path is not None:
            handle = open(self._path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._file = handle
            return True
        conn = self.db.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._thread_lock is not None:
            if self._thread_lock.locked():
                self._thread_lock.release()
            return
        if self._file is not None:
            try:
                fcntl.flock(self._file, fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None
            return
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                self._conn.commit()
            except Exception:  # the connection died: the server released the lock with it
                log.warning("could not release the watcher lock cleanly", exc_info=True)
            finally:
                self._conn.close()
                self._conn = None


# --------------------------------------------------------------------------- watched set

class WatchedAddresses:
    """Addresses of invoices still monitored (New, Processing, Expired until its
    monitoring ends), for `mempool_txs`. A full reload at most every `full_every`
    seconds; in between only invoices created since are added, found by their key index
    (allocated in commit order per key) on the unique (key_id, key_index) index."""

    def __init__(self, full_every: float = 60.0):
        self.full_every = full_every
        self._addresses: set[str] = set()
        self._max_index: dict[int, int] = {}
        self._loaded_at: float | None = None

    @staticmethod
    def _monitored(now: datetime):
        return or_(_INV.c.status.in_(("New", "Processing")),
                   and_(_INV.c.status == "Expired", _INV.c.monitoring_expires_at > now))

    def get(self, session, now: datetime) -> set[str]:
        fresh = time.monotonic()
        if self._loaded_at is None or fresh - self._loaded_at >= self.full_every:
            rows = session.execute(select(_INV.c.address).where(self._monitored(now))).all()
            self._addresses = {r[0] for r in rows}
            self._max_index = {k: i for k, i in session.execute(
                select(_INV.c.key_id, func.max(_INV.c.key_index)).group_by(_INV.c.key_id)).all()}
            self._loaded_at = fresh
            return set(self._addresses)
        for (key_id,) in session.execute(select(ExtendedKeyRecord.id)).all():
            since = self._max_index.get(key_id, -1)
            rows = session.execute(select(_INV.c.address, _INV.c.key_index, _INV.c.status,
                                          _INV.c.monitoring_expires_at)
                                   .where(_INV.c.key_id == key_id, _INV.c.key_index > since)).all()
            for address, index, status, monitoring_end in rows:
                self._max_index[key_id] = max(self._max_index.get(key_id, -1), index)
                if status in ("New", "Processing") or (status == "Expired" and monitoring_end > now):
                    self._addresses.add(address)
        return set(self._addresses)


# --------------------------------------------------------------------------- the watcher

@dataclass
class _InvoiceRow:
    id: str
    address: str
    created_at: datetime
    expires_at: datetime
    monitoring_expires_at: datetime
    required: int


class Watcher:
    def __init__(self, gateway, backend, *, lookback: int = 12, chunk_size: int = 2000,
                 lock_wait: float = 0.0, holder: str | None = None):
        self.gateway = gateway
        self.db = gateway.db
        self.backend = backend
        self.clock = gateway.clock
        self.lookback = lookback
        self.chunk_size = chunk_size
        self.lock_wait = lock_wait
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lock = PassLock(self.db)
        self.watched = WatchedAddresses()
        self._last_slow_check = 0.0
        self._state_ready = False
        self._nudge = threading.Event()
        self._last_probe = 0.0
        self._respect_until: datetime | None = None   # the server's own Retry-After
        self._pass_touched: set[str] = set()

    def nudge(self) -> None:
        """The node spoke (a ZMQ notification): the next pass ignores the back-off."""
        self._nudge.set()

    # -- the pass --------------------------------------------------------------------------
    def run_once(self, *, force: bool = False, wait: float | None = None) -> dict:
        started = time.monotonic()
        start = self.clock()
        summary: dict = {"ok": False, "backend": getattr(self.backend, "name", "?"),
                         "blocks": 0, "reorgs": [], "payments": 0, "events": 0,
                         "invoicesChanged": 0, "mempoolTxs": 0, "timeTransitions": False,
                         "tip": None, "processed": None, "error": None, "skipped": None,
                         "waiting": None, "tipMoved": 0}
        self._ensure_state()
        state = self._state()
        if not force and state.backoff_until is not None and start < state.backoff_until \
                and not self._backoff_ends(start, summary):
            summary["skipped"] = "backoff"
            summary["backoffUntil"] = unix(state.backoff_until)
            summary["error"] = state.last_error
            return summary
        if not self.lock.acquire(self.lock_wait if wait is None else wait):
            summary["skipped"] = "another watcher is running"
            return summary
        self._pass_touched = set()
        try:
            for _ in range(TIP_RETRIES):
                node = self._node_state()
                if not node.ready:
                    self._wait(node.reason or "the node is not ready", node.height, summary)
                    break
                tip = self.backend.tip()
                summary["tip"] = tip.height
                best = self._state().best_height
                if best is not None and tip.height < best and \
                        not getattr(self.backend, "lower_tip_is_reorg", False):
                    self._wait(f"the node's tip {tip.height} is below the processed height "
                               f"{best} (restarted, reindexing or lost blocks): waiting for it "
                               "to catch up", tip.height, summary)
                    break
                new_block = self._sync_chain(tip, summary)
                if self._mempool_and_time(start, tip, new_block, summary):
                    summary["ok"] = True
                    break
                summary["tipMoved"] += 1  # a block came during the mempool scan: again
            else:
                summary["skipped"] = "the tip kept moving during the mempool scan"
        except BackendError as err:
            summary["error"] = f"{type(err).__name__}: {err}"
            self._record_failure(err)
        except Fenced as err:
            summary["skipped"] = f"fenced: {err}"
        finally:
            self.lock.release()
        summary["processed"] = self._state().best_height
        summary["seconds"] = round(time.monotonic() - started, 4)
        return summary

    # -- the node: back-off, probes, readiness ---------------------------------------------
    def _backoff_ends(self, now: datetime, summary: dict) -> bool:
        """In back-off: may this pass run anyway? Yes after a ZMQ notification, or when a
        cheap probe answers (at most every PROBE_SECONDS; never before the server's own
        Retry-After). So the watcher is back within about a second of the node."""
        if self._nudge.is_set():
            self._nudge.clear()
            return True
        if self._respect_until is not None and now < self._respect_until:
            return False
        mono = time.monotonic()
        if mono - self._last_probe < PROBE_SECONDS:
            return False
        self._last_probe = mono
        probe = getattr(self.backend, "probe", None)
        try:
            probe() if probe is not None else self.backend.tip()
        except BackendError as err:
            summary["probe"] = f"{type(err).__name__}: {err}"
            return False
        return True

    def _node_state(self) -> NodeState:
        ask = getattr(self.backend, "node_state", None)
        return ask() if ask is not None else READY

    def _best_hash(self) -> str:
        ask = getattr(self.backend, "best_hash", None)
        return ask() if ask is not None else self.backend.tip().hash

    def _wait(self, reason: str, height: int | None, summary: dict) -> None:
        """The node answers but cannot be believed yet: judge nothing, say why."""
        now = self.clock()
        summary["waiting"] = reason
        with self.db.write() as s:
            st = self._lock_state(s)
            if st.waiting != reason[:200]:
                log.warning("watcher waiting: %s", reason)
            if st.waiting is None:
                st.waiting_since = now
            st.waiting = reason[:200]
            st.failures = 0
            st.backoff_until = None
            if height is not None:
                st.tip_height = height
            st.holder = self.holder
            st.updated_at = now

    # -- state -----------------------------------------------------------------------------
    def _ensure_state(self) -> None:
        if self._state_ready:
            return
        with self.db.write() as s:
            insert_ignore(s, ChainWatcherState.__table__, {
                "id": STATE_ID, "backend": getattr(self.backend, "name", "?")[:64],
                "failures": 0, "updated_at": self.clock()}, conflict=["id"])
        self._state_ready = True

    def _state(self) -> ChainWatcherState:
        with self.db.read() as s:
            return s.get(ChainWatcherState, STATE_ID)

    @staticmethod
    def _lock_state(s) -> ChainWatcherState:
        return s.execute(select(ChainWatcherState).where(ChainWatcherState.id == STATE_ID)
                         .with_for_update()).scalar_one()

    def _record_failure(self, err: BaseException) -> None:
        now = self.clock()
        try:
            with self.db.write() as s:
                st = self._lock_state(s)
                st.failures = (st.failures or 0) + 1
                st.last_error = f"{type(err).__name__}: {err}"[:2000]
                st.last_error_at = now
                retry_after = getattr(err, "retry_after", None)
                delay = backoff_seconds(st.failures, retry_after)
                st.backoff_until = now + timedelta(seconds=delay)
                self._respect_until = now + timedelta(seconds=retry_after) if retry_after \
                    else None
                st.holder = self.holder
                st.updated_at = now
        except Exception:  # the database is down too: nothing to keep
            log.exception("could not record the watcher failure")
        log.warning("chain backend failed: %s", err)

    # -- blocks ----------------------------------------------------------------------------
    def _sync_chain(self, tip, summary: dict) -> bool:
        """Reorgs, then every block up to `tip`. True when a block was processed."""
        processed = False
        for _ in range(4):  # a reorg, then the catch-up; more only if the chain moves under us
            st = self._state()
            if st.best_hash is not None and st.best_hash != tip.hash and \
                    self.backend.block_hash_at(st.best_height) != st.best_hash:
                summary["reorgs"].append(self._handle_reorg(st))
                processed = True
                continue
            next_height = (st.best_height + 1) if st.best_hash is not None else \
                max(0, tip.height - self.lookback)
            parent = st.best_hash
            moved = False
            for height in range(next_height, tip.height + 1):
                block_hash = self.backend.block_hash_at(height)
                if block_hash is None:
                    moved = True
                    break
                block = self.backend.block(block_hash)
                if parent is not None and block.header.prev_hash != parent:
                    moved = True  # the chain changed between our calls: re-check from the top
                    break
                summary["payments"] += self._process_block(block, parent, summary)
                summary["blocks"] += 1
                parent = block.header.hash
                processed = True
            if not moved:
                return processed
        return processed

    def _handle_reorg(self, st: ChainWatcherState) -> dict:
        best_hash, best_height = st.best_hash, st.best_height
        with self.db.read() as s:
            stored = [(h, bh) for h, bh in s.execute(
                select(_B.c.height, _B.c.hash).where(_B.c.orphaned == False)  # noqa: E712
                .order_by(_B.c.height.desc())).all()]
        fork = find_fork(stored, self.backend.block_hash_at)
        if fork is None:
            lowest = min(stored) if stored else None
            fork_height = lowest[0] - 1 if lowest else -1
            with self.db.read() as s:
                fork_hash = s.execute(select(_B.c.prev_hash).where(_B.c.hash == lowest[1])).scalar() \
                    if lowest else None
            deep = True
        else:
            fork_height, fork_hash = fork, dict(stored)[fork]
            deep = False
        orphaned = [bh for h, bh in stored if h > fork_height]
        with self.db.read() as s:
            hit = []
            for part in chunks(orphaned, self.chunk_size):
                hit += s.execute(select(_T.c.txid, _T.c.vout, _T.c.invoice_id)
                                 .where(_T.c.block_hash.in_(part))).all()
        statuses = {txid: self.backend.tx_status(txid) for txid in {r[0] for r in hit}}
        now = self.clock()
        with self.db.write() as s:
            st = self._lock_state(s)
            if st.best_hash != best_hash:
                raise Fenced("the cursor moved during the reorg")
            for part in chunks(orphaned, self.chunk_size):
                s.execute(update(_B).where(_B.c.hash.in_(part)).values(orphaned=True,
                                                                        orphaned_at=now))
            touched = {invoice_id for _, _, invoice_id in hit}
            keys = [{"k_txid": txid, "k_vout": vout,
                     "state": classify(statuses[txid], lost_block=True).value}
                    for txid, vout, _ in hit]
            _many(s, update(_P).where(_by_key(_P)).values(
                state=bindparam("state"), block_height=None, block_hash=None), keys)
            _many(s, update(_T).where(_by_key(_T)).values(
                block_height=None, block_hash=None, active=True), keys)
            st.best_height = fork_height if fork_height >= 0 else None
            st.best_hash = fork_hash
            if deep:
                st.incident = f"reorg below the first processed block at {best_height}"[:200]
            st.updated_at = now
            decision_time = st.covered_at or EPOCH
            outbox = _Outbox()
            changed = self._redecide(s, outbox, touched, decision_time, now, st.best_height,
                                     touched_payments=touched)
            events = outbox.flush(s)
        self._pass_touched |= touched
        log.warning("reorg: %d block(s) orphaned above height %s; %d payment(s) moved",
                    len(orphaned), fork_height, len(hit))
        return {"fork": fork_height, "orphaned": len(orphaned), "payments": len(hit),
                "invoicesChanged": changed, "events": events, "deep": deep}

    def _keyed(self, s, stmt_for, column, keys: list[str]):
        """Rows for `keys` by an index on `column`, in chunks. SQLite probes its index for
        ``IN (…)``; PostgreSQL gets ``= ANY(array)`` with sequential scans disabled for the
        statement: its planner would otherwise hash-filter the whole table once the key
        list is long, a cost that grows with the table (all invoices ever), not the block."""
        if not keys:
            return []
        if s.get_bind().dialect.name != "postgresql":
            rows = []
            for part in chunks(keys, self.chunk_size):
                rows += s.execute(stmt_for(column.in_(part))).all()
            return rows
        s.execute(text("SET LOCAL enable_seqscan = off"))
        try:
            rows = []
            for part in chunks(keys, 20_000):
                rows += s.execute(stmt_for(column == any_(bindparam("keys", type_=ARRAY(String)))),
                                  {"keys": list(part)}).all()
            return rows
        finally:
            s.execute(text("SET LOCAL enable_seqscan TO DEFAULT"))

    def _lookup_invoices(self, s, addresses: Iterable[str]) -> dict[str, _InvoiceRow]:
        """The invoices of these addresses, by the unique address index."""
        cols = (_INV.c.id, _INV.c.address, _INV.c.created_at, _INV.c.expires_at,
                _INV.c.monitoring_expires_at, _INV.c.speed_policy, _INV.c.amount_krw,
                _INV.c.zero_conf_limit_krw)
        found: dict[str, _InvoiceRow] = {}
        for row in self._keyed(s, lambda cond: select(*cols).where(cond), _INV.c.address,
                               sorted(addresses)):
            found[row.address] = _InvoiceRow(
                row.id, row.address, row.created_at, row.expires_at, row.monitoring_expires_at,
                confirmations_required(row.speed_policy, row.amount_krw, row.zero_conf_limit_krw))
        return found

    def _watched_inputs(self, s, txs: Iterable[ChainTx]) -> dict[tuple[str, int], set[str]]:
        """Outpoints spent by pending payment transactions that `txs` also spend. The
        table holds only payments not yet deep in the chain: usually read whole; when it is
        large, probed by the block's spent txids."""
        cols = select(_I.c.prev_txid, _I.c.prev_vout, _I.c.txid)
        rows = s.execute(cols.limit(PENDING_INPUTS_READ_WHOLE + 1)).all()
        if len(rows) > PENDING_INPUTS_READ_WHOLE:
            prev = sorted({i.txid for tx in txs for i in tx.inputs})
            rows = self._keyed(s, lambda cond: cols.where(cond), _I.c.prev_txid, prev)
        watched: dict[tuple[str, int], set[str]] = {}
        for prev_txid, prev_vout, txid in rows:
            watched.setdefault((prev_txid, prev_vout), set()).add(txid)
        return watched

    def _process_block(self, block: Block, parent: str | None, summary: dict) -> int:
        header = block.header
        addresses = candidate_addresses(block.txs)
        now = self.clock()
        with self.db.write() as s:
            st = self._lock_state(s)
            if st.best_hash != parent:
                raise Fenced(f"block {header.height} was processed by another watcher")
            # Double spends: a confirmed transaction spending what a pending payment spent
            # (read before this block's own payments add their inputs).
            in_block = {tx.txid for tx in block.txs}
            conflicted = conflicting_spends(block.txs, self._watched_inputs(s, block.txs)) - in_block
            invoices = self._lookup_invoices(s, addresses)
            matches = outputs_paying(block.txs, invoices)
            seen_at = block_arrival_time(now, st.covered_at, header.median_time)
            outbox = _Outbox()
            new, touched = self._record_payments(s, outbox, matches, invoices, block.txs,
                                                 seen_at, now, block_height=header.height,
                                                 block_hash=header.hash)
            if conflicted:
                for part in chunks(sorted(conflicted), self.chunk_size):
                    rows = s.execute(select(_P.c.txid, _P.c.vout, _P.c.invoice_id)
                                     .where(_P.c.txid.in_(part), _P.c.block_hash.is_(None),
                                            _P.c.method == METHOD_CHAIN,
                                            _P.c.state != PaymentState.DOUBLE_SPENT.value)).all()
                    _many(s, update(_P).where(_by_key(_P)).values(
                        state=PaymentState.DOUBLE_SPENT.value),
                        [{"k_txid": t, "k_vout": v} for t, v, _ in rows])
                    touched.update(invoice_id for _, _, invoice_id in rows)
            existing = s.get(ChainBlock, header.hash)
            if existing is None:
                s.add(ChainBlock(hash=header.hash, height=header.height,
                                 prev_hash=header.prev_hash, orphaned=False,
                                 tx_count=len(block.txs), matched_outputs=len(matches),
                                 processed_at=now))
            else:  # back on the active chain after a reorg and its undoing
                existing.orphaned, existing.orphaned_at = False, None
                existing.processed_at = now
            st.best_height, st.best_hash = header.height, header.hash
            st.tip_height, st.tip_hash = header.height, header.hash
            st.updated_at = now
            s.flush()
            settled_invoices, confirmed_invoices, _lost = self._advance_tracked(
                s, outbox, header.height, now)
            decision_time = st.covered_at or EPOCH
            changed = self._redecide(
                s, outbox, touched | settled_invoices | confirmed_invoices, decision_time, now,
                header.height, touched_payments=touched | settled_invoices)
            events = outbox.flush(s)
        self._pass_touched |= touched
        summary["events"] += events
        summary["invoicesChanged"] += changed
        return new

    # -- payments --------------------------------------------------------------------------
    def _record_payments(self, s, outbox: _Outbox, matches: list[Match],
                         invoices: dict[str, _InvoiceRow],
                         txs: Iterable[ChainTx], seen_at: datetime, now: datetime, *,
                         block_height: int | None, block_hash: str | None,
                         node_seen: dict[str, datetime] | None = None
                         ) -> tuple[int, set[str]]:
        """Insert each matched output once; put known ones (back) into this block or the
        mempool. A new payment is dated `node_seen[txid]` (the node's first-seen time) when
        the node said, else `seen_at`; never before its invoice nor after now. Returns
        (payments new, invoice ids whose payments changed)."""
        if not matches:
            return 0, set()
        touched: set[str] = set()
        rows = []
        node_seen = node_seen or {}
        for m in matches:
            inv = invoices[m.address]
            seen = min(now, max(node_seen.get(m.txid, seen_at), inv.created_at))
            rows.append({"invoice_id": inv.id, "txid": m.txid, "vout": m.vout,
                         "address": m.address, "value_sats": m.value_sats,
                         "state": PaymentState.SEEN.value, "block_height": block_height,
                         "block_hash": block_hash, "seen_at": seen,
                         "late": seen > inv.expires_at})
        stmt = _dialect_insert(s, _P).on_conflict_do_nothing(
            index_elements=["txid", "vout"]).returning(_P.c.txid, _P.c.vout)
        inserted = {(r[0], r[1]) for r in s.execute(stmt, rows).all()}
        by_key = {(r["txid"], r["vout"]): r for r in rows}
        by_invoice = {inv.id: inv for inv in invoices.values()}
        new_rows = [by_key[k] for k in by_key if k in inserted]
        count_after_commit(s, PAYMENTS_RECEIVED, len(new_rows), method=METHOD_CHAIN)
        # Bookkeeping for the new ones: tracking, inputs, the payment event.
        track_rows, input_rows = [], []
        new_txids = {r["txid"] for r in new_rows}
        for r in new_rows:
            inv = by_invoice[r["invoice_id"]]
            after = r["seen_at"] > inv.monitoring_expires_at
            track_rows.append({"txid": r["txid"], "vout": r["vout"], "invoice_id": inv.id,
                               "required_confs": inv.required, "block_height": block_height,
                               "block_hash": block_hash, "active": True,
                               "settled_event": False, "after_monitoring": after,
                               "watch_until": max(inv.monitoring_expires_at, r["seen_at"])
                               + timedelta(days=1)})
            touched.add(inv.id)
        for tx in txs:
            if tx.txid in new_txids:
                input_rows += [{"prev_txid": i.txid, "prev_vout": i.vout, "txid": tx.txid}
                               for i in tx.inputs]
        _many(s, _dialect_insert(s, _T).on_conflict_do_nothing(index_elements=["txid", "vout"]),
              track_rows)
        _many(s, _dialect_insert(s, _I).on_conflict_do_nothing(
            index_elements=["prev_txid", "prev_vout", "txid"]), input_rows)
        if new_rows:
            self._received_events(s, outbox, new_rows, by_invoice, now)
        # Known payments: into this block (or back to seen from the mempool).
        known = [r for k, r in by_key.items() if k not in inserted]
        for part in chunks(known, 500):
            keys = [(r["txid"], r["vout"]) for r in part]
            current = s.execute(select(_P.c.txid, _P.c.vout, _P.c.invoice_id, _P.c.state,
                                       _P.c.block_hash)
                                .where(_P.c.txid.in_({k[0] for k in keys}))).all()
            wanted = set(keys)
            confirm, revive = [], []
            for txid, vout, invoice_id, state, old_hash in current:
                if (txid, vout) not in wanted:
                    continue
                if block_hash is not None:
                    if old_hash == block_hash and state == PaymentState.SEEN.value:
                        continue
                    confirm.append({"k_txid": txid, "k_vout": vout})
                    touched.add(invoice_id)
                elif old_hash is None and state != PaymentState.SEEN.value:
                    revive.append({"k_txid": txid, "k_vout": vout})
                    touched.add(invoice_id)
            _many(s, update(_P).where(_by_key(_P)).values(
                state=PaymentState.SEEN.value, block_height=block_height, block_hash=block_hash),
                confirm)
            _many(s, update(_T).where(_by_key(_T)).values(
                block_height=block_height, block_hash=block_hash, active=True), confirm)
            _many(s, update(_P).where(_by_key(_P)).values(state=PaymentState.SEEN.value), revive)
        return len(new_rows), touched

    def _received_events(self, s, outbox: _Outbox, new_rows: list[dict], by_invoice: dict,
                         now: datetime) -> None:
        invoices = {i.id: i for i in s.execute(select(Invoice).where(
            Invoice.id.in_({r["invoice_id"] for r in new_rows}))).scalars()}
        for r in new_rows:
            inv = invoices[r["invoice_id"]]
            if r["seen_at"] > by_invoice[inv.id].monitoring_expires_at:
                continue  # recorded and flagged, never credited: no payment event
            outbox.add(inv, EVENT_RECEIVED, now, dedupe=f"paid:{r['txid']}:{r['vout']}",
                       afterExpiration=bool(r["late"]), paymentMethodId="BTC-CHAIN",
                       payment=_payment_json(r, "Processing"))

    def _advance_tracked(self, s, outbox: _Outbox, tip_height: int | None, now: datetime
                         ) -> tuple[set[str], set[str], set[str]]:
        """Per active payment: InvoicePaymentSettled once it has the confirmations its
        invoice needs; retire it from per-block work once deep enough (or, unconfirmed,
        after its watch window). Returns (invoices with a payment newly settled, invoices
        with confirmed active payments, invoices with a payment that had its confirmations
        and lost them to a reorg)."""
        rows = s.execute(
            select(_T.c.txid, _T.c.vout, _T.c.invoice_id, _T.c.required_confs,
                   _T.c.block_height, _T.c.settled_event, _T.c.after_monitoring,
                   _T.c.watch_until, _P.c.state, _P.c.value_sats, _P.c.address,
                   _P.c.seen_at, _P.c.late)
            .join(_P, and_(_P.c.txid == _T.c.txid, _P.c.vout == _T.c.vout))
            .where(_T.c.active == True)).all()  # noqa: E712
        settled: set[str] = set()
        confirmed: set[str] = set()
        lost: set[str] = set()
        retire: list[tuple[str, int]] = []
        to_settle = []
        for r in rows:
            confs = confirmations(tip_height, r.block_height)
            if r.block_height is not None:
                confirmed.add(r.invoice_id)
            if r.settled_event and (r.state != PaymentState.SEEN.value
                                    or confs < r.required_confs):
                lost.add(r.invoice_id)
            if (r.state == PaymentState.SEEN.value and not r.settled_event
                    and not r.after_monitoring and confs >= r.required_confs):
                to_settle.append(r)
            if r.block_height is not None and watch_done(confs, r.required_confs):
                retire.append((r.txid, r.vout))
            elif r.block_height is None and r.state != PaymentState.SEEN.value \
                    and now > r.watch_until:
                retire.append((r.txid, r.vout))
        if to_settle:
            invoices = {i.id: i for i in s.execute(select(Invoice).where(
                Invoice.id.in_({r.invoice_id for r in to_settle}))).scalars()}
            for r in to_settle:
                payment = {"txid": r.txid, "vout": r.vout, "seen_at": r.seen_at,
                           "value_sats": r.value_sats, "address": r.address}
                outbox.add(invoices[r.invoice_id], EVENT_PAYMENT_SETTLED, now,
                           dedupe=f"settled:{r.txid}:{r.vout}", afterExpiration=bool(r.late),
                           paymentMethodId="BTC-CHAIN", payment=_payment_json(payment, "Settled"))
                settled.add(r.invoice_id)
            _many(s, update(_T).where(_by_key(_T)).values(settled_event=True),
                  [{"k_txid": r.txid, "k_vout": r.vout} for r in to_settle])
        _many(s, update(_T).where(_by_key(_T)).values(active=False),
              [{"k_txid": t, "k_vout": v} for t, v in retire])
        _many(s, delete(_I).where(_I.c.txid == bindparam("k_txid")),
              [{"k_txid": t} for t in sorted({t for t, _ in retire})])
        return settled, confirmed, lost

    # -- decisions -------------------------------------------------------------------------
    def _redecide(self, s, outbox: _Outbox, invoice_ids: Iterable[str], decision_time: datetime,
                  now: datetime, tip_height: int | None, *,
                  touched_payments: set[str] = frozenset(), judge_incidents: bool = False) -> int:
        """Re-decide these invoices over their payments; store the result, queue its events.
        With `judge_incidents` (the end of a complete pass only, so a reorg and the blocks
        that heal it in one catch-up never open and close an incident) deep-reorg incidents
        open and close; otherwise only a payment after monitoring opens one.
        Returns how many invoices changed."""
        from lightning.models import STATE_ID as LN_STATE_ID
        from lightning.models import InvoiceLightning, LightningListenerState, expiry_decision_time

        ids = sorted(set(invoice_ids))
        changed = 0
        # An invoice with a BOLT11 is decided no later than the Lightning listener has
        # covered: a payment the node settled in time must not find it already Expired.
        # No listener (Lightning off, or none ever ran): nothing to wait for.
        ln_state = s.get(LightningListenerState, LN_STATE_ID) \
            if ids and getattr(self.gateway, "lightning", None) is not None else None
        ln_time = decision_time if ln_state is None else \
            expiry_decision_time(decision_time, ln_state.last_success_at)
        for part in chunks(ids, 500):
            with_bolt11 = set() if ln_time == decision_time else set(s.execute(
                select(InvoiceLightning.invoice_id).where(InvoiceLightning.invoice_id.in_(part),
                                                          InvoiceLightning.bolt11.is_not(None)))
                .scalars())
            invoices = list(s.execute(select(Invoice).where(Invoice.id.in_(part))
                                      .order_by(Invoice.id).with_for_update()).scalars())
            payments: dict[str, list] = {}
            for p in s.execute(select(_P.c.invoice_id, _P.c.txid, _P.c.vout, _P.c.value_sats,
                                      _P.c.state, _P.c.block_height, _P.c.seen_at, _P.c.method)
                               .where(_P.c.invoice_id.in_(part))).all():
                payments.setdefault(p.invoice_id, []).append(p)
            for inv in invoices:
                changed += self._decide_one(s, outbox, inv, payments.get(inv.id, []),
                                            ln_time if inv.id in with_bolt11 else decision_time,
                                            now, tip_height,
                                            inv.id in touched_payments, judge_incidents)
        return changed

    def _decide_one(self, s, outbox: _Outbox, inv: Invoice, rows: list,
                    decision_time: datetime, now: datetime, tip_height: int | None,
                    touched: bool, judge: bool) -> int:
        facts = InvoiceFacts(
            status=inv.status, additional_status=inv.additional_status, due_sats=inv.due_sats,
            amount_krw=inv.amount_krw, expires_at=inv.expires_at,
            monitoring_expires_at=inv.monitoring_expires_at, speed_policy=inv.speed_policy,
            zero_conf_limit_krw=inv.zero_conf_limit_krw, payment_tolerance=inv.payment_tolerance,
            chain_status=inv.chain_status, settled_sats=inv.settled_sats)
        credited = [r for r in rows if r.seen_at <= inv.monitoring_expires_at]
        pfacts = [PaymentFact(txid=r.txid, vout=r.vout, value_sats=r.value_sats,
                              confirmations=confirmations(tip_height, r.block_height),
                              state=r.state, seen_at=r.seen_at,
                              final=r.method == METHOD_LIGHTNING) for r in credited]
        decision = decide(facts, pfacts, decision_time)
        incident, why = incident_facts(facts, pfacts, rows, inv.incident, judge)
        visible = (decision.status.value != inv.status
                   or decision.additional_status.value != inv.additional_status
                   or decision.paid_sats != inv.paid_sats or incident != inv.incident or touched)
        chain_status = decision.chain_status and decision.chain_status.value  # the money's
        if not visible and (chain_status, decision.settled_sats) == (inv.chain_status,
                                                                       inv.settled_sats):
            return 0
        if incident != inv.incident:
            self._move_incident(s, outbox, inv, incident, why, now)
        if decision.status.value != inv.status:
            count_transition(inv, decision.status.value)  # a metric, counted on commit
        money_moved = ((decision.additional_status.value, decision.paid_sats, chain_status,
                        decision.settled_sats) != (inv.additional_status, inv.paid_sats,
                                                   inv.chain_status, inv.settled_sats))
        inv.chain_status, inv.settled_sats = chain_status, decision.settled_sats
        inv.status = decision.status.value
        inv.additional_status = decision.additional_status.value
        inv.paid_sats = decision.paid_sats
        inv.updated_at = now
        inv.version = inv.version + 1
        over = decision.additional_status == AdditionalStatus.PAID_OVER
        for event in decision.events:
            extra: dict = {}
            dedupe = None
            if event == "InvoiceProcessing":
                # Once per invoice: a payment replaced (Processing -> New, no event) and paid
                # again, or rolled back and forward by a node's crash, is the same transition.
                extra = {"overPaid": over}
            elif event == "InvoiceSettled":
                extra = {"manuallyMarked": False, "overPaid": over}
            elif event == "InvoiceInvalid":
                extra = {"manuallyMarked": False}
            elif event == "InvoiceExpired":
                extra = {"partiallyPaid": decision.paid_sats > 0}
            outbox.add(inv, event, now, dedupe=dedupe, **extra)
        if money_moved and not decision.events and inv.id not in outbox.received:
            # No status or payment event tells the ledger (e.g. an expired invoice's partial
            # payment double-spent): this one does, once per version of the invoice.
            outbox.add(inv, EVENT_MONEY_FACTS, now, dedupe=f"money:{inv.version}")
        return 1

    @staticmethod
    def _move_incident(s, outbox: _Outbox, inv: Invoice, kind: str | None, why: str,
                       now: datetime) -> None:
        """Close the open incident (if any) and open `kind` (if any), each recorded in
        invoice_incident with when and why, and told by one BusanPayInvoiceIncident event."""
        if inv.incident is not None:
            closed = s.execute(update(_X).where(_X.c.invoice_id == inv.id, _X.c.closed_at.is_(None))
                               .values(closed_at=now, closed_why=why)
                               .returning(_X.c.id, _X.c.kind, _X.c.opened_at)).first()
            if closed is not None:
                log.info("invoice %s: incident %s closed: %s", inv.id, closed.kind, why)
                outbox.add(inv, EVENT_INCIDENT, now, dedupe=f"incident:{closed.id}:closed",
                           incident=None, reason=why,
                           closedIncident={"kind": closed.kind, "since": unix(closed.opened_at),
                                           "until": unix(now)})
        inv.incident, inv.incident_since = kind, (now if kind else None)
        if kind is not None:
            opened = s.execute(_X.insert().values(invoice_id=inv.id, kind=kind, opened_at=now,
                                                  opened_why=why).returning(_X.c.id)).scalar_one()
            log.warning("invoice %s: incident %s opened: %s", inv.id, kind, why)
            outbox.add(inv, EVENT_INCIDENT, now, dedupe=f"incident:{opened}:opened",
                       incident={"kind": kind, "since": unix(now)}, reason=why,
                       closedIncident=None)

    # -- mempool and time ------------------------------------------------------------------
    def _mempool_and_time(self, start: datetime, tip, new_block: bool, summary: dict) -> bool:
        """The mempool scan and the time transitions. False (nothing written) when the tip
        moved during the scan: a payment mined in between would look gone from the mempool,
        so the caller catches up and scans again."""
        st = self._state()
        best_hash = st.best_hash
        with self.db.read() as s:
            watched = self.watched.get(s, start)
            pending = s.execute(
                select(_T.c.txid, _T.c.vout, _T.c.invoice_id, _P.c.state)
                .join(_P, and_(_P.c.txid == _T.c.txid, _P.c.vout == _T.c.vout))
                .where(_T.c.active == True, _T.c.block_hash.is_(None))).all()  # noqa: E712
        txs = self.backend.mempool_txs(watched)
        summary["mempoolTxs"] = len(txs)
        in_mempool = {tx.txid for tx in txs}
        slow_due = new_block or time.monotonic() - self._last_slow_check >= SLOW_CHECK_SECONDS
        ask = sorted({r.txid for r in pending if r.txid not in in_mempool and
                      (r.state == PaymentState.SEEN.value or slow_due)})
        statuses = {txid: self.backend.tx_status(txid) for txid in ask}
        if self._best_hash() != tip.hash:
            return False
        if slow_due:
            self._last_slow_check = time.monotonic()
        matches = outputs_paying(txs, watched)
        node_seen = {tx.txid: datetime.fromtimestamp(tx.first_seen, timezone.utc)
                     for tx in txs if tx.first_seen is not None}
        now = self.clock()
        with self.db.write() as s:
            st = self._lock_state(s)
            if st.best_hash != best_hash:
                raise Fenced("a block was processed during the mempool scan")
            invoices = self._lookup_invoices(s, {m.address for m in matches})
            matches = [m for m in matches if m.address in invoices]
            seen_at = arrival_time(start, st.covered_at)
            outbox = _Outbox()
            new, touched = self._record_payments(s, outbox, matches, invoices, txs, seen_at, now,
                                                 block_height=None, block_hash=None,
                                                 node_seen=node_seen)
            summary["payments"] += new
            for r in pending:
                status = statuses.get(r.txid)
                if status is None or status.confirmed:
                    continue  # in the mempool answer, or in a block we will process
                state = classify(status, lost_block=r.state == PaymentState.ORPHANED.value,
                                 conflict_confirmed=r.state == PaymentState.DOUBLE_SPENT.value)
                if state.value != r.state:
                    s.execute(update(_P).where(_P.c.txid == r.txid, _P.c.vout == r.vout,
                                               _P.c.block_hash.is_(None)).values(state=state.value))
                    touched.add(r.invoice_id)
            settled, _confirmed, lost = self._advance_tracked(s, outbox, st.best_height, now)
            # Time: the chain and the mempool were just scanned, so expiry and the end of
            # monitoring may be decided as of this pass's start.
            due = {r[0] for r in s.execute(select(_INV.c.id).where(or_(
                and_(_INV.c.status == "New", _INV.c.expires_at <= start),
                and_(_INV.c.status == "Processing", _INV.c.monitoring_expires_at <= start),
                # marked invoices: their chain status (the money's) still follows the time
                and_(_INV.c.chain_status == "New", _INV.c.expires_at <= start),
                and_(_INV.c.chain_status == "Processing",
                     _INV.c.monitoring_expires_at <= start))))}
            # Incidents are judged here, at the end of the catch-up: a settled invoice whose
            # payments lost the confirmations it settled on (and did not get them back in
            # this pass) opens one; an open one whose facts are gone closes.
            open_incidents = {r[0] for r in s.execute(
                select(_X.c.invoice_id).where(_X.c.closed_at.is_(None)))}
            judged = touched | settled | due | lost | open_incidents | self._pass_touched
            changed = self._redecide(s, outbox, judged, start, now, st.best_height,
                                     touched_payments=touched | settled, judge_incidents=True)
            events = outbox.flush(s)
            st.covered_at = start
            st.last_success_at = now
            st.failures = 0
            st.backoff_until = None
            st.tip_height, st.tip_hash = tip.height, tip.hash
            if st.waiting is not None:
                log.warning("watcher no longer waiting (%s)", st.waiting)
            st.waiting, st.waiting_since = None, None
            st.holder = self.holder
            st.backend = getattr(self.backend, "name", "?")[:64]
            st.updated_at = now
        summary["timeTransitions"] = True
        summary["events"] += events
        summary["invoicesChanged"] += changed
        return True


def redecide_now(gateway, s, invoice_ids: Iterable[str], now: datetime, *,
                 received: Iterable[str] = ()) -> tuple[int, int]:
    """Re-decide these invoices in the caller's transaction by the watcher's own code path
    (`Watcher._redecide`), for payments recorded outside a chain pass (Lightning): as the
    watcher's block transactions do, at its last covered time and its processed height, so
    no expiry is decided that no chain scan has covered and chain payments keep their
    confirmations. The caller has written its payment events first; `received` names the
    invoices they were for (their payment event tells the ledger: no BusanPayMoneyFacts).
    Returns (invoices changed, events written)."""
    from chain.runtime import watcher_for

    st = s.get(ChainWatcherState, STATE_ID)
    decision_time = (st.covered_at if st is not None else None) or EPOCH
    tip_height = st.best_height if st is not None else None
    outbox = _Outbox()
    outbox.received.update(received)
    ids = set(invoice_ids)
    changed = watcher_for(gateway)._redecide(s, outbox, ids, decision_time, now, tip_height,
                                             touched_payments=ids)
    return changed, outbox.flush(s)


def _payment_json(row: dict, status: str) -> dict:
    return {"id": f"{row['txid']}-{row['vout']}", "receivedDate": unix(row["seen_at"]),
            "value": format_btc(row["value_sats"]), "fee": "0", "status": status,
            "destination": row["address"]}


def _dialect_insert(s, table):
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# --------------------------------------------------------------------------- health

def health(gateway) -> dict:
    """The watcher's health for dashboards (from the shared state row: any process)."""
    with gateway.db.read() as s:
        st = s.get(ChainWatcherState, STATE_ID)
    now = gateway.clock()
    if st is None:
        return {"status": "starting", "backend": gateway.settings.chain}
    if st.failures:
        status = "down"
    elif st.waiting:
        status = "waiting"
    elif st.last_success_at is None:
        status = "starting"
    elif now - st.last_success_at > timedelta(seconds=60):
        status = "stale"
    else:
        status = "ok"
    behind = (st.tip_height - st.best_height) if st.tip_height is not None and \
        st.best_height is not None else None
    stamp = lambda moment: unix(moment) if moment else None  # noqa: E731
    return {"status": status, "backend": st.backend, "tipHeight": st.tip_height,
            "processedHeight": st.best_height, "behindBlocks": behind,
            "lastSuccess": stamp(st.last_success_at), "coveredUntil": stamp(st.covered_at),
            "lastError": st.last_error, "lastErrorTime": stamp(st.last_error_at),
            "failures": st.failures, "backoffUntil": stamp(st.backoff_until),
            "holder": st.holder, "incident": st.incident, "waiting": st.waiting,
            "waitingSince": stamp(st.waiting_since)}

