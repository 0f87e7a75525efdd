"""Lightning commands: `flask --app app lightning status|listen` and
`flask --app app demo pay-lightning INVOICE_ID` (the demo node only)."""
from __future__ import annotations

import json

import click
from flask import Flask

from lightning.backend import MSAT_PER_SAT


def node_status(gateway) -> dict:
    """The node's reachability, channel balance and inbound liquidity, and the listener's
    health (no secrets: the URL's credentials live in other variables)."""
    from lightning.listener import health
    from settings import lightning_spec

    if gateway.lightning is None:
        return {"backend": None, "enabled": False, "reachable": False}
    kind, url = lightning_spec(gateway.settings.lightning)
    info = gateway.lightning.node_info()
    return {"backend": info.backend, "enabled": True, "url": url or None,
            "reachable": info.reachable, "alias": info.alias, "nodeId": info.node_id,
            "blockHeight": info.block_height,
            "channelBalanceSats": str(info.local_balance_msat // MSAT_PER_SAT),
            "channelBalanceMsat": str(info.local_balance_msat),
            "inboundLiquiditySats": str(info.inbound_msat // MSAT_PER_SAT),
            "inboundLiquidityMsat": str(info.inbound_msat),
            "error": info.error, "listener": health(gateway)}


def register(app: Flask) -> None:
    gateway = lambda: app.extensions["busanpay"]  # noqa: E731

    @app.cli.group("lightning")
    def lightning_group():
        """The Lightning node: status, the settlement listener."""

    @lightning_group.command("status")
    def lightning_status():
        """Print the node's status as JSON (exit 1 when it cannot be reached)."""
        status = node_status(gateway())
        click.echo(json.dumps(status, indent=2))
        if status["enabled"] and not status["reachable"]:
            raise SystemExit(1)

    @lightning_group.command("listen")
    @click.option("--seconds", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
                  help="follow the node's settlements this long")
    def lightning_listen(seconds):
        """Record the node's settlements once (the worker does it continuously)."""
        from lightning.listener import Listener

        gw = gateway()
        if gw.lightning is None:
            raise click.ClickException("Lightning is off (BUSANPAY_LIGHTNING is empty)")
        summary = Listener(gw, gw.lightning).run_once(seconds)
        click.echo(json.dumps(summary))
        if not summary["ok"]:
            raise SystemExit(2)

    from chain.cli import demo_commands

    @demo_commands(app).command("pay-lightning")
    @click.argument("invoice_id")
    @click.option("--bolt11", default=None,
                  help="pay this BOLT11 of the demo node instead (e.g. a superseded one)")
    def demo_pay_lightning(invoice_id, bolt11):
        """Pay the invoice's current BOLT11 on the demo node; prints the payment hash."""
        from lightning.demo_node import DemoLightningNode, DemoRefused
        from lightning.invoices import current_lightning
        from payments.service import InvoiceNotFound

        gw = gateway()
        if not isinstance(gw.lightning, DemoLightningNode):
            raise click.ClickException(
                "pay-lightning needs the demo Lightning node (BUSANPAY_LIGHTNING=demo); this "
                f"gateway uses {gw.lightning.name if gw.lightning else 'no Lightning node'}")
        if bolt11 is None:
            try:
                offer = current_lightning(gw, invoice_id)
            except InvoiceNotFound:
                raise click.ClickException(f"no invoice {invoice_id}")
            if offer is None or not offer.available:
                raise click.ClickException(
                    f"invoice {invoice_id} has no Lightning invoice to pay: "
                    f"{offer.reason_text if offer else 'Lightning is off'}")
            bolt11 = offer.bolt11
        else:
            from lightning.invoices import offers

            known = {o.bolt11 for o in offers(gw.db, invoice_id)}
            if bolt11.strip().lower().removeprefix("lightning:") not in known:
                raise click.ClickException(f"that BOLT11 is not one of invoice {invoice_id}'s")
        try:
            settlement = gw.lightning.settle(bolt11)
        except DemoRefused as err:
            raise click.ClickException(str(err))
        click.echo(settlement.payment_hash)
