"""PostgreSQL's one-statement invoice creation and its pool of addresses derived ahead."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from payments.address_pool import pool_size
from payments.addresses import DEMO_TREASURY_KEY, ExtendedKey
from payments.invoice_json import outbox_row
from payments.invoice_request import parse_invoice_request
from payments.models import ExtendedKeyRecord, Invoice, InvoiceEvent, KeyAddress
from payments.service import allocate_index

ROOT = Path(__file__).resolve().parents[2]
DEMO = ExtendedKey.parse(DEMO_TREASURY_KEY, "regtest")


@pytest.fixture(params=["postgresql"])
def db_url(request):  # the pool is PostgreSQL's path; SQLite derives inside its transaction
    return request.getfixturevalue("postgresql_url")


@pytest.fixture
def service(app):
    return app.extensions["busanpay"].invoices


@pytest.fixture
def quote():
    return parse_invoice_request({"amount": "15000"}, max_krw=10**8)


def cursor(gateway, key_id):
    with gateway.db.read() as s:
        record = s.get(ExtendedKeyRecord, key_id)
        rows = s.execute(select(KeyAddress.key_index, KeyAddress.address)
                         .where(KeyAddress.key_id == key_id)
                         .order_by(KeyAddress.key_index)).all()
    return record.next_index, record.derived_until, rows


def invoice_indexes(gateway):
    with gateway.db.read() as s:
        return [tuple(r) for r in s.execute(select(Invoice.key_index, Invoice.address)
                                            .order_by(Invoice.key_index))]


def test_a_keys_first_invoice_fills_its_pool_and_takes_index_zero(gateway, service, merchant, quote):
    invoice, _ = service.create(merchant[0], quote)
    gateway.invoices.address_pool.drain()
    assert (invoice.key_index, invoice.address) == (0, DEMO.address(0))
    next_index, derived_until, rows = cursor(gateway, invoice.key_id)
    assert next_index == 1
    assert derived_until >= pool_size(0)  # the waiting refill admitted a whole pool
    assert [index for index, _ in rows] == list(range(len(rows)))
    assert all(DEMO.address(index) == address for index, address in rows)


def test_creation_keeps_indexes_consecutive_across_many_refills(gateway, service, merchant, quote):
    for _ in range(120):  # the pool grows from 20 ahead; many refills on the way
        service.create(merchant[0], quote)
    gateway.invoices.address_pool.drain()
    created = invoice_indexes(gateway)
    assert [index for index, _ in created] == list(range(120))
    assert all(DEMO.address(index) == address for index, address in created)
    next_index, derived_until, rows = cursor(gateway, service.ensure_treasury_key())
    assert next_index == 120 and derived_until > 120
    assert [index for index, _ in rows] == list(range(len(rows)))  # no holes, no repeats


def test_an_admitted_index_whose_pooled_address_is_not_visible_is_derived_on_the_spot(
        gateway, service, merchant, quote):
    service.create(merchant[0], quote)
    gateway.invoices.address_pool.drain()
    key_id = service.ensure_treasury_key()
    # What a creation whose snapshot predates a refill's commit meets: the cursor admits
    # indexes whose rows it cannot see.
    with gateway.db.write() as s:
        s.execute(delete(KeyAddress).where(KeyAddress.key_id == key_id, KeyAddress.key_index >= 1))
        s.execute(update(ExtendedKeyRecord).where(ExtendedKeyRecord.id == key_id)
                  .values(derived_until=10))
    invoice, _ = service.create(merchant[0], quote)
    assert (invoice.key_index, invoice.address) == (1, DEMO.address(1))
    with gateway.db.read() as s:
        stored = s.get(Invoice, invoice.id)
        events = s.execute(select(InvoiceEvent.event_type)
                           .where(InvoiceEvent.invoice_id == invoice.id)).scalars().all()
    assert (stored.key_index, stored.address) == (1, DEMO.address(1))
    assert events == ["InvoiceCreated"]


def test_a_creation_that_fails_gives_its_index_back(gateway, service, merchant, quote):
    first, _ = service.create(merchant[0], quote)
    gateway.invoices.address_pool.drain()
    pool = service.address_pool
    clash = first.model_copy()  # same invoice id: the INSERT fails inside the statement
    with pytest.raises(IntegrityError):
        with gateway.db.one_shot() as connection:
            pool.create_invoice(connection, clash,
                               outbox_row(clash, "InvoiceCreated", clash.created_at))
    next_index, _, _ = cursor(gateway, first.key_id)
    assert next_index == 1  # the UPDATE of the same statement was undone
    second, _ = service.create(merchant[0], quote)
    assert second.key_index == 1


def test_a_background_refill_admits_only_rows_an_earlier_refill_wrote(gateway, service, merchant,
                                                                      quote):
    service.create(merchant[0], quote)
    pool = service.address_pool
    pool.drain()
    key_id = service.ensure_treasury_key()
    next_index, admitted, rows = cursor(gateway, key_id)
    written = len(rows)
    assert admitted < written  # rows run a pool ahead of what is admitted
    with gateway.db.write() as s:  # use up the admitted indexes, as creations would
        s.execute(update(ExtendedKeyRecord).where(ExtendedKeyRecord.id == key_id)
                  .values(next_index=admitted - 1))
    assert pool.refill(key_id, wait=False) > 0
    _, admitted_after, rows_after = cursor(gateway, key_id)
    assert admitted_after <= written  # nothing this refill wrote is admitted yet
    assert len(rows_after) > written


def test_parallel_refills_write_each_address_once(gateway, service, merchant, quote):
    service.create(merchant[0], quote)
    pool = service.address_pool
    pool.drain()
    key_id = service.ensure_treasury_key()
    with gateway.db.write() as s:  # the cursor jumped ahead (e.g. the demo seeder)
        for _ in range(500):
            allocate_index(s, key_id)
    with ThreadPoolExecutor(max_workers=6) as workers:
        added = list(workers.map(lambda _: pool.refill(key_id, wait=True), range(6)))
    assert sum(1 for n in added if n) == 1  # one derived; the others found it done
    next_index, admitted, rows = cursor(gateway, key_id)
    assert admitted == next_index + pool_size(next_index)
    assert len({index for index, _ in rows}) == len(rows)
    assert all(DEMO.address(index) == address for index, address in rows)
    invoice, _ = service.create(merchant[0], quote)
    assert invoice.key_index == next_index


def test_eight_threads_through_refills_leave_no_gap_and_no_repeat(gateway, service, merchant,
                                                                 quote):
    with ThreadPoolExecutor(max_workers=8) as workers:
        list(workers.map(lambda _: service.create(merchant[0], quote), range(300)))
    service.address_pool.drain()
    created = invoice_indexes(gateway)
    assert [index for index, _ in created] == list(range(300))
    assert all(DEMO.address(index) == address for index, address in created)


CREATOR = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, os.environ["ROOT"])
    from app import create_app
    from payments.invoice_request import parse_invoice_request
    app = create_app({"database_url": os.environ["DB_URL"], "rate_sources": "fixed:150000000",
                      "inprocess_worker": False, "instance_path": os.environ["INSTANCE"]})
    service = app.extensions["busanpay"].invoices
    quote = parse_invoice_request({"amount": "15000"}, max_krw=10**8)
    def loop():
        while True:
            service.create(os.environ["STORE"], quote)
    for _ in range(4):
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
""")


def test_creators_killed_at_random_moments_leave_consecutive_indexes_each_with_its_event(
        gateway, merchant, db_url, tmp_path):
    seed = int(os.environ.get("BUSANPAY_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    env = dict(os.environ, ROOT=str(ROOT), DB_URL=db_url, STORE=merchant[0],
               INSTANCE=str(tmp_path / "instance"))
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", CREATOR], env=env, stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "ready", f"seed {seed}"
        time.sleep(rng.uniform(0.05, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with gateway.db.read() as s:
        indexes = s.execute(select(Invoice.key_index).order_by(Invoice.key_index)).scalars().all()
        next_index = s.execute(select(func.max(ExtendedKeyRecord.next_index))).scalar()
        without_event = s.execute(
            select(func.count()).select_from(Invoice).where(~Invoice.id.in_(
                select(InvoiceEvent.invoice_id)))).scalar()
    assert indexes, f"seed {seed}: no invoice was created"
    assert indexes == list(range(next_index)), f"seed {seed}"
    assert without_event == 0, f"seed {seed}"


def test_after_the_database_drops_its_connections_one_request_gets_503_and_the_next_succeeds(
        app, client, merchant, db_url):
    import psycopg

    from tests.conftest import PG_ADMIN_URL, auth

    store_id, token = merchant
    path = f"/api/v1/stores/{store_id}/invoices"
    assert client.post(path, json={"amount": "15000"}, headers=auth(token)).status_code == 200
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:  # what a restart does
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    statuses = []
    for _ in range(3):
        response = client.post(path, json={"amount": "15000"}, headers=auth(token))
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.get_json()["code"] == "database-unavailable"
    assert statuses in ([503, 200, 200], [200, 200, 200]), statuses
    assert statuses[0] == 503  # the pooled connection was dead and nothing pinged it


def test_vacuuming_the_key_cursors_clears_their_dead_versions_at_most_once_a_second(
        gateway, service, merchant, quote):
    from sqlalchemy import text

    service.create(merchant[0], quote)
    pool = service.address_pool
    pool.drain()
    key_id = service.ensure_treasury_key()

    def vacuum_stats():
        with gateway.db.one_shot() as c:
            return c.execute(text("SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables "
                                  "WHERE relname = 'extended_key'")).one()

    # Updates HOT cannot prune away: a snapshot held open pins every version.
    pinning = gateway.db.engine.execution_options(isolation_level="REPEATABLE READ")
    with pinning.connect() as pin, pin.begin():
        pin.execute(text("SELECT 1 FROM extended_key"))
        for _ in range(400):
            with gateway.db.one_shot() as c:
                c.execute(update(ExtendedKeyRecord).where(ExtendedKeyRecord.id == key_id)
                          .values(next_index=ExtendedKeyRecord.next_index))
    before, _ = vacuum_stats()
    pool._vacuumed_at = float("-inf")
    assert pool.vacuum_cursors() is True
    assert pool.vacuum_cursors() is False  # not again within the second
    after, dead = vacuum_stats()
    assert (after, dead) == (before + 1, 0)


def test_an_idempotent_creation_that_finds_the_pool_empty_after_waiting_for_the_key_row_completes(
        gateway, service, merchant, quote):
    import threading

    from sqlalchemy import text

    service.create(merchant[0], quote)
    service.address_pool.drain()
    key_id = service.ensure_treasury_key()
    done = {}

    def create():
        done["invoice"], _ = service.create(merchant[0], quote, idempotency_key="k-1",
                                            request_hash="h", render=lambda inv: {"id": inv.id})

    # Another transaction empties the pool and holds the key's row; the creation's UPDATE
    # waits for it, then finds nothing to take, while its own transaction is still open
    # and a refill needs that same row.
    with gateway.db.engine.connect() as holder, holder.begin():
        holder.execute(text("UPDATE extended_key SET derived_until = next_index WHERE id = :k"),
                       {"k": key_id})
        worker = threading.Thread(target=create, daemon=True)
        worker.start()
        time.sleep(0.3)
    worker.join(timeout=20)
    assert not worker.is_alive(), "the creation deadlocked against its own refill"
    assert done["invoice"].key_index == 1
    again, replayed = service.create(merchant[0], quote, idempotency_key="k-1", request_hash="h")
    assert again.id == done["invoice"].id and replayed == {"id": again.id}
