"""Demo buttons under the checkout page: ``/i/<id>/demo`` (only on the demo chain).

"Pay this invoice", "pay half" and "mine a block" act on the offline demo chain, so a
demo needs no wallet and no node. Everywhere else these paths are 404.
"""
from __future__ import annotations

from flask import (Blueprint, abort, current_app, redirect, render_template, request,
                   url_for)

from chain import demo_ops
from chain.runtime import demo_chain_for, is_demo
from payments.service import InvoiceNotFound

bp = Blueprint("chain_demo", __name__, template_folder="templates")


def _gateway():
    gateway = current_app.extensions["busanpay"]
    if not is_demo(gateway):
        abort(404)
    return gateway


@bp.get("/i/<invoice_id>/demo")
def page(invoice_id: str):
    gateway = _gateway()
    try:
        invoice, remaining = demo_ops.still_due(gateway, invoice_id)
    except InvoiceNotFound:
        abort(404)
    if invoice.due_sats == 0 and invoice.status == "New":
        remaining = demo_ops.TOPUP_DEMO_SATS
    chain = demo_chain_for(gateway)
    html = render_template("chain_demo/demo.html", invoice=invoice, remaining=remaining,
                           tip=chain.tip().height, message=request.args.get("done"),
                           error=request.args.get("error"),
                           checkout_url=f"/i/{invoice.id}")
    return html, 200, {"Cache-Control": "no-store"}


@bp.post("/i/<invoice_id>/demo/pay")
def pay(invoice_id: str):
    gateway = _gateway()
    try:
        invoice, remaining = demo_ops.still_due(gateway, invoice_id)
    except InvoiceNotFound:
        abort(404)
    if invoice.due_sats == 0:
        remaining = demo_ops.TOPUP_DEMO_SATS
    sats = remaining // 2 if request.form.get("part") == "half" else remaining
    try:
        txid, sats = demo_ops.pay(gateway, invoice_id, sats)
    except ValueError as err:  # nothing due, dust, the demo payer ran dry
        return redirect(url_for("chain_demo.page", invoice_id=invoice_id, error=str(err)), 303)
    _see_it_now(gateway)
    return redirect(url_for("chain_demo.page", invoice_id=invoice_id,
                            done=f"paid {sats} sats in {txid}"), 303)


@bp.post("/i/<invoice_id>/demo/mine")
def mine(invoice_id: str):
    gateway = _gateway()
    (block_hash,) = demo_chain_for(gateway).mine(1)
    _see_it_now(gateway)
    return redirect(url_for("chain_demo.page", invoice_id=invoice_id,
                            done=f"mined block {block_hash}"), 303)


def _see_it_now(gateway) -> None:
    """One watcher pass before the redirect, so the page shows the status the payment or
    block just caused, not the one from before it (the background pass may be a second off)."""
    from chain.runtime import watcher_for

    watcher_for(gateway).run_once(force=True, wait=5)


def register(app) -> None:
    """Add the demo pages to `app` (idempotent)."""
    if "chain_demo" not in app.blueprints:
        app.register_blueprint(bp)
