"""Operator CLI: `flask --app app <group> <command>` (scripts and tests rely on these names)."""
from __future__ import annotations

import json

import click
from flask import Flask

from merchants.districts import CATEGORIES


def register_cli(app: Flask) -> None:
    @app.cli.group("db")
    def db_group():
        """Database migrations."""

    @db_group.command("upgrade")
    @click.argument("revision", default="heads")
    def db_upgrade(revision):
        """Bring the database to the latest migration."""
        from migrations.commands import upgrade

        upgrade(app.extensions["busanpay"].settings.database_url, revision)
        click.echo("database at " + revision)

    from operations.cli import register_db_commands, register_metrics_commands

    register_db_commands(app, db_group)  # db backup PATH, db restore PATH
    register_metrics_commands(app)

    @app.cli.group("merchant")
    def merchant_group():
        """Stores (merchants) and their API keys."""

    @merchant_group.command("create")
    @click.option("--name", required=True)
    @click.option("--district", default="jung-gu")
    @click.option("--category", default="retail", show_default=True,
                  type=click.Choice(sorted(CATEGORIES)),
                  help="the store's merchant category (it sets the city's fee)")
    @click.option("--xpub", default=None, help="the store's own account key: BTC settled directly")
    @click.option("--speed-policy", default="MediumSpeed")
    def merchant_create(name, district, category, xpub, speed_policy):
        """Create a store and print its id and a new API key (shown once)."""
        from merchants.service import StoreError, create_store, issue_api_key
        from payments.addresses import InvalidExtendedKey
        from payments.service import register_key

        gateway = app.extensions["busanpay"]
        try:
            with gateway.db.write() as session:
                key_id = None
                if xpub:
                    key_id = register_key(session, xpub, gateway.settings.network, "store").id
                store = create_store(session, name=name, district=district, category=category,
                                     speed_policy=speed_policy,
                                     settlement_mode="btc" if xpub else "krw", key_id=key_id)
                issued = issue_api_key(session, store.id, label="cli")
        except (StoreError, InvalidExtendedKey) as err:
            raise click.ClickException(str(err))
        out = {"storeId": store.id, "apiKey": issued.token, "category": store.category}
        if click.get_current_context().get_parameter_source("category") == \
                click.core.ParameterSource.DEFAULT:  # never silently: say it was the default
            out["note"] = (f"no --category given: the store is in the default category "
                           f"{category!r}; the others are {', '.join(sorted(CATEGORIES))}")
        click.echo(json.dumps(out))

    @app.cli.group("wallet")
    def wallet_group():
        """Watch-only wallet facts for the treasury."""

    @wallet_group.command("gap")
    def wallet_gap():
        """Per extended key: highest index used and the gap limit a wallet needs."""
        gateway = app.extensions["busanpay"]
        gateway.invoices.ensure_treasury_key()
        click.echo(json.dumps(gateway.invoices.key_usage(), indent=2))

    @app.cli.group("demo")
    def demo_group():
        """Demo data and the offline demo chain."""

    @demo_group.command("seed")
    @click.option("--if-empty", is_flag=True, help="do nothing when stores already exist")
    def demo_seed(if_empty):
        """Create demo merchants and print the logins made (JSON)."""
        from demo_data import seed

        gateway = app.extensions["busanpay"]
        result = seed(gateway, if_empty=if_empty)
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))

    from dashboard.cli import register_dashboard_cli

    register_dashboard_cli(app)  # flask city rollup [--rebuild] [--verify]
