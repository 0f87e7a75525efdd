"""What the demo CLI and the demo page do on the demo chain (shared by both)."""
from __future__ import annotations

from sqlmodel import select

from chain.runtime import demo_chain_for
from payments.models import Invoice, Payment
from payments.service import InvoiceNotFound

#: What "pay" sends to a top-up invoice (nothing is due) from the demo page.
TOPUP_DEMO_SATS = 10_000


def still_due(gateway, invoice_id: str) -> tuple[Invoice, int]:
    """The invoice and the sats still due: due minus the counting payments (0 if covered)."""
    with gateway.db.read() as s:
        invoice = s.get(Invoice, invoice_id) if invoice_id and len(invoice_id) <= 32 else None
        if invoice is None:
            raise InvoiceNotFound(invoice_id)
        paid = sum(p.value_sats for p in s.exec(select(Payment).where(
            Payment.invoice_id == invoice_id, Payment.state == "seen")))
    return invoice, max(0, invoice.due_sats - paid)


def pay(gateway, invoice_id: str, sats: int | None = None) -> tuple[str, int]:
    """Pay the invoice's address from the demo payer: `sats`, or what is still due.
    Returns (txid, sats paid)."""
    chain = demo_chain_for(gateway)
    invoice, due = still_due(gateway, invoice_id)
    amount = sats if sats is not None else due
    if amount <= 0:
        raise ValueError("nothing is due on this invoice: give an amount (--sats N)")
    return chain.pay(invoice.address, amount), amount
