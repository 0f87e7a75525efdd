"""Programmatic Alembic: `flask --app app db upgrade` and friends call these."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url))


def revision(database_url: str, message: str, autogenerate: bool = True, rev_id: str | None = None):
    return command.revision(alembic_config(database_url), message=message,
                            autogenerate=autogenerate, rev_id=rev_id)
