"""Benchmark: a daily settlement run and `ledger check` on PostgreSQL at city scale.

    .venv/bin/python bench/bench_settlement.py [--merchants 10000] [--postings 1000000]
        [--pg postgresql://postgres@127.0.0.1:5432/test] [--keep]

Creates a scratch database, migrates it, bulk-loads (COPY) the stores, settled invoices,
their ledger entries and postings (5 postings per settled invoice, spread over the
merchants), then times `run_settlement` (bank-file rail: one payout per merchant, its
ledger entry and the day's transfer file) and `check_ledger` (every entry balances,
every invoice's position, every payout). Goals: settlement < 60 s, check < 30 s.
Results and the command live in bench/README.md ("Settlement").
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-bench-bitcoinlib"))

import psycopg  # noqa: E402

RATE = Decimal("150000000")
DAY = date(2026, 11, 23)


def _copy(conn, table, columns: list[str], rows) -> int:
    """COPY rows (tuples of Python values; None → NULL) into a table."""
    count = 0
    with conn.cursor() as cur:
        with cur.copy(f'COPY "{table}" ({", ".join(columns)}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def _rows_for(table, values: list[dict]) -> tuple[list[str], list[tuple]]:
    """Order dict rows by the table's columns; columns not given get NULL or their scalar
    default (so the loader survives columns other branches add)."""
    given = set(values[0])
    columns, fill = [], {}
    for column in table.columns:
        if column.name in given:
            columns.append(column.name)
        elif column.nullable:
            continue
        elif column.default is not None and getattr(column.default, "is_scalar", False):
            columns.append(column.name)
            fill[column.name] = column.default.arg
        elif column.primary_key and column.autoincrement in (True, "auto"):
            continue
        else:
            raise SystemExit(f"bench: no value for {table.name}.{column.name}")
    return columns, [tuple(v[c] if c in v else fill[c] for c in columns) for v in values]


def load(url_admin: str, merchants: int, postings: int, seed: int = 7) -> tuple[str, str]:
    """A fresh, migrated database filled with the data set; returns (sqlalchemy url, name)."""
    from migrations.commands import upgrade

    name = f"busanpay_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = url_admin.rsplit("/", 1)[0]
    raw_url = f"{base}/{name}"
    sa_url = raw_url.replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(sa_url)

    import models_registry  # noqa: F401
    from merchants.models import Store
    from payments.addresses import DEMO_TREASURY_KEY
    from payments.models import Invoice

    rng = random.Random(seed)
    invoices = postings // 5
    start = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)  # 00:00 in Seoul on DAY
    t0 = time.perf_counter()
    with psycopg.connect(raw_url) as conn:
        now = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
        conn.execute("INSERT INTO extended_key (id, fingerprint, key_text, network, script_type, owner, "
                     "next_index, created_at) VALUES (1, 'bench', %s, 'regtest', 'p2wpkh', 'treasury', "
                     "%s, %s)", (DEMO_TREASURY_KEY, invoices, now))
        store_ids = [f"S{i:08d}" + uuid.uuid4().hex[:16] for i in range(merchants)]
        cols, rows = _rows_for(Store.__table__, [
            {"id": s, "name": f"Bench store {i}", "district": "jung-gu", "category": "retail",
             "settlement_mode": "krw", "key_id": None, "speed_policy": "MediumSpeed",
             "zero_conf_limit_krw": 0, "payment_tolerance": "0", "default_language": "ko",
             "created_at": now, "archived": False} for i, s in enumerate(store_ids)])
        _copy(conn, "store", cols, rows)
        accounts = ["treasury:btc", "conversion:btc", "conversion:krw", "city_fees:krw",
                    "payouts_in_transit:krw", "treasury:krw"]
        account_rows = []
        for i, code in enumerate(accounts, start=1):
            kind = code
            account_rows.append((i, code, "BTC" if code.endswith(":btc") else "KRW", kind, None, now))
        for j, s in enumerate(store_ids, start=len(accounts) + 1):
            account_rows.append((j, f"merchant_payable:{s}", "KRW", "merchant_payable", s, now))
        _copy(conn, "ledger_account", ["id", "code", "currency", "kind", "store_id", "created_at"],
              account_rows)
        conn.execute("SELECT setval(pg_get_serial_sequence('ledger_account', 'id'), %s)",
                     (len(account_rows),))
        payable_id = {s: len(accounts) + 1 + j for j, s in enumerate(store_ids)}

        invoice_rows, ledger_invoice_rows, entry_rows, posting_rows = [], [], [], []
        pid = 0
        for n in range(invoices):
            store = store_ids[n % merchants]
            amount = rng.randrange(1_000, 300_000)
            due = -(-amount * 100_000_000 // 150_000_000)
            fee = amount * 100 // 10_000 + (1 if (amount * 100 % 10_000) * 2 >= 10_000 else 0)
            at = start + timedelta(seconds=rng.randrange(0, 20 * 3600))
            inv_id = f"I{n:09d}" + uuid.uuid4().hex[:12]
            invoice_rows.append({
                "id": inv_id, "store_id": store, "currency": "KRW", "amount_text": str(amount),
                "amount_krw": amount, "due_sats": due, "rate": "150000000", "rate_raw": "150000000",
                "rate_source": "fixed", "rate_fetched_at": at, "key_id": 1, "key_index": n,
                "address": f"bcrt1qbench{n:012d}", "status": "Settled", "additional_status": "None",
                "speed_policy": "MediumSpeed", "payment_tolerance": "0", "zero_conf_limit_krw": 0,
                "paid_sats": due, "created_at": at, "expires_at": at + timedelta(minutes=15),
                "monitoring_expires_at": at + timedelta(days=1), "updated_at": at,
                "metadata_json": "{}", "checkout_json": "{}", "archived": False, "version": 3})
            ledger_invoice_rows.append((inv_id, store, 100, 1, at))
            eid = n + 1
            entry_rows.append((eid, f"invoice:{inv_id}:settled", "invoice_settled", "bench", store,
                               inv_id, None, "", at, at))
            for account, currency, value in ((1, "BTC", due), (2, "BTC", -due),
                                             (3, "KRW", amount), (payable_id[store], "KRW", -(amount - fee)),
                                             (4, "KRW", -fee)):
                pid += 1
                posting_rows.append((pid, eid, account, currency, value))
        cols, rows = _rows_for(Invoice.__table__, invoice_rows)
        _copy(conn, "invoice", cols, rows)
        _copy(conn, "ledger_invoice", ["invoice_id", "store_id", "fee_bps", "entries", "updated_at"],
              ledger_invoice_rows)
        _copy(conn, "journal_entry", ["id", "business_key", "kind", "memo", "store_id", "invoice_id",
                                      "payout_id", "flags", "created_at", "posted_at"], entry_rows)
        _copy(conn, "posting", ["id", "entry_id", "account_id", "currency", "amount"], posting_rows)
        for table in ("journal_entry", "posting"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {merchants:,} merchants, {invoices:,} settled invoices, {pid:,} postings "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return sa_url, name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--merchants", type=int, default=10_000)
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--pg", default=os.environ.get("BUSANPAY_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    sa_url, name = load(args.pg, args.merchants, args.postings)
    try:
        from gateway import build_gateway
        from settings import Settings
        from settlement.config import SettlementConfig
        from settlement.daily import run_settlement
        from settlement.reconcile import check_ledger

        instance = tempfile.mkdtemp(prefix="busanpay-bench-")
        settings = Settings.from_env({"DATABASE_URL": sa_url, "BUSANPAY_RATE_SOURCES": "fixed:150000000"},
                                     instance_path=instance)
        now = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)  # 10:00 in Seoul the next day
        gateway = build_gateway(settings, clock=lambda: now)
        gateway.extras["settlement_config"] = SettlementConfig(payout_rail="bankfile",
                                                               auto_settlement=False)
        t0 = time.perf_counter()
        result = run_settlement(gateway, DAY)
        settle_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_settlement(gateway, DAY)
        rerun_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = check_ledger(gateway)
        check_s = time.perf_counter() - t0
        gateway.close()
        print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print("| what | seconds | goal |\n|---|---:|---:|")
        print(f"| settlement run: {len(result['created']):,} payouts, ₩{int(result['total']['amount']):,} "
              f"| {settle_s:.1f} | < 60 |")
        print(f"| same day again: {len(again['created'])} new payouts | {rerun_s:.1f} | – |")
        print(f"| ledger check: {report['checked']['entries']:,} entries, "
              f"{report['checked']['invoices']:,} invoices, {report['checked']['payouts']:,} payouts, "
              f"ok={report['ok']} | {check_s:.1f} | < 30 |")
        ok = settle_s < 60 and check_s < 30 and report["ok"] and \
            len(result["created"]) == args.merchants and not again["created"]
        return 0 if ok else 1
    finally:
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
