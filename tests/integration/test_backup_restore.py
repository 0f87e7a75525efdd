"""Backups that restore: `flask db backup` of a live demo city while a thread keeps creating
invoices, `flask db restore` into a fresh database, and the restored city passes
`ledger check` and `city rollup --verify` (SQLite's online backup API; PostgreSQL's pg_dump)."""
from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from sqlalchemy import bindparam, create_engine, text

from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def fresh_url(db_url, tmp_path):
    """An empty database of the same kind as db_url, dropped afterwards."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        return
    name = f"busanpay_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield db_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(app, *args) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=list(args))
    return result.exit_code, result.output


def test_a_backup_taken_while_invoices_are_created_restores_to_a_consistent_city(
        app, gateway, tmp_path, fresh_url, app_config):
    from app import create_app
    from demo_data import seed
    from payments.invoice_request import parse_invoice_request
    from settlement.install import install

    install(app)
    seed(gateway, days=3, invoices=300, rng_seed=7)
    with gateway.db.read() as session:
        store_id = session.execute(text("SELECT id FROM store ORDER BY id LIMIT 1")).scalar()
    request = parse_invoice_request({"amount": "15000"}, max_krw=10**9)
    stop, created, errors = threading.Event(), [], []

    def keep_creating():
        while not stop.is_set():
            try:
                created.append(gateway.invoices.create(store_id, request)[0].id)
            except Exception as err:  # the test fails on any error below
                errors.append(err)
                return

    worker = threading.Thread(target=keep_creating)
    worker.start()
    try:
        while len(created) < 20:
            threading.Event().wait(0.02)
        path = tmp_path / "backups" / "city.backup"
        code, output = cli(app, "db", "backup", str(path))
        during = len(created)
        while len(created) < during + 10:  # still serving after the backup
            threading.Event().wait(0.02)
    finally:
        stop.set()
        worker.join()
    assert code == 0, output
    assert not errors, errors
    answer = json.loads(output)
    assert answer["backup"] == str(path) and answer["bytes"] == path.stat().st_size > 0
    assert answer["kind"] == ("sqlite" if fresh_url.startswith("sqlite") else "pg_dump")
    assert cli(app, "db", "backup", str(path))[0] != 0  # never overwrites a backup

    restored = create_app({**app_config, "database_url": fresh_url,
                           "instance_path": str(tmp_path / "restored-instance")})
    try:
        install(restored)
        code, output = cli(restored, "db", "restore", str(path))
        assert code == 0, output
        engine = create_engine(fresh_url)
        with engine.connect() as conn:
            invoices = conn.execute(text("SELECT count(*) FROM invoice")).scalar()
            live = conn.execute(text("SELECT count(*) FROM invoice WHERE id IN :ids").bindparams(
                bindparam("ids", expanding=True)), {"ids": created}).scalar()
            events = conn.execute(text(
                "SELECT count(*) FROM invoice_event WHERE event_type = 'InvoiceCreated'")).scalar()
            key = conn.execute(text(
                "SELECT k.next_index, count(i.id), min(i.key_index), max(i.key_index), "
                "count(DISTINCT i.key_index) FROM extended_key k JOIN invoice i "
                "ON i.key_id = k.id WHERE k.owner = 'treasury' GROUP BY k.next_index")).one()
        engine.dispose()
        # One consistent moment: some of the live invoices, each with its event, and the
        # treasury key's cursor exactly past the indexes its invoices took.
        assert 20 <= live < len(created)
        assert events == invoices
        next_index, count, low, high, distinct = key
        assert (low, high, distinct, next_index) == (0, count - 1, count, count)

        code, output = cli(restored, "ledger", "check")
        assert code == 0, output
        assert json.loads(output)["ok"] is True
        code, output = cli(restored, "city", "rollup", "--verify")
        assert code == 0, output
        assert json.loads(output)["differences"] == 0
        # The restored city takes new invoices where the old one stood.
        new = restored.extensions["busanpay"].invoices.create(store_id, request)[0]
        assert new.key_index == count
    finally:
        restored.extensions["busanpay"].close()


def test_a_restore_refuses_a_database_that_has_tables(app, tmp_path):
    path = tmp_path / "city.backup"
    assert cli(app, "db", "backup", str(path))[0] == 0
    code, output = cli(app, "db", "restore", str(path))
    assert code != 0 and "has tables already" in output


def test_a_restore_refuses_a_file_that_is_no_backup(app, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a backup")
    code, output = cli(app, "db", "restore", str(junk))
    assert code != 0 and "neither a SQLite database nor a pg_dump" in output
