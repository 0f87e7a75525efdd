"""Backups that restore: `flask --app app db backup PATH` and `db restore PATH`.

SQLite: the online backup API copies every page in one step under a read transaction
(WAL mode: writers go on meanwhile), so the copy is one consistent moment of a database
that keeps serving. PostgreSQL: `pg_dump --format=custom` (one snapshot by MVCC), and
`pg_restore` into the configured, empty database. A restore refuses a database that
already has tables (restore into a fresh one, then point the city at it) and a backup
of the other kind.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """The backup or restore could not be made; nothing was changed."""


@dataclass(frozen=True)
class BackupResult:
    path: str
    kind: str  # sqlite | pg_dump
    bytes: int


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return database


def _libpq(url: str) -> tuple[str, dict]:
    """A libpq connection string for pg_dump/pg_restore, and an environment holding the
    password (never on the command line, where `ps` shows it)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed (Debian: postgresql-client)") from None
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")


def backup(database_url: str, path: str) -> BackupResult:
    target = Path(path)
    if target.exists():
        raise BackupError(f"{path} exists already: choose a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    if database_url.startswith("sqlite"):
        source = sqlite3.connect(f"file:{_sqlite_path(database_url)}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)  # all pages in one step: one consistent snapshot
            finally:
                copy.close()
        finally:
            source.close()
        kind = "sqlite"
    else:
        conninfo, env = _libpq(database_url)
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
              f"--file={partial}", f"--dbname={conninfo}"], env)
        kind = "pg_dump"
    os.replace(partial, target)  # a backup file either is whole or is not there
    return BackupResult(str(target), kind, target.stat().st_size)


def backup_kind(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as err:
        raise BackupError(f"cannot read {path}: {err.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "pg_dump"
    raise BackupError(f"{path} is neither a SQLite database nor a pg_dump custom-format file")


def _has_tables(engine) -> bool:
    return bool(inspect(engine).get_table_names())


def restore(database_url: str, path: str) -> BackupResult:
    from database import make_engine

    kind = backup_kind(path)
    wanted = "sqlite" if database_url.startswith("sqlite") else "pg_dump"
    if kind != wanted:
        raise BackupError(f"{path} is a {kind} backup; DATABASE_URL needs a {wanted} one")
    engine = make_engine(database_url)
    try:
        if _has_tables(engine):
            raise BackupError("the target database has tables already: restore into a fresh "
                              "database (a new DATABASE_URL) and point the city at it")
    finally:
        engine.dispose()
    if kind == "sqlite":
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if source.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError(f"{path} fails SQLite's integrity check")
            target = sqlite3.connect(_sqlite_path(database_url))
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    else:
        conninfo, env = _libpq(database_url)
        _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
              "--single-transaction", f"--dbname={conninfo}", path], env)
    return BackupResult(path, kind, Path(path).stat().st_size)
