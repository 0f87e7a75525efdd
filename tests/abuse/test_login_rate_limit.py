"""Finding 4: login rate limits key on the client's address, never on a header the client
chooses. A made-up `Authorization: token …` header (or X-Forwarded-For when no proxy of
ours is configured) used to give every guess a fresh bucket."""
from __future__ import annotations

import secrets

import pytest

from tests.abuse.conftest import PIN
from tests.abuse.login_http import Browser


@pytest.fixture
def app_config(app_config):
    # Only Flask-Limiter counts here: the per-account throttle is tested elsewhere.
    app_config.update(login_rate_limit="10 per minute", login_free_per_client=1000,
                      login_free_per_account=1000)
    return app_config


def forged_headers() -> dict:
    return {"Authorization": f"token {secrets.token_hex(32)}",
            "X-Forwarded-For": f"198.51.100.{secrets.randbelow(250) + 1}",
            "X-Real-IP": f"203.0.113.{secrets.randbelow(250) + 1}"}


@pytest.mark.parametrize("path", ["/login", "/pos/login"])
def test_thirty_tries_with_random_authorization_headers_get_429_after_the_limit(live_shop, path):
    url, store_id, _ = live_shop
    browser = Browser(url)
    token = browser.csrf(path)
    codes = []
    for _ in range(30):
        if path == "/login":
            res = browser.password_login("owner@cafe.kr", "wrong password", token,
                                         headers=forged_headers())
        else:
            res = browser.pin_login(store_id, "1111", token, headers=forged_headers())
        codes.append(res.status_code)
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429] * 20


def test_another_client_address_keeps_its_own_allowance(live_shop):
    url, store_id, _ = live_shop
    attacker = Browser(url, "127.0.0.1")
    token = attacker.csrf("/pos/login")
    for _ in range(11):
        last = attacker.pin_login(store_id, "1111", token)
    assert last.status_code == 429
    cashier = Browser(url, "127.0.0.2")
    assert cashier.pin_login(store_id, PIN).status_code == 302


@pytest.fixture
def proxied_config(app_config):
    app_config["trusted_proxies"] = "127.0.0.1"  # our own reverse proxy sets X-Forwarded-For
    return app_config


def test_behind_our_proxy_the_forwarded_client_address_is_the_key(proxied_config, live_shop):
    url, store_id, _ = live_shop
    browser = Browser(url)
    token = browser.csrf("/pos/login")
    first = [browser.pin_login(store_id, "1111", token,
                               headers={"X-Forwarded-For": "198.51.100.1"}).status_code
             for _ in range(11)]
    assert first == [401] * 10 + [429]
    other = browser.pin_login(store_id, "1111", token, headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 401
