"""Finding 5: failures are counted atomically, before the PIN is checked, so 64 parallel
guesses check exactly the allowed number and the right PIN among the rest gets nowhere.
(The old code read `failed_logins`, added one in Python and wrote it back: on PostgreSQL
all 64 guesses were checked and the right one signed in.)"""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlmodel import select

from accounts.models import LoginThrottle
from accounts.service import create_user
from tests.abuse.login_http import Browser
from tests.conftest import make_merchant
from tests.e2e.conftest import live_server

FREE = 5
PIN = "583920"
GUESSES = 64


@pytest.fixture
def app_config(app_config):
    # Flask-Limiter's per-address limit and the per-address throttle are out of the way:
    # the store's own count is what must hold here.
    app_config.update(login_rate_limit="100000 per minute", login_free_per_client=100000,
                      login_free_per_account=FREE)
    return app_config


@pytest.fixture
def server(app):
    store_id, _ = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Minji")
    with live_server(app, "abuse-parallel") as url:
        yield url, store_id


def parallel_guesses(url: str, store_id: str, pins: list[str]) -> list[tuple[str, int]]:
    """Every guess from its own browser, all released at once; (pin, status) each."""
    browsers = [Browser(url) for _ in pins]
    tokens = [b.csrf("/pos/login") for b in browsers]
    start = threading.Barrier(len(pins))
    results: list[tuple[str, int]] = []
    lock = threading.Lock()

    def guess(browser, token, pin):
        start.wait(timeout=60)
        status = browser.pin_login(store_id, pin, token).status_code
        with lock:
            results.append((pin, status))

    threads = [threading.Thread(target=guess, args=args) for args in zip(browsers, tokens, pins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == len(pins)
    return results


def test_sixty_four_parallel_guesses_check_exactly_the_allowed_number(server, app):
    url, store_id = server
    wrong = [f"{n:06d}" for n in range(100000, 100000 + GUESSES)]
    results = parallel_guesses(url, store_id, wrong)
    codes = Counter(status for _, status in results)
    assert codes == {401: FREE, 429: GUESSES - FREE}
    with app.extensions["busanpay"].db.read() as s:
        row = s.exec(select(LoginThrottle).where(LoginThrottle.key == f"store:{store_id}")).one()
    assert row.failures == FREE and row.blocked_until is not None

    # The limit is reached: the right PIN among 64 more parallel guesses gets nowhere.
    again = wrong[:GUESSES - 1] + [PIN]
    results = parallel_guesses(url, store_id, again)
    assert Counter(status for _, status in results) == {429: GUESSES}
    assert Browser(url).get("/pos").status_code == 302  # nobody is signed in


def test_the_right_pin_gets_in_only_if_it_was_among_the_checked_guesses(server):
    url, store_id = server
    pins = [f"{n:06d}" for n in range(200000, 200000 + GUESSES - 1)] + [PIN]
    results = parallel_guesses(url, store_id, pins)
    checked = [(pin, status) for pin, status in results if status != 429]
    right = dict(results)[PIN]
    assert all(status == 401 for pin, status in checked if pin != PIN)
    if right == 429:  # refused unchecked: exactly the free number were checked
        assert len(checked) == FREE
    else:
        # It was among the first FREE and signed in; the right answer starts the store's
        # count again, so guesses still in flight may be checked after it (never before).
        assert right == 302 and len(checked) >= FREE
