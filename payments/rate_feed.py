"""Shares polled rates between processes through the `rate_snapshot` table.

The worker (or the in-process poller) polls the sources and writes each good quote;
every web process refreshes its in-memory `RateBoard` from the table at most once a
second. So sources are polled once per deployment, never per invoice or per process.
"""
from __future__ import annotations

import logging
import threading
import time

from sqlmodel import select

from database import Database, upsert
from payments.models import RateSnapshot
from payments.rates import LockedRate, RateBoard, RateQuote, RateSourceError

log = logging.getLogger(__name__)


class RateFeed:
    def __init__(self, board: RateBoard, db: Database, *, refresh_seconds: float = 1.0):
        self.board = board
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._refreshed_at = 0.0
        self._lock = threading.Lock()

    def poll_and_store(self) -> dict:
        results = self.board.poll_once()
        good = [q for q in results.values() if isinstance(q, RateQuote)]
        if good:
            with self.db.write() as session:
                for quote in good:
                    upsert(session, RateSnapshot.__table__, {
                        "source": quote.source, "krw_per_btc": quote.krw_per_btc,
                        "fetched_at": quote.fetched_at, "exchange_time": quote.exchange_time},
                        key=["source"], update=["krw_per_btc", "fetched_at", "exchange_time"])
        for name, outcome in results.items():
            if isinstance(outcome, RateSourceError):
                log.warning("rate source %s failed: %s", name, outcome)
        return results

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed_at < self.refresh_seconds:
            return
        with self._lock:
            if now - self._refreshed_at < self.refresh_seconds:
                return
            self._refreshed_at = now
            with self.db.read() as session:
                rows = list(session.exec(select(RateSnapshot)))
            for row in rows:
                self.board.record(RateQuote(source=row.source, krw_per_btc=row.krw_per_btc,
                                            fetched_at=row.fetched_at,
                                            exchange_time=row.exchange_time))

    def current(self) -> LockedRate:
        self.refresh()
        return self.board.current()

    def health(self) -> list[dict]:
        self.refresh()
        return self.board.health()
