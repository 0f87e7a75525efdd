"""The database allows at most one active refund claim per invoice."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from settlement.models import RefundClaim
from tests.conftest import auth


def claim(invoice_id: str, store_id: str, n: int, status: str) -> RefundClaim:
    return RefundClaim(id=f"claim-{n}", token_hash=f"{n:064d}", invoice_id=invoice_id,
                       store_id=store_id, amount_sats=2500, status=status)


def test_a_second_active_claim_for_one_invoice_is_refused_by_the_database(client, merchant, gateway):
    store_id, token = merchant
    invoice = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 1000},
                          headers=auth(token)).get_json()
    with gateway.db.write() as s:
        s.add(claim(invoice["id"], store_id, 1, "sent"))
        s.add(claim(invoice["id"], store_id, 2, "open"))
    with pytest.raises(IntegrityError):
        with gateway.db.write() as s:
            s.add(claim(invoice["id"], store_id, 3, "submitted"))
    with gateway.db.read() as s:
        assert {c.id for c in s.query(RefundClaim).all()} == {"claim-1", "claim-2"}
