"""Finding 7: lock the attacker, not the store. Wrong PINs from anyone used to lock the
store's whole POS for 15 minutes (renewable forever) and the message told which accounts
exist. Now unknown devices are throttled per address and per store with growing delays,
the store's own tablet (a device cookie we signed when it signed in) keeps working, and
every refusal says the same "wrong store code or PIN"."""
from __future__ import annotations

import pytest
from sqlmodel import select

from accounts.service import create_user
from merchants.models import Store
from tests.abuse.conftest import PIN
from tests.abuse.login_http import Browser

WRONG = "Wrong store code or PIN."


@pytest.fixture
def app_config(app_config):
    app_config.update(login_rate_limit="100000 per minute", login_free_per_client=10,
                      login_free_per_account=5)
    return app_config


def test_the_known_tablet_keeps_working_while_the_store_is_under_attack(live_shop, clock):
    url, store_id, code = live_shop
    tablet = Browser(url, "127.0.0.1")
    assert tablet.pin_login(code, PIN).status_code == 302
    assert tablet.post("/logout", data={"csrf_token": tablet.csrf("/pos/login")}).status_code == 302
    assert f'value="{code}"' in tablet.get("/pos/login").text  # it remembers its store

    # Attackers from many addresses, one on the café's own Wi-Fi address.
    refusals = []
    for n in range(2, 12):
        attacker = Browser(url, f"127.0.0.{n}")
        for guess in ("111111", "222222"):
            res = attacker.pin_login(code, guess)
            refusals.append(res.status_code)
    same_wifi = Browser(url, "127.0.0.1")
    blocked = same_wifi.pin_login(code, "333333")
    assert refusals[:5] == [401] * 5 and set(refusals[5:]) == {429}
    assert blocked.status_code == 429 and "Try again in" in blocked.text
    # A new tablet with the right PIN waits like the attackers: the store is throttled…
    assert Browser(url, "127.0.0.20").pin_login(code, PIN).status_code == 429
    # …but the known tablet signs in at once, even from the attacked address.
    res = tablet.pin_login(code, PIN)
    assert res.status_code == 302 and res.headers["Location"].endswith("/pos")
    assert tablet.get("/pos").status_code == 200


def test_the_delays_grow_for_an_attacker_and_lift_for_nobody_else(live_shop, clock):
    url, store_id, code = live_shop
    attacker = Browser(url, "127.0.0.5")
    codes = [attacker.pin_login(code, "111111").status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    waits = []
    for _ in range(3):
        first = attacker.pin_login(code, "111111")
        waits.append(int(first.headers["Retry-After"]))
        clock.advance(seconds=waits[-1] + 1)  # Retry-After is rounded down
        assert attacker.pin_login(code, "111111").status_code == 401  # one more guess…
    assert waits[0] <= 60 and waits[0] < waits[1] < waits[2]  # …after ever longer waits


def test_one_address_guessing_across_many_stores_is_locked_out(live_shop, app):
    url, _, _ = live_shop
    with app.extensions["busanpay"].db.read() as s:
        codes = [store.pos_code for store in s.exec(select(Store))]
    others = []
    with app.extensions["busanpay"].db.write() as s:
        from merchants.service import create_store

        others = [create_store(s, name=f"Shop {n}").pos_code for n in range(12)]
    attacker = Browser(url, "127.0.0.9")
    results = [attacker.pin_login(c, "111111").status_code for c in codes + others]
    assert results[:10] == [401] * 10 and set(results[10:]) == {429}
    # Another address is not affected.
    assert Browser(url, "127.0.0.10").pin_login(others[-1], "111111").status_code == 401


def test_every_refusal_reads_the_same_whether_or_not_the_store_exists(live_shop):
    url, store_id, code = live_shop
    answers = []
    for n, store in enumerate((code, code.lower(), store_id, "ZZZZZZ", "nope", "A" * 48)):
        res = Browser(url, f"127.0.1.{n + 1}").pin_login(store, "111111")
        answers.append((res.status_code, WRONG in res.text))
    assert set(answers) == {(401, True)}
    # Throttled answers for a real and a made-up store are alike too.
    throttled = []
    for store in (code, "KKKKKK"):
        attacker = Browser(url, "127.0.2.1" if store == code else "127.0.2.2")
        for _ in range(5):
            attacker.pin_login(store, "111111")
        res = attacker.pin_login(store, "111111")
        throttled.append((res.status_code, 58 <= int(res.headers["Retry-After"]) <= 60,
                          "Try again in" in res.text))
    assert throttled[0] == throttled[1] == (429, True, True)


def test_a_forged_or_foreign_device_cookie_is_not_a_known_tablet(live_shop, app):
    url, store_id, code = live_shop
    with app.extensions["busanpay"].db.write() as s:
        from merchants.service import create_store

        other = create_store(s, name="Attacker's own shop")
        create_user(s, role="cashier", store_id=other.id, pin="990011", display_name="Eve")
    attacker = Browser(url, "127.0.0.7")
    assert attacker.pin_login(other.pos_code, "990011").status_code == 302  # a real device cookie…
    for _ in range(5):
        attacker.pin_login(code, "111111")
    assert attacker.pin_login(code, "111111").status_code == 429  # …for its own store only
    forged = Browser(url, "127.0.0.8")
    forged.http.cookies.set("busanpay_device", attacker.http.cookies["busanpay_device"] + "x")
    assert forged.pin_login(code, PIN).status_code == 429
