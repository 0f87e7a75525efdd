"""`flask --app app db backup PATH`, `db restore PATH` and `flask metrics clean`."""
from __future__ import annotations

import json

import click


def register_db_commands(app, db_group) -> None:
    @db_group.command("backup")
    @click.argument("path")
    def db_backup(path):
        """Back up the database to PATH while it serves (SQLite: online backup; PostgreSQL:
        pg_dump custom format)."""
        from operations.backup import BackupError, backup

        try:
            done = backup(app.extensions["busanpay"].settings.database_url, path)
        except BackupError as err:
            raise click.ClickException(str(err))
        click.echo(json.dumps({"backup": done.path, "kind": done.kind, "bytes": done.bytes}))

    @db_group.command("restore")
    @click.argument("path")
    def db_restore(path):
        """Restore PATH into the configured, empty database (DATABASE_URL)."""
        from operations.backup import BackupError, restore

        gateway = app.extensions["busanpay"]
        gateway.db.dispose()  # no pooled connection of ours may hold the target open
        try:
            done = restore(gateway.settings.database_url, path)
        except BackupError as err:
            raise click.ClickException(str(err))
        click.echo(json.dumps({"restored": done.path, "kind": done.kind}))


def register_metrics_commands(app) -> None:
    @app.cli.group("metrics")
    def metrics_group():
        """Prometheus metrics of this host."""

    @metrics_group.command("clean")
    def metrics_clean():
        """Empty the multiprocess folder (gunicorn.conf.py does it when the web starts)."""
        from operations import clean_multiprocess_dir, multiprocess_dir

        path = multiprocess_dir(app.instance_path)
        click.echo(json.dumps({"folder": path, "removed": clean_multiprocess_dir(path)}))
