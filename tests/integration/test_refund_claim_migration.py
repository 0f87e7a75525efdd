"""Migration 0019 on a database that already holds the two merged refund designs' rows: the
shop's funded refunds become `merchant_funded`, the keys kept in clear are dropped, and it
goes back down and up again (SQLite and PostgreSQL, each in its own fresh database)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from database import UTCDateTime, make_engine
from migrations.commands import downgrade, upgrade
from tests.conftest import fresh_postgresql

PARENTS = ("0012_hooks_refund_claims", "0014_greenfield_pull_payments")
MOMENT = datetime(2026, 12, 1, tzinfo=timezone.utc)

claims = sa.table("refund_claim", *(sa.column(n) for n in (
    "id", "token_hash", "invoice_id", "store_id", "amount_sats", "status", "fee_sats",
    "decided_by")), sa.column("created_at", UTCDateTime()), sa.column("updated_at", UTCDateTime()))
pulls = sa.table("pull_payment", *(sa.column(n) for n in (
    "id", "store_id", "claim_id", "name", "description", "currency", "amount_text", "amount_krw",
    "rate", "variant", "view_token", "archived")), sa.column("created_at", UTCDateTime()))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
    else:
        yield from fresh_postgresql("busanpay_mig")


def _funded(url: str) -> dict[str, bool]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, merchant_funded FROM refund_claim")).all()
    finally:
        engine.dispose()
    return {claim_id: bool(value) for claim_id, value in rows}


def _pull_payment_columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns("pull_payment")}
    finally:
        engine.dispose()


def test_funded_refunds_are_marked_and_the_clear_keys_are_dropped_then_down_and_up(empty_url):
    for parent in PARENTS:
        upgrade(empty_url, parent)
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        for claim_id, variant in (("funded", "Custom"), ("overpaid", "OverpaidAmount")):
            conn.execute(claims.insert().values(
                id=claim_id, token_hash=claim_id * 4, invoice_id=None, store_id="s1",
                amount_sats=1000, status="open", fee_sats=0, decided_by="", created_at=MOMENT,
                updated_at=MOMENT))
            conn.execute(pulls.insert().values(
                id="pp-" + claim_id, store_id="s1", claim_id=claim_id, name="", description="",
                currency="SATS", amount_text="1000", amount_krw=0, rate="150000000",
                variant=variant, view_token="secret-" + claim_id, archived=False,
                created_at=MOMENT))
    engine.dispose()
    upgrade(empty_url)
    assert _funded(empty_url) == {"funded": True, "overpaid": False}
    assert "view_token" not in _pull_payment_columns(empty_url)
    downgrade(empty_url, PARENTS[1])
    assert "view_token" in _pull_payment_columns(empty_url)  # empty: the keys are gone
    upgrade(empty_url)
    assert _funded(empty_url) == {"funded": True, "overpaid": False}
    assert "view_token" not in _pull_payment_columns(empty_url)
