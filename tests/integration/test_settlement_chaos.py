"""Chaos: the settlement CLI killed with SIGKILL at random points, then rerun.

A subprocess runs `flask settlement run` against the test database (a SQLite file and
PostgreSQL) and the Stripe double; it is killed after a random delay, sometimes while
Stripe hangs after creating a transfer. After every kill `flask ledger check` must pass,
and no merchant may ever have two transfers; the final run pays everyone exactly once.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.stripe_server import StripeFake
from tests.integration.test_settlement_support import (new_store, post_all, settled_invoice,
                                                       sgateway)  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def cli_env(db_url: str, instance: Path, fake: StripeFake) -> dict:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": db_url, "BUSANPAY_INSTANCE": str(instance),
        "BUSANPAY_RATE_SOURCES": "fixed:150000000", "BUSANPAY_INPROCESS_WORKER": "0",
        "BUSANPAY_PAYOUT_RAIL": "stripe", "STRIPE_API_KEY": fake.api_key,
        "STRIPE_API_BASE": fake.url, "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
        "STRIPE_TIMEOUT": "1", "STRIPE_MAX_RETRIES": "0", "PYTHONPATH": str(ROOT),
        "BCL_DATA_DIR": str(instance / "bitcoinlib"),
    })
    return env


def flask(*args) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "settlement.install:create_app", *args]


def test_killing_the_settlement_run_anywhere_never_pays_twice_nor_loses_a_payout(
        app, sgateway, clock, db_url, tmp_path):
    from settlement.payouts import set_payout_account

    rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
    stores = {}
    for i in range(20):
        store = new_store(app, name=f"Chaos {i}")
        account = f"acct_chaos{i:02d}"
        with sgateway.db.write() as session:
            set_payout_account(session, store, stripe_account_id=account, rail="stripe")
        settled_invoice(sgateway, store, 10_000 + 1_000 * i)
        stores[store] = account
    post_all(sgateway)
    with StripeFake() as fake:
        fake.delay = 0.15
        fake.hang_seconds = 2.0
        env = cli_env(db_url, tmp_path / "instance", fake)
        kills = 0
        for round_ in range(8):
            if rng.random() < 0.4:
                fake.fail_next(rng.choice(["hang_after_create", "500_after_create"]))
            proc = subprocess.Popen(flask("settlement", "run", "--date", "2026-11-23"), cwd=ROOT,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.8, 4.5))  # start-up takes ~1.2 s, the run ~3 s
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=60)
            per_destination = Counter(t["destination"] for t in fake.transfers.values())
            assert max(per_destination.values(), default=0) <= 1, per_destination
            check = subprocess.run(flask("ledger", "check"), cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=120)
            assert check.returncode == 0, (round_, check.stdout[-3000:], check.stderr[-3000:])
        final = subprocess.run(flask("settlement", "run", "--date", "2026-11-23"), cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
        assert final.returncode == 0, final.stderr[-3000:]
        if json.loads(final.stdout)["waiting"]:  # a hang in the last round: one more retry
            final = subprocess.run(flask("settlement", "run", "--date", "2026-11-23"), cwd=ROOT,
                                   env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(final.stdout)["waiting"] == 0
        transfers = list(fake.transfers.values())
    assert sorted(t["destination"] for t in transfers) == sorted(stores.values())
    amounts = {t["destination"]: t["amount"] for t in transfers}
    for i, account in enumerate(sorted(stores.values())):
        assert amounts[account] == (10_000 + 1_000 * i) * 99 // 100
    check = subprocess.run(flask("ledger", "check"), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout[-3000:]
    print(f"chaos: {kills} kills, {len(fake.requests)} Stripe requests, {len(transfers)} transfers")
