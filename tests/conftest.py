"""Shared fixtures: a fresh database per test run (SQLite always, PostgreSQL when reachable),
the app, its client, a controllable clock and small helpers ("a merchant")."""
from __future__ import annotations

import os
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

# bitcoinlib writes its data dir on import: keep it out of $HOME for the whole run.
_BCL = tempfile.mkdtemp(prefix="busanpay-bcl-")
os.environ.setdefault("BCL_DATA_DIR", _BCL)

PG_ADMIN_URL = os.environ.get("BUSANPAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class FakeClock:
    """A clock tests move by hand; aware UTC."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason (shown in the skip)."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as err:  # any failure means: skip the PostgreSQL half, say why
        return f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(err).__name__}: {err}); " \
               "set BUSANPAY_TEST_PG to run the PostgreSQL half"


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("db") / f"busanpay-{uuid.uuid4().hex[:8]}.sqlite3"
    url = f"sqlite:///{path}"
    from migrations.commands import upgrade

    upgrade(url)
    return url


def fresh_postgresql(prefix: str = "busanpay_test"):
    """A new, empty PostgreSQL database (skips when none is reachable); dropped afterwards."""
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgresql_url():
    from migrations.commands import upgrade

    for url in fresh_postgresql():
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def wipe(db_url: str) -> None:
    from sqlalchemy import text
    from sqlmodel import SQLModel

    import models_registry  # noqa: F401
    from database import make_engine

    engine = make_engine(db_url)
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                              + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_config(db_url, tmp_path, clock) -> dict:
    return {
        "instance_path": str(tmp_path / "instance"),
        "database_url": db_url,
        "clock": clock,
        "rate_sources": "fixed:150000000",
        "inprocess_worker": False,
        # On-chain only unless a test turns Lightning on ({"lightning": "demo"}): the
        # suite's invoices, events and timings stay those of the chain it is about.
        # BUSANPAY_TEST_LIGHTNING=demo runs the whole suite with the demo node on.
        "lightning": os.environ.get("BUSANPAY_TEST_LIGHTNING", ""),
        "TESTING": True,
    }


@pytest.fixture
def app(app_config, db_url):
    from app import create_app

    application = create_app(app_config)
    yield application
    application.extensions["busanpay"].close()
    wipe(db_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def gateway(app):
    return app.extensions["busanpay"]


def make_merchant(app, *, name="Haeundae Coffee", permissions=None, payout_account=True, **store):
    """A store and an API key for it: returns (store_id, token). The store has an approved
    bank account unless `payout_account=False` (settlement skips a store without one)."""
    from merchants.service import ALL_PERMISSIONS, create_store, issue_api_key
    from settlement.payouts import set_payout_account

    gateway = app.extensions["busanpay"]
    with gateway.db.write() as session:
        created = create_store(session, name=name, **store)
        issued = issue_api_key(session, created.id, permissions or ALL_PERMISSIONS)
        if payout_account:
            set_payout_account(session, created.id, bank_name="BNK Busan Bank",
                               bank_account="101-2020-0001", account_holder=name)
    return created.id, issued.token


@pytest.fixture
def merchant(app):
    return make_merchant(app)


def auth(token: str) -> dict:
    return {"Authorization": f"token {token}"}
