"""`flask --app app city rollup [--rebuild|--verify]`: the dashboard's daily rollup."""
from __future__ import annotations

import json
import time

import click


def register_dashboard_cli(app) -> None:
    if "city" in app.cli.commands:
        return

    @app.cli.group("city")
    def city_group():
        """The city dashboard's rollup and checks."""

    @city_group.command("rollup")
    @click.option("--rebuild", is_flag=True, help="recompute it all from the invoices")
    @click.option("--verify", is_flag=True, help="compare it with a fresh aggregation (exit 1 if it differs)")
    def rollup_command(rebuild, verify):
        """Fold the rollup's change log (default), rebuild it, or verify it."""
        from dashboard import rollup

        gateway = app.extensions["busanpay"]
        started = time.perf_counter()
        result: dict = {}
        with gateway.db.write() as session:
            if rebuild:
                result["storeDays"] = rollup.rebuild(session)
            else:
                result["folded"] = rollup.fold(session)
        if verify:
            with gateway.db.read() as session:
                problems = rollup.verify(session)
            result["differences"] = len(problems)
            result["examples"] = problems[:5]
        result["seconds"] = round(time.perf_counter() - started, 3)
        click.echo(json.dumps(result, indent=2, default=str))
        if verify and result["differences"]:
            raise SystemExit(1)
