"""Benchmark: the city dashboard with 1,000,000 invoices in PostgreSQL.

    .venv/bin/python bench/bench_dashboard.py          # --invoices 1000000 --stores 3000 --runs 7

One command does it all:

1. creates a uniquely named database on 127.0.0.1 (user postgres, trust auth) and
   migrates it (`upgrade heads`: the dashboard's rollup triggers are installed);
2. bulk-loads with COPY: --stores stores over Busan's 16 districts (busy districts get
   more), 90 days of invoices (--invoices, default 1,000,000) in realistic states
   (79 % settled, 12 % expired unpaid, ~5 % exceptions, the last hour Processing/New),
   their payments, 200,000 audit-log entries and, when settlement's tables exist, a
   payout per store and day with sales plus daily FX entries. The COPY into `invoice`
   fires the rollup's statement-level trigger like any insert (one aggregated delta per
   store-day per COPY); the fold into `city_rollup` and an idempotent full `rebuild` are
   timed separately; then VACUUM ANALYZE;
3. times the pages through the Flask test client, signed in as a city admin: the main
   page (default period = last 30 days, and 90 days), the merchant table (sorted by
   volume, searched), the busiest merchant's drill-down, the exceptions queue, the
   exposure page, settlement and the audit log (filtered). One warm-up request, then the
   median (and min/max) of --runs requests each;
4. prints a Markdown table and drops the database (also on failure or Ctrl-C).

Goals: main page < 500 ms, each drill-down < 300 ms (median). Exit status 1 if missed.
Addresses in the bulk load are unique placeholders (`bcrt1qbench…`), not derived: the
dashboard never reads them and deriving a million would only time coincurve.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BCL_DATA_DIR", tempfile.mkdtemp(prefix="bench-bcl-"))

import psycopg  # noqa: E402

ADMIN_URL = os.environ.get("BUSANPAY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)  # 12:00 in Seoul
DAYS = 90
GOAL_MAIN_MS = 500.0
GOAL_DRILL_MS = 300.0
DISTRICT_WEIGHTS = {"haeundae-gu": 9, "jung-gu": 8, "busanjin-gu": 8, "suyeong-gu": 6,
                    "dong-gu": 4, "seo-gu": 3, "yeongdo-gu": 3, "nam-gu": 4, "dongnae-gu": 4,
                    "saha-gu": 3, "geumjeong-gu": 3, "yeonje-gu": 3, "buk-gu": 2,
                    "gangseo-gu": 2, "sasang-gu": 2, "gijang-gun": 4}
CATEGORIES = ("retail", "food", "cafe", "lodging", "transport", "culture", "market", "services")
PRICE = {"cafe": (4_500, 16_000), "food": (7_000, 65_000), "market": (5_000, 160_000),
         "retail": (8_000, 260_000), "lodging": (60_000, 390_000), "transport": (1_500, 38_000),
         "culture": (3_000, 32_000), "services": (10_000, 130_000)}
STATES = [("Settled", "None", 0.79), ("Expired", "None", 0.12), ("Expired", "PaidPartial", 0.022),
          ("Expired", "PaidLate", 0.012), ("Settled", "PaidOver", 0.018),
          ("Invalid", "None", 0.005), ("Settled", "Marked", 0.002), ("Invalid", "Marked", 0.001)]
RATE = 150_000_000


class Failed(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def admin_conn():
    return psycopg.connect(ADMIN_URL, autocommit=True)


def create_database() -> tuple[str, str]:
    name = f"busanpay_bench_dash_{os.getpid()}_{secrets.token_hex(3)}"
    with admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- data -----------------------------------------------------------------------------------

def load(url: str, n_invoices: int, n_stores: int, rng: random.Random) -> dict:
    from merchants.service import random_id

    facts: dict = {}
    with psycopg.connect(url) as conn:
        key_id = conn.execute(
            "INSERT INTO extended_key (fingerprint, key_text, network, script_type, owner, "
            "next_index, created_at) VALUES ('benchfp', 'bench-key', 'regtest', 'p2wpkh', "
            "'treasury', %s, %s) RETURNING id", (n_invoices, NOW - timedelta(days=400))).fetchone()[0]
        districts = list(DISTRICT_WEIGHTS)
        weights = [DISTRICT_WEIGHTS[d] for d in districts]
        stores = []
        started = time.perf_counter()
        with conn.cursor().copy(
                "COPY store (id, name, district, category, settlement_mode, speed_policy, "
                "zero_conf_limit_krw, payment_tolerance, default_language, created_at, archived) "
                "FROM STDIN") as copy:
            for i in range(n_stores):
                store_id = random_id(32)
                district = rng.choices(districts, weights)[0]
                category = rng.choice(CATEGORIES)
                speed = "HighSpeed" if category in ("cafe", "food", "market") and rng.random() < 0.6 \
                    else "MediumSpeed"
                copy.write_row((store_id, f"가게 {i:04d} Store {i:04d}", district, category, "krw",
                                speed, 50_000 if speed == "HighSpeed" else 0, "0", "ko",
                                NOW - timedelta(days=200), False))
                stores.append((store_id, category, speed, rng.lognormvariate(0, 1.0)))
        conn.commit()
        busiest = max(stores, key=lambda s: s[3])
        facts["busiest_store"] = busiest[0]
        facts["stores"] = n_stores
        store_weights = [s[3] for s in stores]
        log(f"{n_stores} stores loaded")

        # invoices and payments
        first = NOW - timedelta(days=DAYS)
        state_names = [(s, a) for s, a, _ in STATES]
        state_weights = [w for _, _, w in STATES]
        n_payments = 0
        started = time.perf_counter()
        cur = conn.cursor()
        with cur.copy("COPY invoice (id, store_id, currency, amount_text, amount_krw, due_sats, rate, "
                      "rate_raw, rate_source, rate_fetched_at, key_id, key_index, address, status, "
                      "additional_status, speed_policy, payment_tolerance, zero_conf_limit_krw, "
                      "paid_sats, created_at, expires_at, monitoring_expires_at, updated_at, "
                      "order_id, metadata_json, checkout_json, incident, archived, version) "
                      "FROM STDIN") as copy:
            payments = []
            span = (NOW - first).total_seconds()
            picks = rng.choices(range(n_stores), store_weights, k=n_invoices)
            for i in range(n_invoices):
                store_id, category, speed, _ = stores[picks[i]]
                # more recent days are a little busier
                created = first + timedelta(seconds=span * math.sqrt(rng.random()))
                low, high = PRICE[category]
                amount = int(math.exp(rng.uniform(math.log(low), math.log(high))) // 500 * 500) or 500
                due = -(-amount * 100_000_000 // RATE)
                age = NOW - created
                incident = None
                if age < timedelta(minutes=15):
                    status, additional = "New", "None"
                elif age < timedelta(hours=1) and rng.random() < 0.5:
                    status, additional = "Processing", "None"
                else:
                    status, additional = rng.choices(state_names, state_weights)[0]
                    if status == "Settled" and rng.random() < 0.0001:
                        incident = "deep-reorg"
                paid = {"Settled": due, "Processing": due}.get(status, 0)
                if additional == "PaidOver":
                    paid = due + due // 10
                elif additional == "PaidPartial":
                    paid = due // 2
                elif additional == "PaidLate":
                    paid = due
                elif status == "Invalid" and additional == "None":
                    paid = due
                invoice_id = random_id(22)
                copy.write_row((invoice_id, store_id, "KRW", str(amount), amount, due, str(RATE),
                                str(RATE), "fixed", created, key_id, i, f"bcrt1qbench{i:012d}",
                                status, additional, speed, "0", 50_000 if speed == "HighSpeed" else 0,
                                paid, created, created + timedelta(minutes=15),
                                created + timedelta(minutes=15, hours=24), created, None, "{}", "{}",
                                incident, False, 1))
                if paid and additional != "Marked":
                    confirmed = status != "Processing" and not (status == "Invalid")
                    payments.append((invoice_id, f"{i:064x}", 0, f"bcrt1qbench{i:012d}", paid, "seen",
                                     800_000 + int((created - first).total_seconds() // 600) + 1
                                     if confirmed else None,
                                     created + timedelta(minutes=2), additional == "PaidLate"))
        conn.commit()
        facts["invoice_copy_s"] = time.perf_counter() - started
        log(f"{n_invoices:,} invoices loaded by COPY in {facts['invoice_copy_s']:.1f} s "
            "(rollup trigger included)")
        started = time.perf_counter()
        with cur.copy("COPY payment (invoice_id, txid, vout, address, value_sats, state, "
                      "block_height, seen_at, late) FROM STDIN") as copy:
            for row in payments:
                copy.write_row(row)
        n_payments = len(payments)
        conn.commit()
        facts["payments"] = n_payments
        log(f"{n_payments:,} payments loaded in {time.perf_counter() - started:.1f} s")

        # people and the audit log
        actions = ["login", "login", "login", "invoice.marked", "apikey.issued", "staff.added",
                   "webhook.created", "payout.retried", "account.locked"]
        with cur.copy("COPY audit_log (at, actor_id, actor_role, action, store_id, target, "
                      "details_json, ip) FROM STDIN") as copy:
            for i in range(200_000):
                store_id = stores[rng.randrange(n_stores)][0]
                copy.write_row((first + timedelta(seconds=rng.random() * span), f"user{i % 5000:05d}",
                                "owner", rng.choice(actions), store_id, store_id, "{}", "127.0.0.1"))
        conn.commit()
        log("200,000 audit-log entries loaded")

        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        if "payout" in tables:
            started = time.perf_counter()
            rows = conn.execute(
                "SELECT store_id, day, settled_krw FROM city_rollup_delta WHERE settled_krw > 0").fetchall()
            per_day: dict = {}
            for store_id, day, krw in rows:
                per_day[(store_id, day)] = per_day.get((store_id, day), 0) + int(krw)
            with cur.copy("COPY payout (id, store_id, day, amount_krw, rail, destination, status, "
                          "external_id, attempts, last_error, needs_attention, created_at, "
                          "updated_at) FROM STDIN") as copy:
                for (store_id, day), krw in per_day.items():
                    status = "paid" if day < (NOW + timedelta(hours=9)).date() - timedelta(days=1) else "sent"
                    error, attention = None, False
                    if rng.random() < 0.002:
                        status, error, attention = "failed", "bank rejected: account closed", True
                    moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
                    copy.write_row((random_id(24), store_id, day, krw * 99 // 100, "bankfile", "",
                                    status, None, 1, error, attention, moment, moment))
            conn.commit()
            facts["payouts"] = len(per_day)
            log(f"{len(per_day):,} payouts loaded in {time.perf_counter() - started:.1f} s")
        if {"ledger_account", "journal_entry", "posting"} <= tables:
            fx_account = conn.execute(
                "INSERT INTO ledger_account (code, currency, kind, created_at) VALUES "
                "('fx:krw', 'KRW', 'fx:krw', %s), ('exchange:krw', 'KRW', 'exchange:krw', %s) "
                "RETURNING id", (first, first)).fetchall()
            for day in range(DAYS):
                moment = first + timedelta(days=day, hours=14)
                entry = conn.execute(
                    "INSERT INTO journal_entry (business_key, kind, memo, flags, created_at, posted_at) "
                    "VALUES (%s, 'conversion', '', '', %s, %s) RETURNING id",
                    (f"bench-conversion-{day}", moment, moment)).fetchone()[0]
                fx = rng.randint(-400_000, 500_000) or 1
                conn.execute("INSERT INTO posting (entry_id, account_id, currency, amount) VALUES "
                             "(%s, %s, 'KRW', %s), (%s, %s, 'KRW', %s)",
                             (entry, fx_account[0][0], -fx, entry, fx_account[1][0], fx))
            conn.commit()
            log(f"{DAYS} daily FX entries loaded")
    return facts


def rollup_maintenance(url: str) -> dict:
    from dashboard import rollup
    from database import Database

    db = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
    out = {}
    with db.read() as s:
        out["deltas_before_fold"] = rollup.pending_deltas(s, 10_000_000)
    started = time.perf_counter()
    with db.write() as s:
        out["fold_store_days"] = rollup.fold(s)
    out["fold_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with db.write() as s:
        out["rebuild_store_days"] = rollup.rebuild(s)
    out["rebuild_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with db.read() as s:
        problems = rollup.verify(s)
    out["verify_s"] = time.perf_counter() - started
    if problems:
        raise Failed(f"the rollup differs from a fresh aggregation: {problems[:3]}")
    db.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        out["vacuum_s"] = time.perf_counter() - started
    return out


# -- timing ---------------------------------------------------------------------------------

def time_pages(url: str, facts: dict, runs: int) -> list[dict]:
    import re

    from accounts.service import create_user
    from app import create_app
    from dashboard import init_dashboard

    class Clock:
        def __call__(self):
            return NOW

    app = create_app({"instance_path": tempfile.mkdtemp(prefix="bench-dash-"),
                      "database_url": url.replace("postgresql://", "postgresql+psycopg://", 1),
                      "clock": Clock(), "rate_sources": "fixed:150000000",
                      "inprocess_worker": False, "login_rate_limit": "1000 per minute"})
    init_dashboard(app)
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email="bench@busan.example", password="bench password 1")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    res = client.post("/login", data={"email": "bench@busan.example", "password": "bench password 1",
                                      "csrf_token": token})
    assert res.status_code == 302, res.status_code
    store = facts["busiest_store"]
    pages = [
        ("main", "/city", "main page, last 30 days (default)", GOAL_MAIN_MS),
        ("main", "/city?from=2026-08-26&to=2026-11-23", "main page, 90 days", GOAL_MAIN_MS),
        ("drill", "/city/merchants", "merchant table, by volume, page 1", GOAL_DRILL_MS),
        ("drill", "/city/merchants?sort=name&dir=asc&page=40", "merchant table, by name, page 40", GOAL_DRILL_MS),
        ("drill", "/city/merchants?q=store%2012", "merchant table, search", GOAL_DRILL_MS),
        ("drill", f"/city/merchants/{store}", "busiest merchant's drill-down", GOAL_DRILL_MS),
        ("drill", f"/city/merchants/{store}?status=Settled&page=5", "drill-down, settled, page 5", GOAL_DRILL_MS),
        ("drill", "/city/exceptions", "exceptions queue", GOAL_DRILL_MS),
        ("drill", "/city/exceptions?kind=late&page=3", "exceptions, paid late, page 3", GOAL_DRILL_MS),
        ("drill", "/city/exposure", "0-conf exposure", GOAL_DRILL_MS),
        ("drill", "/city/settlement", "settlement and payouts, 30 days", GOAL_DRILL_MS),
        ("drill", "/city/audit?action=login", "audit log, filtered by action", GOAL_DRILL_MS),
        ("drill", f"/city/audit?store={store}", "audit log, filtered by store", GOAL_DRILL_MS),
    ]
    results = []
    for kind, path, label, goal in pages:
        assert client.get(path).status_code == 200, path  # warm-up (and a check)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            res = client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            assert res.status_code == 200, (path, res.status_code)
        results.append({"kind": kind, "path": path, "label": label, "goal": goal,
                        "median": statistics.median(samples), "min": min(samples),
                        "max": max(samples), "bytes": len(res.get_data())})
        log(f"{label}: median {results[-1]['median']:.0f} ms")
    gateway.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its name)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    name, url = create_database()
    log(f"database {name}")
    try:
        from migrations.commands import upgrade

        upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1))
        facts = load(url, args.invoices, args.stores, rng)
        maintenance = rollup_maintenance(url)
        log("rollup: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in maintenance.items()))
        results = time_pages(url, facts, args.runs)
    finally:
        if args.keep:
            log(f"kept database {name}")
        else:
            drop_database(name)
            log(f"dropped {name}")
    with psycopg.connect(ADMIN_URL) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    print()
    print(f"Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {server}")
    print(f"Data: {args.invoices:,} invoices over {DAYS} days, {args.stores:,} stores, "
          f"{facts['payments']:,} payments, 200,000 audit entries, "
          f"{facts.get('payouts', 0):,} payouts; COPY of invoices {facts['invoice_copy_s']:.1f} s "
          f"(trigger included); fold {maintenance['fold_s']:.1f} s "
          f"({maintenance['deltas_before_fold']:,} deltas → {maintenance['fold_store_days']:,} store-days); "
          f"rebuild {maintenance['rebuild_s']:.1f} s; verify {maintenance['verify_s']:.1f} s")
    print()
    print(f"| page | median (ms) | min–max (ms) | goal (ms) |")
    print("|---|---:|---:|---:|")
    failed = False
    for r in results:
        ok = r["median"] < r["goal"]
        failed |= not ok
        print(f"| {r['label']} | {r['median']:.0f} | {r['min']:.0f}–{r['max']:.0f} | "
              f"< {r['goal']:.0f}{'' if ok else ' **missed**'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
