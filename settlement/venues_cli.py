"""`flask --app app exchange …`: the treasury's view of its conversion venues."""
from __future__ import annotations

import json

import click


def register(app) -> None:
    if "exchange" in app.cli.commands:
        return

    def gateway():
        return app.extensions["busanpay"]

    @app.cli.group("exchange")
    def exchange_group():
        """Conversion venues: holdings, caps, balance checks, withdrawals."""

    @exchange_group.command("status")
    def exchange_status():
        """Each venue's balance checked against the ledger (JSON; exit 1 on a problem)."""
        from settlement.venues import check_balance, exposures, venues_for

        gw = gateway()
        for client in venues_for(gw):
            check_balance(gw, client)
        with gw.db.read() as session:
            rows = exposures(gw, session)
        click.echo(json.dumps([{"venue": r.venue, "holdingsKrw": str(r.holdings_krw),
                                "wonKrw": str(r.won_krw), "unsoldSats": str(r.btc_sats),
                                "unsoldValueKrw": str(r.btc_value_krw),
                                "reportedSats": None if r.reported_sats is None
                                else str(r.reported_sats),
                                "capKrw": None if r.cap_krw is None else str(r.cap_krw),
                                "reportedKrw": None if r.reported_krw is None else str(r.reported_krw),
                                "up": r.up, "mismatch": r.mismatch, "overCap": r.over_cap}
                               for r in rows], indent=2))
        raise SystemExit(1 if any(r.attention for r in rows) else 0)

    @exchange_group.command("convert")
    def exchange_convert():
        """One conversion pass over the venues (caps, failover)."""
        from settlement.venues import convert_all

        click.echo(json.dumps(convert_all(gateway()), indent=2, default=str))

    @exchange_group.command("cap")
    @click.option("--venue", required=True)
    @click.option("--krw", type=int, default=None, help="whole won; omit for no cap")
    def exchange_cap(venue, krw):
        """Set a venue's cap (audited as the system actor)."""
        from accounts.service import Actor
        from settlement.venues import set_cap

        try:
            set_cap(gateway(), venue, krw, Actor(None, "system"))
        except ValueError as err:
            raise click.ClickException(str(err))
        click.echo(json.dumps({"venue": venue, "capKrw": None if krw is None else str(krw)}))

    @exchange_group.command("withdraw")
    @click.option("--venue", required=True)
    @click.option("--krw", type=int, required=True)
    @click.option("--reference", required=True, help="the bank transfer's reference (once)")
    def exchange_withdraw(venue, krw, reference):
        """Record won wired from a venue to the city's bank account."""
        from settlement.venues import record_withdrawal

        try:
            new = record_withdrawal(gateway(), venue, reference, krw)
        except ValueError as err:
            raise click.ClickException(str(err))
        click.echo(json.dumps({"venue": venue, "krw": str(krw), "recorded": new}))
