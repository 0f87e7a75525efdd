"""The daily rollup per store and Asia/Seoul day: trigger SQL, fold, rebuild, verify, read.

Why a rollup, and why this shape
--------------------------------
The city's main page sums a period of invoices several ways (totals, by day, district,
category, merchant). With a million invoices a plain ``GROUP BY`` over ``invoice`` costs
hundreds of milliseconds per grouping; the rollup has one row per store and day (about
3,000 × 30 rows for a month), so each grouping reads ~90k narrow rows instead.

It is maintained *incrementally by the database* (triggers on ``invoice``), not by a
job, so it is right the moment an invoice changes, whoever changed it (API, watcher,
expiry job, a person in psql). The triggers only append signed rows to
``city_rollup_delta`` (a statement-level trigger with a transition table on PostgreSQL
inserts, so a ``COPY`` of a million rows writes one aggregated delta per store-day);
:func:`fold` moves them into ``city_rollup`` in one short transaction, and readers take
``city_rollup UNION ALL city_rollup_delta``. Consequences:

* exact at every moment (a fold is atomic; a reader sees it all or not at all);
* no shared row is locked by an invoice transaction: no hot rows, no deadlocks;
* idempotent by construction: a delta is deleted in the same transaction that adds it
  to the rollup (PostgreSQL: ``DELETE … RETURNING`` feeding the upsert, one statement);
* :func:`rebuild` recomputes everything from ``invoice`` (after a restore, or to be sure)
  and :func:`verify` compares the rollup with a fresh aggregation.

The day is the Asia/Seoul calendar day of ``created_at``. Korea has kept UTC+9 without
daylight saving since 1988, so SQLite's ``date(created_at, '+9 hours')`` is exact;
PostgreSQL uses ``created_at AT TIME ZONE 'Asia/Seoul'``.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, text, union_all

from dashboard.models import ROLLUP_COLUMNS, CityRollup, CityRollupDelta

FOLD_LOCK = 0x42504459  # advisory lock key ("BPDY") serialising folds on PostgreSQL
SEOUL_OFFSET_SQLITE = "+9 hours"


def _case(condition: str, value: str) -> str:
    return f"CASE WHEN {condition} THEN {value} ELSE 0 END"


def column_expressions(r: str, money: bool = True) -> dict[str, str]:
    """SQL per rollup column for one invoice row aliased `r` (same text on both databases).

    The city's statuses and volumes follow the money: the chain's status
    (`chain_status`, kept when a merchant marks the invoice), never the mark, so an unpaid
    invoice marked Settled is no settled volume. `money=False` is the rollup as migration
    0006 built it, before `chain_status` existed."""
    krw = f"COALESCE({r}.amount_krw, 0)"
    status = f"COALESCE({r}.chain_status, {r}.status)" if money else f"{r}.status"
    return {
        "invoices": "1",
        "new_n": _case(f"{status} = 'New'", "1"),
        "processing_n": _case(f"{status} = 'Processing'", "1"),
        "settled_n": _case(f"{status} = 'Settled'", "1"),
        "expired_n": _case(f"{status} = 'Expired'", "1"),
        "invalid_n": _case(f"{status} = 'Invalid'", "1"),
        "paid_partial_n": _case(f"{r}.additional_status = 'PaidPartial'", "1"),
        "paid_over_n": _case(f"{r}.additional_status = 'PaidOver'", "1"),
        "paid_late_n": _case(f"{r}.additional_status = 'PaidLate'", "1"),
        "marked_n": _case(f"{r}.additional_status = 'Marked'", "1"),
        "processing_krw": _case(f"{status} = 'Processing'", krw),
        "settled_krw": _case(f"{status} = 'Settled'", krw),
        "settled_sats": _case(f"{status} = 'Settled'", f"{r}.paid_sats"),
    }


assert tuple(column_expressions("x")) == ROLLUP_COLUMNS

# Columns whose change moves an invoice between rollup cells or counters.
TRACKED = ("status", "additional_status", "amount_krw", "due_sats", "paid_sats", "store_id",
           "created_at", "chain_status")


def _tracked(money: bool) -> tuple[str, ...]:
    return TRACKED if money else TRACKED[:-1]


def day_expression(dialect: str, r: str) -> str:
    if dialect == "postgresql":
        return f"(({r}.created_at AT TIME ZONE 'Asia/Seoul')::date)"
    return f"date({r}.created_at, '{SEOUL_OFFSET_SQLITE}')"


_COLS = ", ".join(ROLLUP_COLUMNS)


def _values(dialect: str, r: str, sign: str, money: bool = True) -> str:
    exprs = column_expressions(r, money)
    return ", ".join([f"{r}.store_id", day_expression(dialect, r)] +
                     [f"{sign}({exprs[c]})" for c in ROLLUP_COLUMNS])


def _aggregate_select(dialect: str, source: str, alias: str, sign: str = "",
                      money: bool = True) -> str:
    exprs = column_expressions(alias, money)
    day = day_expression(dialect, alias)
    sums = ", ".join(f"{sign}SUM({exprs[c]})" for c in ROLLUP_COLUMNS)
    return (f"SELECT {alias}.store_id, {day}, {sums} FROM {source} {alias} "
            f"GROUP BY {alias}.store_id, {day}")


def trigger_ddl(dialect: str, money: bool = True) -> list[str]:
    """Statements creating the invoice triggers that feed city_rollup_delta."""
    tracked = _tracked(money)
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" if dialect == "postgresql"
                          else f"OLD.{c} IS NOT NEW.{c}" for c in tracked)
    target = f"INSERT INTO city_rollup_delta (store_id, day, {_COLS})"
    if dialect == "postgresql":
        return [
            f"""CREATE OR REPLACE FUNCTION city_rollup_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  {target} {_aggregate_select(dialect, 'new_rows', 'n', money=money)};
  RETURN NULL;
END $$""",
            f"""CREATE OR REPLACE FUNCTION city_rollup_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  {target} {_aggregate_select(dialect, 'old_rows', 'o', '-', money)};
  RETURN NULL;
END $$""",
            f"""CREATE OR REPLACE FUNCTION city_rollup_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  {target} VALUES ({_values(dialect, 'OLD', '-', money)}), ({_values(dialect, 'NEW', '', money)});
  RETURN NULL;
END $$""",
            "CREATE TRIGGER trg_city_rollup_ins AFTER INSERT ON invoice "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION city_rollup_inserted()",
            "CREATE TRIGGER trg_city_rollup_del AFTER DELETE ON invoice "
            "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION city_rollup_deleted()",
            f"CREATE TRIGGER trg_city_rollup_upd AFTER UPDATE OF {', '.join(tracked)} ON invoice "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION city_rollup_updated()",
        ]
    return [
        f"CREATE TRIGGER trg_city_rollup_ins AFTER INSERT ON invoice BEGIN "
        f"{target} VALUES ({_values(dialect, 'NEW', '', money)}); END",
        f"CREATE TRIGGER trg_city_rollup_del AFTER DELETE ON invoice BEGIN "
        f"{target} VALUES ({_values(dialect, 'OLD', '-', money)}); END",
        f"CREATE TRIGGER trg_city_rollup_upd AFTER UPDATE OF {', '.join(tracked)} ON invoice "
        f"WHEN {changed} BEGIN "
        f"{target} VALUES ({_values(dialect, 'OLD', '-', money)}); "
        f"{target} VALUES ({_values(dialect, 'NEW', '', money)}); END",
    ]


def drop_trigger_ddl(dialect: str) -> list[str]:
    drops = [f"DROP TRIGGER IF EXISTS trg_city_rollup_{k}" + (" ON invoice" if dialect == "postgresql" else "")
             for k in ("ins", "del", "upd")]
    if dialect == "postgresql":
        drops += [f"DROP FUNCTION IF EXISTS city_rollup_{k}()" for k in ("inserted", "deleted", "updated")]
    return drops


# -- fold / rebuild / verify ---------------------------------------------------------------

_UPSERT_SET = ", ".join(f"{c} = city_rollup.{c} + excluded.{c}" for c in ROLLUP_COLUMNS)
_SUMS = ", ".join(f"SUM({c})" for c in ROLLUP_COLUMNS)


def pending_deltas(session, limit: int = 100_000) -> int:
    """How many delta rows wait to be folded (counted up to `limit`)."""
    return int(session.execute(text(
        "SELECT count(*) FROM (SELECT 1 FROM city_rollup_delta LIMIT :n) AS d"),
        {"n": limit}).scalar_one())


def fold(session) -> int:
    """Move the logged deltas into city_rollup, in the caller's (write) transaction.

    Returns the number of store-days touched (0 when another fold holds the lock)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        got = session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": FOLD_LOCK}).scalar_one()
        if not got:
            return 0
        rows = session.execute(text(
            f"WITH moved AS (DELETE FROM city_rollup_delta RETURNING store_id, day, {_COLS}) "
            f"INSERT INTO city_rollup (store_id, day, {_COLS}) "
            f"SELECT store_id, day, {_SUMS} FROM moved GROUP BY store_id, day "
            f"ON CONFLICT (store_id, day) DO UPDATE SET {_UPSERT_SET} "
            f"RETURNING store_id, day, invoices")).all()
    else:
        top = session.execute(text("SELECT max(id) FROM city_rollup_delta")).scalar_one()
        if top is None:
            return 0
        rows = session.execute(text(
            f"INSERT INTO city_rollup (store_id, day, {_COLS}) "
            f"SELECT store_id, day, {_SUMS} FROM city_rollup_delta WHERE id <= :top "
            f"GROUP BY store_id, day "
            f"ON CONFLICT (store_id, day) DO UPDATE SET {_UPSERT_SET} "
            f"RETURNING store_id, day, invoices"), {"top": top}).all()
        session.execute(text("DELETE FROM city_rollup_delta WHERE id <= :top"), {"top": top})
    empty = [(r[0], r[1]) for r in rows if int(r[2]) == 0]
    for store_id, day in empty:  # a store-day whose invoices were all deleted or moved
        session.execute(text("DELETE FROM city_rollup WHERE store_id = :s AND day = :d "
                             "AND invoices = 0"), {"s": store_id, "d": day})
    return len(rows)


def rebuild(session, money: bool = True) -> int:
    """Recompute the whole rollup from `invoice` (caller's write transaction); idempotent.

    On PostgreSQL the invoice table is locked in SHARE mode for the duration (writers wait
    a few seconds per million invoices), so no change can slip between the delete and
    the aggregation."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("LOCK TABLE invoice IN SHARE MODE"))
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FOLD_LOCK})
    session.execute(text("DELETE FROM city_rollup_delta"))
    session.execute(text("DELETE FROM city_rollup"))
    # In day order: the table then lies on disk as a fold leaves it in production (new days
    # appended), so a period's rows are neighbours.
    session.execute(text(f"INSERT INTO city_rollup (store_id, day, {_COLS}) "
                         f"SELECT * FROM ({_aggregate_select(dialect, 'invoice', 'i', money=money)}) AS agg "
                         f"ORDER BY 2, 1"))
    return int(session.execute(text("SELECT count(*) FROM city_rollup")).scalar_one())


def verify(session) -> list[dict]:
    """Store-days where rollup + pending deltas differ from a fresh aggregation of invoices."""
    dialect = session.get_bind().dialect.name
    fresh = {}
    for row in session.execute(text(_aggregate_select(dialect, "invoice", "i"))):
        fresh[(row[0], _as_date(row[1]))] = tuple(int(v) for v in row[2:])
    kept: dict = {}
    for row in session.execute(select(*facts_columns(facts()))):
        key = (row[0], _as_date(row[1]))
        values = tuple(int(v) for v in row[2:])
        old = kept.get(key, (0,) * len(values))
        kept[key] = tuple(a + b for a, b in zip(old, values))
    kept = {k: v for k, v in kept.items() if any(v)}
    problems = []
    for key in sorted(set(fresh) | set(kept), key=lambda k: (k[0], k[1])):
        if fresh.get(key) != kept.get(key):
            problems.append({"storeId": key[0], "day": key[1].isoformat(),
                             "expected": dict(zip(ROLLUP_COLUMNS, fresh.get(key, ()))),
                             "found": dict(zip(ROLLUP_COLUMNS, kept.get(key, ())))})
    return problems


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# -- reading -------------------------------------------------------------------------------

def facts(start: date | None = None, end: date | None = None, store_id: str | None = None,
          columns=ROLLUP_COLUMNS):
    """`city_rollup UNION ALL city_rollup_delta` for [start, end] (Seoul days), as a subquery
    with columns store_id, day and the counters asked for. Sum it; never count its rows."""
    parts = []
    for table in (CityRollup.__table__, CityRollupDelta.__table__):
        query = select(table.c.store_id, table.c.day, *[table.c[c] for c in columns])
        if start is not None:
            query = query.where(table.c.day >= start)
        if end is not None:
            query = query.where(table.c.day <= end)
        if store_id is not None:
            query = query.where(table.c.store_id == store_id)
        parts.append(query)
    return union_all(*parts).subquery("facts")


def facts_columns(sub):
    return [sub.c.store_id, sub.c.day] + [sub.c[c] for c in ROLLUP_COLUMNS]


def sums(sub, columns=ROLLUP_COLUMNS):
    """SUM() of each counter column of a facts() subquery, labelled by name."""
    return [func.coalesce(func.sum(sub.c[c]), 0).label(c) for c in columns]
