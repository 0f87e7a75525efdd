"""Database engine, sessions and the column types every table uses.

SQLite needs care to be exact: timezone-aware datetimes come back naive, NUMERIC is a
binary float and a BIGINT primary key does not auto-increment. The types here fix each.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

from sqlalchemy import BigInteger, DateTime, Integer, String, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

#: An auto-incrementing 64-bit key that also auto-increments on SQLite.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use aware UTC")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class DecimalText(TypeDecorator):
    """A Decimal stored as its exact text (SQLite's NUMERIC would make it a float)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"DecimalText takes Decimal, got {type(value).__name__}")
        return format(value, "f")

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Let SQLAlchemy, not pysqlite, issue BEGIN so writers can ask for IMMEDIATE.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the lock up front: a deferred transaction that reads then writes
            # can fail with "database is locked" without waiting when another writer commits.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    # No pre-ping: it costs a round trip on every checkout. Connections are replaced after
    # 30 min instead, and a connection found dead (database restarted) invalidates the
    # pool, so one request per process fails (API: 503 database-unavailable) and the next
    # gets a fresh connection.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    return create_engine(url, **kwargs)


class Database:
    """Owns the engine; hands out read and write sessions."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        # PostgreSQL reads of one statement need no BEGIN/ROLLBACK round trips. SQLite is
        # in-process, and its BEGIN is issued by the listener above, so it keeps them.
        # Its own small pool, set to autocommit once per connection: switching a shared
        # pool's connections on every checkout costs more than the round trips it saves.
        self._one_shot = self.engine
        if not self.is_sqlite:
            options = {**engine_kwargs, "isolation_level": "AUTOCOMMIT"}
            if "poolclass" not in options:
                options.update(pool_size=5, max_overflow=10)
            self._one_shot = make_engine(url, **options)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with Session(self._writer, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on a Core connection, without the ORM's unit of work:
        for hot paths that insert a few known rows. Committed on success."""
        with self._writer.begin() as connection:
            yield connection

    @contextmanager
    def one_shot(self) -> Iterator[Connection]:
        """A connection for a single read statement (autocommit on PostgreSQL)."""
        with self._one_shot.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
        if self._one_shot is not self.engine:
            self._one_shot.dispose()


def insert_ignore(session, table, values: dict, *, conflict: list[str] | None = None) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when the row was new.

    Idempotency lives in unique constraints: a duplicate is simply not inserted, with no
    check-then-insert race between workers.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_nothing(index_elements=conflict) if conflict else \
        stmt.on_conflict_do_nothing()
    # psycopg reports rowcount -1 for INSERTs unless asked to keep it.
    result = session.execute(stmt.execution_options(preserve_rowcount=True))
    return (result.rowcount or 0) > 0


def upsert(session, table, values: dict, *, key: list[str], update: list[str]) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE SET update-columns."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=key,
                                      set_={c: stmt.excluded[c] for c in update})
    session.execute(stmt)
