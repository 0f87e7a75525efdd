"""The store-code migration gives every existing store a unique, valid code (SQLite and
PostgreSQL), and the back office shows the code."""
from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import text

from database import make_engine
from migrations.commands import upgrade
from tests.conftest import PG_ADMIN_URL, _pg_reachable

CODE = re.compile(r"^[ACEFGHKMNPRTWXY34679]{6}$")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"busanpay_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_existing_stores_get_unique_codes_when_the_migration_runs(empty_db):
    upgrade(empty_db, "0005_accounts")
    engine = make_engine(empty_db)
    try:
        with engine.begin() as conn:
            for n in range(200):
                conn.execute(text(
                    "INSERT INTO store (id, name, district, category, settlement_mode, "
                    "speed_policy, zero_conf_limit_krw, payment_tolerance, default_language, "
                    "created_at, archived) VALUES (:id, :name, 'jung-gu', 'retail', 'krw', "
                    "'MediumSpeed', 0, '0', 'ko', '2026-01-01 00:00:00', false)"),
                    {"id": f"store{n:03d}", "name": f"Shop {n}"})
        upgrade(empty_db, "heads")
        with engine.connect() as conn:
            codes = [row[0] for row in conn.execute(text("SELECT pos_code FROM store"))]
            assert len(codes) == 200 == len(set(codes))
            assert all(CODE.match(code) for code in codes)
            with pytest.raises(Exception):  # the database keeps them unique
                conn.execute(text("UPDATE store SET pos_code = :c WHERE id = 'store001'"),
                             {"c": codes[0]})
    finally:
        engine.dispose()


def test_the_owner_sees_the_store_code_and_the_greenfield_store_id(app, client):
    from accounts.service import create_user
    from merchants.models import Store
    from tests.conftest import make_merchant
    from tests.integration.test_accounts_login import csrf_token

    store_id, _ = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email="owner@cafe.kr", password="correct horse 1",
                    store_id=store_id)
        code = s.get(Store, store_id).pos_code
    client.post("/login", data={"email": "owner@cafe.kr", "password": "correct horse 1",
                                "csrf_token": csrf_token(client, "/login")})
    page = client.get("/merchant/?lang=en").get_data(as_text=True)
    assert f'<code class="store-code" translate="no">{code}</code>' in page
    assert store_id in page
