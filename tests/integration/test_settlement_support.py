"""Shared helpers and fixtures for the settlement tests (no tests here).

Settled invoices are made without the watcher: an invoice is created through the
invoice service, then its status and paid sats are written directly and the outbox
event recorded with `payments.service.record_event`, as the watcher will.
"""
from __future__ import annotations

import pytest

from tests.conftest import make_merchant

EVENT_FOR = {"Settled": "InvoiceSettled", "Expired": "InvoiceExpired", "Invalid": "InvoiceInvalid"}


@pytest.fixture
def sgateway(app, tmp_path):
    """The gateway with settlement installed and a test configuration (bank file rail)."""
    from settlement.config import SettlementConfig
    from settlement.install import install

    install(app)
    gateway = app.extensions["busanpay"]
    gateway.extras["settlement_config"] = SettlementConfig(payout_rail="bankfile", min_payout_krw=1000,
                                                           auto_settlement=False)
    gateway.extras.pop("payout_rails", None)
    return gateway


def create_invoice(gateway, store_id: str, amount_krw: int = 15_000) -> str:
    from payments.invoice_request import parse_invoice_request

    request = parse_invoice_request({"amount": str(amount_krw), "currency": "KRW"}, max_krw=10**9)
    invoice, _ = gateway.invoices.create(store_id, request)
    return invoice.id


def set_invoice(gateway, invoice_id: str, *, status: str = "Settled", paid_sats: int | None = None,
                additional: str = "None", incident: str | None = None, event: str | None = None,
                dedupe: str | None = None, chain_status: str | None = None,
                settled_sats: int | None = None) -> None:
    """Write the facts the watcher would, and the outbox event, in one transaction."""
    from payments.models import Invoice
    from payments.service import record_event

    with gateway.db.write() as session:
        invoice = session.get(Invoice, invoice_id)
        invoice.status, invoice.additional_status = status, additional
        invoice.paid_sats = invoice.due_sats if paid_sats is None else paid_sats
        invoice.incident = incident
        invoice.chain_status = chain_status
        if settled_sats is not None or status == "Settled" and invoice.settled_sats is None:
            invoice.settled_sats = invoice.paid_sats if settled_sats is None else settled_sats
        invoice.updated_at = gateway.clock()
        invoice.version += 1
        session.add(invoice)
        session.flush()
        kind = event or EVENT_FOR.get(status)
        if kind:
            record_event(session, invoice, kind, gateway.clock(), dedupe=dedupe)


def settled_invoice(gateway, store_id: str, amount_krw: int = 15_000, **kw) -> str:
    invoice_id = create_invoice(gateway, store_id, amount_krw)
    set_invoice(gateway, invoice_id, **kw)
    return invoice_id


def post_all(gateway) -> dict:
    from settlement.posting_job import run_once

    return run_once(gateway)


def balance_of(gateway, code: str) -> int:
    from settlement.ledger import balance

    with gateway.db.read() as session:
        return balance(session, code)


def new_store(app, name="Jagalchi Fish", **kw) -> str:
    return make_merchant(app, name=name, **kw)[0]
