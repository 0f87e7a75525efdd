"""Benchmark: the watcher processing one big block against few and against many open invoices.

    .venv/bin/python bench/bench_watcher.py                  # SQLite file in a temp dir
    .venv/bin/python bench/bench_watcher.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/bench_watcher.py --latency        # also demo pay -> status.json ETag

One block of 4,000 transactions with 10,000 outputs, 100 of which pay open invoices
(the same 100 in both runs), 1-3 inputs per transaction. The open invoices (1,000, then
100,000) are bulk-inserted directly. Measured, best of --repeat runs each, in this one
process:

- `json.loads` of the block as Bitcoin Core's `getblock <hash> 2` JSON (the floor: any
  backend must at least parse that much), and the Core backend's parse into a `Block`;
- the watcher's processing of the block (`Watcher._process_block`: one transaction with
  the address lookups, double-spend check, 100 payments, 100 decisions and their events),
  and a whole `run_once` pass (block + mempool + time-based transitions).

Each run starts from a database where the block is not processed yet (its payments and
events are deleted and the cursor is put back between runs).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BCL_DATA_DIR", tempfile.mkdtemp(prefix="bench-bcl-"))

TXS = 4_000
OUTPUTS = 10_000
MATCHED = 100


def fake_address(i: int, tag: str = "inv") -> str:
    return "bcrt1q" + hashlib.sha256(f"{tag}{i}".encode()).hexdigest()[:38]


def h(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def build_block(rng: random.Random, paying: list[str]):
    """(Block, Core getblock-2 JSON text)."""
    from chain.backends import Block, BlockHeader, ChainTx, OutPoint, TxOutput

    # Output counts: 10,000 over 4,000 txs (each 1..5), exactly.
    counts = [2] * TXS
    extra = OUTPUTS - sum(counts)
    while extra:
        i = rng.randrange(TXS)
        if extra > 0 and counts[i] < 5:
            counts[i] += 1
            extra -= 1
    slots = rng.sample(range(OUTPUTS), MATCHED)
    targets = dict(zip(slots, paying))
    txs, core_txs, k = [], [], 0
    for t in range(TXS):
        txid = h("tx", t)
        inputs = tuple(OutPoint(h("prev", t, j), j) for j in range(rng.randint(1, 3)))
        outputs = []
        for n in range(counts[t]):
            address = targets.get(k) or fake_address(k, "other")
            outputs.append(TxOutput(n, address, rng.randint(546, 50_000_000)))
            k += 1
        txs.append(ChainTx(txid, inputs, tuple(outputs)))
        core_txs.append({
            "txid": txid, "hash": txid, "version": 2, "size": 222, "vsize": 141, "weight": 561,
            "locktime": 0,
            "vin": [{"txid": i.txid, "vout": i.vout, "scriptSig": {"asm": "", "hex": ""},
                     "txinwitness": ["30" * 36, "02" + "ab" * 32], "sequence": 4294967293}
                    for i in inputs],
            "vout": [{"value": Decimal(o.value_sats) / 100_000_000, "n": o.n,
                      "scriptPubKey": {"asm": "0 " + "cd" * 20, "desc": f"addr({o.address})",
                                       "hex": "0014" + "cd" * 20, "address": o.address,
                                       "type": "witness_v0_keyhash"}}
                     for o in outputs],
            "fee": Decimal("0.00000282"), "hex": "02" * 111,
        })
    header = BlockHeader(height=1, hash=h("block", 1), prev_hash=h("block", 0), time=1_790_000_000)
    core = {"hash": header.hash, "confirmations": 1, "height": 1, "version": 536870912,
            "merkleroot": h("merkle"), "time": header.time, "mediantime": header.time,
            "nonce": 1, "bits": "207fffff", "difficulty": Decimal("4.656542373906925E-10"),
            "chainwork": "00" * 32, "nTx": TXS, "previousblockhash": header.prev_hash,
            "strippedsize": 800_000, "size": 1_200_000, "weight": 3_600_000, "tx": core_txs}

    def default(value):
        if isinstance(value, Decimal):
            return float(value)  # only to write the sample JSON text, as Core does
        raise TypeError(value)

    return Block(header, tuple(txs)), json.dumps(core, default=default)


class FixedChain:
    """A backend serving exactly [genesis, the big block]."""

    name = "bench"

    def __init__(self, block):
        from chain.backends import Block, BlockHeader

        self.genesis = Block(BlockHeader(0, block.header.prev_hash, None, 1_789_999_400), ())
        self.big = block

    def tip(self):
        return self.big.header

    def block_hash_at(self, height):
        return {0: self.genesis.header.hash, 1: self.big.header.hash}.get(height)

    def block(self, block_hash):
        return self.big if block_hash == self.big.header.hash else self.genesis

    def mempool_txs(self, watched):
        return []

    def tx_status(self, txid):
        from chain.backends import UNKNOWN_TX

        return UNKNOWN_TX

    def close(self):
        pass


def setup_db(url: str, open_invoices: int, now: datetime):
    """A fresh migrated database with `open_invoices` New invoices, bulk-inserted."""
    from sqlalchemy import insert

    from database import Database
    from merchants.service import create_store
    from migrations.commands import upgrade
    from payments.addresses import DEMO_TREASURY_KEY
    from payments.models import Invoice
    from payments.service import register_key

    upgrade(url)
    db = Database(url)
    with db.write() as s:
        key_id = register_key(s, DEMO_TREASURY_KEY, "regtest", "treasury").id
        store_id = create_store(s, name="Bench").id
    rows = [{
        "id": uuid.uuid4().hex[:22], "store_id": store_id, "currency": "KRW",
        "amount_text": "15000", "amount_krw": 15_000, "due_sats": 10_000,
        "rate": Decimal("150000000"), "rate_raw": Decimal("150000000"), "rate_source": "fixed",
        "rate_fetched_at": now, "key_id": key_id, "key_index": i, "address": fake_address(i),
        "status": "New", "additional_status": "None", "speed_policy": "MediumSpeed",
        "payment_tolerance": Decimal("0"), "zero_conf_limit_krw": 0, "paid_sats": 0,
        "created_at": now, "expires_at": now + timedelta(minutes=15),
        "monitoring_expires_at": now + timedelta(hours=24, minutes=15), "updated_at": now,
        "order_id": None, "metadata_json": "{}", "checkout_json": "{}", "incident": None,
        "archived": False, "version": 1} for i in range(open_invoices)]
    with db.write() as s:
        for start in range(0, len(rows), 2_000):
            s.execute(insert(Invoice.__table__), rows[start:start + 2_000])
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return db


def reset(db, best_hash: str) -> None:
    """Undo the big block: the cursor back on genesis, its rows gone, invoices New."""
    from sqlalchemy import delete, update

    from chain.models import ChainBlock, ChainPaymentTrack, ChainTxInput, ChainWatcherState
    from payments.models import Invoice, InvoiceEvent, Payment

    with db.write() as s:
        for model in (InvoiceEvent, Payment, ChainPaymentTrack, ChainTxInput):
            s.execute(delete(model.__table__))
        s.execute(delete(ChainBlock.__table__).where(ChainBlock.height > 0))
        s.execute(update(Invoice.__table__).where(Invoice.status != "New").values(
            status="New", additional_status="None", paid_sats=0, version=1))
        s.execute(update(ChainWatcherState.__table__).values(best_height=0, best_hash=best_hash))


class Case:
    """One database with `open_invoices` open invoices and a watcher ready at genesis."""

    def __init__(self, url: str, open_invoices: int, block):
        from chain.watcher import Watcher
        from payments.models import Payment

        self.open = open_invoices
        self.now = datetime.now(timezone.utc)
        self.db = setup_db(url, open_invoices, self.now)

        class GW:  # the watcher needs a gateway's db and clock only
            pass

        gw = GW()
        gw.db, gw.clock, gw.extras = self.db, (lambda: self.now), {}
        self.chain = FixedChain(block)
        self.block = block
        self.watcher = Watcher(gw, self.chain, lookback=0)
        self.watcher.run_once()  # genesis and the big block, once, to warm up and check
        with self.db.read() as s:
            found = s.execute(select_count(Payment)).scalar()
        assert found == MATCHED, f"the block's {MATCHED} payments were not found ({found})"
        self.block_times: list[float] = []
        self.pass_times: list[float] = []

    def measure(self, profile: bool) -> None:
        genesis = self.chain.genesis.header.hash
        reset(self.db, genesis)
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
        t = time.perf_counter()
        self.watcher._process_block(self.block, genesis, {"events": 0, "invoicesChanged": 0})
        self.block_times.append(time.perf_counter() - t)
        if profile:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(r"watcher.py|logic.py", 20)
        reset(self.db, genesis)
        t = time.perf_counter()
        summary = self.watcher.run_once()
        self.pass_times.append(time.perf_counter() - t)
        assert summary["ok"] and summary["payments"] == MATCHED, summary

    def result(self) -> dict:
        return {"open": self.open, "block": min(self.block_times),
                "block_median": statistics.median(self.block_times),
                "pass": min(self.pass_times)}


def select_count(model):
    from sqlalchemy import func, select

    return select(func.count()).select_from(model)


def measure_latency(rounds: int) -> dict:
    """`demo pay` (in-process) -> the checkout's status.json ETag changes, with the
    in-process worker running (watcher every second), on an embedded SQLite app."""
    from app import create_app, start_background_work
    from chain import cli as chain_cli
    from chain.jobs import jobs as chain_jobs
    from chain import demo_ops
    from merchants.service import ALL_PERMISSIONS, create_store, issue_api_key

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    app = create_app({"instance_path": str(tmp), "database_url": f"sqlite:///{tmp / 'db.sqlite3'}",
                      "rate_sources": "fixed:150000000", "chain": "demo",
                      "inprocess_worker": True, "invoice_rate_limit": "100000 per minute"})
    from migrations.commands import upgrade

    upgrade(app.extensions["busanpay"].settings.database_url)
    chain_cli.register(app)
    gateway = app.extensions["busanpay"]
    if not any(job.name == "watcher" for job in gateway.extras.get("jobs", [])):
        gateway.extras.setdefault("jobs", []).extend(chain_jobs(gateway))
    scheduler = start_background_work(app)
    with gateway.db.write() as s:
        store = create_store(s, name="Latency")
        token = issue_api_key(s, store.id, ALL_PERMISSIONS).token
    client = app.test_client()
    latencies = []
    try:
        for _ in range(rounds):
            res = client.post(f"/api/v1/stores/{store.id}/invoices", json={"amount": 15000},
                              headers={"Authorization": f"token {token}"})
            invoice_id = res.get_json()["id"]
            first = client.get(f"/i/{invoice_id}/status.json")
            etag = first.headers["ETag"]
            time.sleep(0.3)
            start = time.perf_counter()
            demo_ops.pay(gateway, invoice_id)
            while True:
                again = client.get(f"/i/{invoice_id}/status.json", headers={"If-None-Match": etag})
                if again.status_code == 200:
                    break
                if time.perf_counter() - start > 10:
                    raise RuntimeError("status.json never changed")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - start)
    finally:
        if scheduler:
            scheduler.stop()
        gateway.close()
    return {"rounds": rounds, "median": statistics.median(latencies), "max": max(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a PostgreSQL URL of an EMPTY database (default: SQLite files)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--latency", action="store_true", help="also measure pay -> status.json")
    parser.add_argument("--latency-rounds", type=int, default=10)
    args = parser.parse_args()

    rng = random.Random(7)
    paying = [fake_address(i) for i in rng.sample(range(1_000), MATCHED)]
    block, core_json = build_block(rng, paying)
    from chain.backends import Block
    from chain.backends.bitcoind import loads, parse_header, parse_tx

    loads_times, parse_times = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        json.loads(core_json)
        loads_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        data = loads(core_json)
        Block(parse_header(data), tuple(parse_tx(x) for x in data["tx"]))
        parse_times.append(time.perf_counter() - t)
    json_loads = min(loads_times)
    print(f"block: {TXS} txs, {OUTPUTS} outputs, {MATCHED} paying invoices; "
          f"Core JSON {len(core_json) / 1e6:.1f} MB")
    print(f"json.loads (plain):                {json_loads * 1000:8.1f} ms")
    print(f"Core JSON -> Block (backend parse): {min(parse_times) * 1000:8.1f} ms")
    admin, names, cases = None, [], []
    try:
        for open_invoices in (1_000, 100_000):
            if args.db:
                from sqlalchemy import create_engine, text

                admin = admin or create_engine(args.db, isolation_level="AUTOCOMMIT")
                name = f"bench_watcher_{uuid.uuid4().hex[:8]}"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                names.append(name)
                url = args.db.rsplit("/", 1)[0] + "/" + name
            else:
                url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-watcher-')}/db.sqlite3"
            cases.append(Case(url, open_invoices, block))
        # Interleaved, so load from anything else on the machine hits both cases alike.
        for _ in range(args.repeat):
            for case in cases:
                case.measure(args.profile)
    finally:
        for case in cases:
            case.db.dispose()
        if admin is not None:
            from sqlalchemy import text

            for name in names:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    results = [case.result() for case in cases]
    for result in results:
        print(f"{result['open']:>7,} open invoices: block {result['block'] * 1000:7.1f} ms "
              f"(median {result['block_median'] * 1000:.1f}), whole pass "
              f"{result['pass'] * 1000:7.1f} ms, {result['block'] / json_loads:.2f}x json.loads")
    few, many = results
    ratio = many["block"] / few["block"]
    print(f"100,000 vs 1,000 open invoices: {ratio:.2f}x "
          f"({'within' if abs(ratio - 1) <= 0.2 else 'NOT within'} 20 %); "
          f"both under 1 s: {max(few['block'], many['block']) < 1.0}")
    if args.latency:
        lat = measure_latency(args.latency_rounds)
        print(f"demo pay -> status.json ETag change ({lat['rounds']} rounds, worker every 1 s): "
              f"median {lat['median'] * 1000:.0f} ms, max {lat['max'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
