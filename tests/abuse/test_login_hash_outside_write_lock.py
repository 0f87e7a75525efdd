"""Finding 6: the slow password/PIN hash is checked outside any write transaction. It used
to run inside SQLite's BEGIN IMMEDIATE (the global write lock): bogus logins stalled
invoice creation (5 ms → 2.4 s median) and some logins failed with "database is locked"."""
from __future__ import annotations

import statistics
import threading
import time

import pytest
import requests

from accounts.service import create_user
from tests.abuse.login_http import Browser
from tests.conftest import auth, make_merchant
from tests.e2e.conftest import live_server

ATTACKERS = 8


@pytest.fixture
def app_config(app_config):
    # Every bogus login is really hashed: no limit or throttle stops it early.
    app_config.update(login_rate_limit="100000 per minute", login_free_per_client=100000,
                      login_free_per_account=100000)
    return app_config


def test_invoices_keep_being_created_while_bogus_logins_run(app):
    store_id, token = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email="owner@cafe.kr", password="correct horse 1",
                    store_id=store_id)
        create_user(s, role="cashier", store_id=store_id, pin="2468", display_name="Minji")
    with live_server(app, "abuse-hash") as url:
        stop = threading.Event()
        login_codes: list[int] = []

        def attacker(n: int):
            browser = Browser(url)
            token_ = browser.csrf("/login")
            tries = 0
            while not stop.is_set():
                tries += 1
                # Real and unknown accounts alike: each costs a hash check.
                if n % 4 == 0:
                    res = browser.password_login("owner@cafe.kr", f"guess {n}", token_)
                elif n % 4 == 1:
                    res = browser.password_login(f"nobody{n}-{tries}@cafe.kr", "guess", token_)
                elif n % 4 == 2:
                    res = browser.pin_login(store_id, f"{1000 + n}", token_)
                else:
                    res = browser.pin_login(f"NOPE{n}{tries}", "1234", token_)
                login_codes.append(res.status_code)

        threads = [threading.Thread(target=attacker, args=(n,)) for n in range(ATTACKERS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the attack is under way
        latencies, codes = [], []
        api = requests.Session()
        try:
            for n in range(20):
                started = time.perf_counter()
                res = api.post(f"{url}/api/v1/stores/{store_id}/invoices", headers=auth(token),
                               json={"amount": str(1000 + n), "currency": "KRW"}, timeout=60)
                latencies.append(time.perf_counter() - started)
                codes.append(res.status_code)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    assert codes == [200] * 20
    assert len(login_codes) >= ATTACKERS and set(login_codes) == {401}
    # Scrypt still takes the CPU (2 cores shared with the attackers), never the write lock.
    assert statistics.median(latencies) < 0.5, latencies
