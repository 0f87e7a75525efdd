"""The watcher as real processes: `flask --app app watcher once` killed with SIGKILL at random
points (restarted until done) ends exactly where an uninterrupted run ends; several
`flask --app app worker` processes on one PostgreSQL and one demo chain end exactly where
one worker ends."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, _pg_reachable

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers

def _app_target(tmp: Path) -> str:
    """`app` itself once it registers the chain commands; until then a wrapper that adds
    them (chain.cli.register is idempotent)."""
    if "chain.cli" in (ROOT / "app.py").read_text():
        return "app"
    (tmp / "chainapp.py").write_text(
        "from app import create_app as _create\n\n\n"
        "def create_app():\n"
        "    app = _create()\n"
        "    from chain.cli import register\n"
        "    register(app)\n"
        "    return app\n")
    return "chainapp:create_app"


class Env:
    """One database plus the shared demo chain (in `instance`), as subprocesses see them."""

    def __init__(self, tmp: Path, instance: Path, db_url: str):
        self.tmp, self.instance, self.db_url = tmp, instance, db_url
        self.target = _app_target(tmp)

    def environ(self) -> dict:
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(self.tmp)]),
            "DATABASE_URL": self.db_url,
            "BUSANPAY_INSTANCE": str(self.instance),
            "BUSANPAY_CHAIN": "demo",
            "BUSANPAY_RATE_SOURCES": "fixed:150000000",
            "BUSANPAY_INPROCESS_WORKER": "0",
            "BUSANPAY_SECRET_KEY": "test-secret",
            "BCL_DATA_DIR": str(self.instance / "bitcoinlib"),
        })
        return env

    def flask(self, *args, log: Path | None = None) -> subprocess.Popen:
        """A `flask` subprocess; long-running ones write to `log` (a pipe nobody reads
        would fill up and block them)."""
        out = open(log, "w") if log else subprocess.PIPE
        try:
            return subprocess.Popen([FLASK, "--app", self.target, *args], cwd=str(ROOT),
                                    env=self.environ(), stdout=out, stderr=subprocess.STDOUT
                                    if log else subprocess.PIPE, text=True,
                                    start_new_session=True)
        finally:
            if log:
                out.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_db(request, tmp_path):
    """A factory of fresh, migrated databases of the parametrised kind."""
    from migrations.commands import upgrade

    created = []
    if request.param == "postgresql":
        reason = _pg_reachable()
        if reason:
            pytest.skip(reason)
        import psycopg

    def make() -> str:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.sqlite3'}"
        else:
            name = f"busanpay_proc_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            created.append(name)
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            url = f"{base}/{name}"
        upgrade(url)
        return url

    make.kind = request.param
    yield make
    for name in created:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_invoices(tmp: Path, db_url: str, amounts: list[int], speed="MediumSpeed") -> list[str]:
    """Invoices through the public API of an in-process app on `db_url`: the same amounts in
    the same order give the same addresses (key indexes) in every database."""
    from app import create_app
    from tests.conftest import auth, make_merchant

    app = create_app({"instance_path": str(tmp / f"inst-{uuid.uuid4().hex[:6]}"),
                      "database_url": db_url, "rate_sources": "fixed:150000000",
                      "inprocess_worker": False, "TESTING": True,
                      "invoice_rate_limit": "100000 per minute"})
    try:
        store_id, token = make_merchant(app, speed_policy=speed)
        client = app.test_client()
        addresses = []
        for amount in amounts:
            res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": amount},
                              headers=auth(token))
            assert res.status_code == 200, res.get_json()
            methods = client.get(f"/api/v1/invoices/{res.get_json()['id']}/payment-methods",
                                 headers=auth(token)).get_json()
            addresses.append(methods[0]["destination"])
        return addresses
    finally:
        app.extensions["busanpay"].close()


def snapshot(db_url: str) -> dict:
    """Everything the watcher decides, keyed by what is the same across databases (address
    index, txid), without wall-clock times."""
    engine = create_engine(db_url.replace("sqlite:///", "sqlite:///", 1))
    with engine.connect() as conn:
        index = {r.id: r.key_index for r in conn.execute(text("SELECT id, key_index FROM invoice"))}
        invoices = sorted((r.key_index, r.status, r.additional_status, r.paid_sats, r.incident,
                           r.version)
                          for r in conn.execute(text("SELECT * FROM invoice")))
        payments = sorted((r.txid, r.vout, index[r.invoice_id], r.value_sats, r.state,
                           r.block_height, r.block_hash, bool(r.late))
                          for r in conn.execute(text("SELECT * FROM payment")))
        events = []
        for r in conn.execute(text("SELECT * FROM invoice_event")):
            body = json.loads(r.payload_json)
            for volatile in ("timestamp", "storeId", "invoiceId"):
                body.pop(volatile, None)
            if "payment" in body:
                body["payment"].pop("receivedDate", None)
            events.append((index[r.invoice_id], r.event_type,
                           r.dedupe_key.replace(r.invoice_id, str(index[r.invoice_id])),
                           json.dumps(body, sort_keys=True)))
        blocks = sorted((r.height, r.hash, bool(r.orphaned))
                        for r in conn.execute(text("SELECT * FROM chain_block")))
        state = conn.execute(text("SELECT best_height, best_hash FROM chain_watcher_state")).one()
    engine.dispose()
    return {"invoices": invoices, "payments": payments, "events": sorted(events),
            "blocks": blocks, "best": tuple(state)}


def watcher_once(env: Env, timeout: float = 120) -> dict:
    proc = env.flask("watcher", "once")
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


# --------------------------------------------------------------------------- crash safety

def build_busy_chain(instance: Path, addresses: list[str], rng: random.Random,
                     blocks: int) -> int:
    """Blocks with many matched outputs (full, partial, over-payments), then top-ups of
    partly paid invoices left in the mempool. Returns the number of payments."""
    from chain.backends.demo import DemoChain

    chain = DemoChain(str(instance / "demochain.sqlite3"))
    try:
        per_block = len(addresses) // blocks
        partial = []
        for start in range(0, len(addresses), per_block):
            for address in addresses[start:start + per_block]:
                sats = rng.choice([10_000, 10_000, 4_000, 12_000])
                chain.pay(address, sats)
                if sats < 10_000:
                    partial.append(address)
            chain.mine()
        for address in partial[:10]:
            chain.pay(address, 6_000)  # unconfirmed top-ups, seen in the mempool
        return len(addresses) + len(partial[:10])
    finally:
        chain.close()


def _blocks_done(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM chain_block")).scalar()


def test_a_watcher_killed_at_random_points_ends_identical_to_an_uninterrupted_run(
        make_db, tmp_path):
    """Each kill lands a random 0-60 ms after a random number of further blocks were
    committed: inside a block's transaction or between two."""
    seed = int(os.environ.get("BUSANPAY_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    instance = tmp_path / "instance"
    instance.mkdir()
    amounts = [15_000] * 400
    calm_url, crash_url = make_db(), make_db()
    addresses = create_invoices(tmp_path, calm_url, amounts)
    assert create_invoices(tmp_path, crash_url, amounts) == addresses
    expected = build_busy_chain(instance, addresses, rng, blocks=8)
    calm, crashed = Env(tmp_path, instance, calm_url), Env(tmp_path, instance, crash_url)

    summary = watcher_once(calm)
    assert summary["ok"] and summary["payments"] == expected and summary["blocks"] == 9, summary
    total_blocks = summary["blocks"]

    engine = create_engine(crash_url)
    kills = mid_chain = 0
    try:
        while kills < 8:
            done_before = _blocks_done(engine)
            if done_before >= total_blocks:
                break
            target = min(done_before + rng.randint(0, 2), total_blocks - 1)
            proc = crashed.flask("watcher", "once")
            while proc.poll() is None and _blocks_done(engine) < target:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.06))
            if proc.poll() is not None:
                break  # it finished first: the rest runs calmly below
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            if 0 < _blocks_done(engine) < total_blocks:
                mid_chain += 1
    finally:
        engine.dispose()
    print(f"seed {seed}: {kills} kills, {mid_chain} left the chain half-processed")
    assert kills >= 3 and mid_chain >= 1, f"seed {seed}: the kills did not land"
    summary = watcher_once(crashed)
    assert summary["ok"], summary
    # One more calm pass on each side: nothing left to do, nothing changes.
    watcher_once(crashed)
    watcher_once(calm)
    a, b = snapshot(calm_url), snapshot(crash_url)
    for part in a:
        assert a[part] == b[part], f"seed {seed}: {part} differs after {kills} kills"
    assert len(a["payments"]) == expected
    assert sum(1 for e in a["events"] if e[1] == "InvoiceReceivedPayment") == expected


# --------------------------------------------------------------------------- several workers

def _wait_caught_up(db_url: str, chain, since: float, timeout: float = 180.0) -> None:
    """Until a pass that started after `since` (unix time) completed at the chain's tip."""
    engine = create_engine(db_url)
    tip = chain.tip().hash
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT best_hash, covered_at FROM chain_watcher_state")).first()
            if row and row.best_hash == tip and row.covered_at is not None:
                covered = row.covered_at
                if covered.tzinfo is None:
                    from datetime import timezone
                    covered = covered.replace(tzinfo=timezone.utc)
                if covered.timestamp() > since:
                    return
            time.sleep(0.1)
        raise AssertionError("the workers did not catch up")
    finally:
        engine.dispose()


def drive(env: Env, addresses: list[str], workers: int) -> dict:
    """The same story for any number of workers: each step waits until a watcher pass
    after it has completed, so the outcome cannot depend on timing."""
    from chain.backends.demo import DemoChain

    logs = [env.tmp / f"worker-{workers}-{n}.log" for n in range(workers)]
    procs = [env.flask("worker", log=log) for log in logs]
    chain = DemoChain(str(env.instance / "demochain.sqlite3"))
    try:
        def step():
            _wait_caught_up(env.db_url, chain, time.time() + 0.01)

        step()
        # A big block: 120 payments at once.
        for address in addresses[:120]:
            chain.pay(address, 10_000)
        chain.mine()
        step()
        # Mempool payments, a replacement, a partial.
        txids = [chain.pay(address, 10_000) for address in addresses[120:140]]
        chain.pay(addresses[140], 4_000)
        step()
        chain.double_spend(txids[0])
        step()
        chain.mine()
        step()
        # A reorg of the last block (its payments go back to the mempool), then re-mined.
        chain.reorg(1)
        step()
        chain.mine(2)
        step()
    finally:
        chain.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs, logs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            assert proc.returncode == 0, log.read_text()[-3000:]
    return snapshot(env.db_url)


def _shape(snap: dict) -> dict:
    """What must match between two separately built chains (txids and hashes differ)."""
    by_invoice: dict[int, list] = {}
    for txid, vout, index, value, state, height, _hash, late in snap["payments"]:
        by_invoice.setdefault(index, []).append((value, state, height, late))
    events = sorted((e[0], e[1]) for e in snap["events"])
    return {"invoices": [i[:5] for i in snap["invoices"]],
            "payments": {k: sorted(v) for k, v in by_invoice.items()},
            "events": events,
            # Hashes differ between the two chains, so order blocks by what they are.
            "blocks": sorted((h, o) for h, _hash, o in snap["blocks"])}


def test_several_workers_on_one_postgresql_end_identical_to_one_worker(tmp_path):
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    from migrations.commands import upgrade

    names, results = [], {}
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        for workers in (1, 3):
            name = f"busanpay_workers_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            names.append(name)
            url = f"{base}/{name}"
            upgrade(url)
            instance = tmp_path / f"instance-{workers}"
            instance.mkdir()
            addresses = create_invoices(tmp_path, url, [15_000] * 150)
            results[workers] = drive(Env(tmp_path, instance, url), addresses, workers)
    finally:
        for name in names:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    one, many = _shape(results[1]), _shape(results[3])
    for part in one:
        assert one[part] == many[part], part
    # No double counts, no skips.
    assert sum(len(v) for v in many["payments"].values()) == 141
    received = [e for e in many["events"] if e[1] == "InvoiceReceivedPayment"]
    assert len(received) == 141 and len(set(received)) == 141
    heights = [h for h, orphaned in many["blocks"] if not orphaned]
    assert len(heights) == len(set(heights))
