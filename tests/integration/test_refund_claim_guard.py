"""Refund claims stand side by side, but the database allows at most one approved claim per
invoice."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from settlement.models import RefundClaim
from tests.conftest import auth


def claim(invoice_id: str, store_id: str, n: int, status: str) -> RefundClaim:
    return RefundClaim(id=f"claim-{n}", token_hash=f"{n:064d}", invoice_id=invoice_id,
                       store_id=store_id, amount_sats=2500, status=status)


def test_claims_stand_side_by_side_but_a_second_approved_claim_is_refused_by_the_database(
        client, merchant, gateway):
    store_id, token = merchant
    invoice = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 1000},
                          headers=auth(token)).get_json()
    with gateway.db.write() as s:
        s.add(claim(invoice["id"], store_id, 1, "sent"))
        s.add(claim(invoice["id"], store_id, 2, "open"))
        s.add(claim(invoice["id"], store_id, 3, "submitted"))
        s.add(claim(invoice["id"], store_id, 4, "approved"))
    with pytest.raises(IntegrityError):
        with gateway.db.write() as s:
            s.add(claim(invoice["id"], store_id, 5, "approved"))
    with gateway.db.read() as s:
        assert {c.id for c in s.query(RefundClaim).all()} == {"claim-1", "claim-2", "claim-3",
                                                              "claim-4"}
