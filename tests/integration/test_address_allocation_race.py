"""Address allocation under parallel invoice creation."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from payments.invoice_request import parse_invoice_request
from payments.models import Invoice


@pytest.fixture(params=["postgresql"])
def db_url(request):  # the race that matters is on PostgreSQL; SQLite serialises writers
    return request.getfixturevalue("postgresql_url")


def test_eight_threads_creating_500_invoices_get_500_distinct_consecutive_addresses(app, merchant):
    store_id, _ = merchant
    service = app.extensions["busanpay"].invoices
    request = parse_invoice_request({"amount": "15000"}, max_krw=10**8)

    def create(_):
        invoice, _ = service.create(store_id, request)
        return invoice.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(500)))
    assert len(set(ids)) == 500
    with app.extensions["busanpay"].db.read() as session:
        rows = session.exec(select(Invoice.key_index, Invoice.address)).all()
    assert sorted(r[0] for r in rows) == list(range(500))
    assert len({r[1] for r in rows}) == 500
    # and each address is the one its index derives to
    from payments.addresses import DEMO_TREASURY_KEY, ExtendedKey

    demo = ExtendedKey.parse(DEMO_TREASURY_KEY, "regtest")
    assert all(demo.address(index) == address for index, address in rows)


def test_parallel_repeats_of_one_idempotency_key_create_one_invoice(app, merchant):
    store_id, _ = merchant
    service = app.extensions["busanpay"].invoices
    request = parse_invoice_request({"amount": "15000"}, max_krw=10**8)

    def create(_):
        invoice, _ = service.create(store_id, request, idempotency_key="same",
                                    request_hash="h", render=lambda inv: {"id": inv.id})
        return invoice.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(create, range(16)))
    assert len(ids) == 1
    with app.extensions["busanpay"].db.read() as session:
        assert len(session.exec(select(Invoice)).all()) == 1
