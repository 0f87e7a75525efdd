"""Posting races on PostgreSQL (SQLite serialises writers): each entry posts once."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from settlement.ledger import Entry, Line, balance, post
from settlement.models import JournalEntry, Posting
from tests.integration.test_settlement_support import (balance_of, new_store, settled_invoice,
                                                       sgateway)  # noqa: F401


@pytest.fixture(params=["postgresql"])
def db_url(request):  # the race that matters is on PostgreSQL; SQLite serialises writers
    return request.getfixturevalue("postgresql_url")


def test_two_threads_posting_the_same_entry_post_it_once(sgateway):
    barrier = threading.Barrier(8)
    entry = Entry("race:1", "test", [Line("a:krw", "KRW", 5), Line("b:krw", "KRW", -5)])

    def attempt(_):
        with sgateway.db.write() as session:
            barrier.wait()
            return post(session, entry)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert results.count(True) == 1
    with sgateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(Posting)).scalar_one() == 2
        assert balance(session, "a:krw") == 5


def test_two_posting_workers_at_once_post_each_invoice_once(app, sgateway):
    from settlement.posting_job import post_pending

    store = new_store(app)
    for _ in range(40):
        settled_invoice(sgateway, store, 10_000)
    barrier = threading.Barrier(4)

    def worker(_):
        barrier.wait()
        return post_pending(sgateway, limit=1000)["entries"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        posted = sum(pool.map(worker, range(4)))
    assert posted == 40
    assert balance_of(sgateway, f"merchant_payable:{store}") == -40 * 9_900
    with sgateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(JournalEntry)).scalar_one() == 40
