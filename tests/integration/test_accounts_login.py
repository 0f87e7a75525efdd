"""Sign-in for owners, city staff and cashiers: CSRF, lock-out, audit log, rate limit."""
from __future__ import annotations

import re

import pytest
from sqlmodel import select

from accounts.models import AuditEntry, User
from accounts.service import AccountError, create_user
from merchants.models import Store
from tests.conftest import make_merchant


def csrf_token(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


@pytest.fixture
def people(app):
    store_id, _ = make_merchant(app)
    gateway = app.extensions["busanpay"]
    with gateway.db.write() as s:
        create_user(s, role="owner", email="owner@cafe.kr", password="correct horse 1",
                    store_id=store_id)
        create_user(s, role="cashier", store_id=store_id, pin="2468", display_name="Minji")
        create_user(s, role="city_admin", email="admin@busan.go.kr", password="city admin pass 1")
    return store_id


def test_an_owner_signs_in_with_email_and_password_and_it_is_audited(client, app, people):
    token = csrf_token(client, "/login")
    res = client.post("/login", data={"email": "OWNER@cafe.kr", "password": "correct horse 1",
                                      "csrf_token": token})
    assert res.status_code == 302 and res.headers["Location"].endswith("/merchant")
    with app.extensions["busanpay"].db.read() as s:
        actions = [a.action for a in s.exec(select(AuditEntry))]
    assert actions == ["login"]


def test_a_form_without_its_csrf_token_is_refused(client, people):
    res = client.post("/login", data={"email": "owner@cafe.kr", "password": "correct horse 1"})
    assert res.status_code == 400


def test_five_wrong_passwords_make_the_account_wait_without_saying_it_exists(client, app, people):
    for _ in range(5):
        token = csrf_token(client, "/login?lang=en")
        res = client.post("/login?lang=en", data={"email": "owner@cafe.kr", "password": "wrong",
                                                  "csrf_token": token})
        assert res.status_code == 401
        assert "Wrong email or password" in res.get_data(as_text=True)
    token = csrf_token(client, "/login?lang=en")
    res = client.post("/login?lang=en", data={"email": "owner@cafe.kr",
                                              "password": "correct horse 1", "csrf_token": token})
    assert res.status_code == 429 and "Try again in 1 minute" in res.get_data(as_text=True)
    assert 58 <= int(res.headers["Retry-After"]) <= 60  # Flask-Limiter rewrites it in whole seconds
    # An address nobody registered is answered exactly the same way (from another client:
    # this module allows 8 logins a minute per client).
    other = {"REMOTE_ADDR": "192.0.2.7"}
    for _ in range(5):
        client.post("/login?lang=en", data={"email": "nobody@cafe.kr", "password": "wrong",
                                            "csrf_token": csrf_token(client, "/login")},
                    environ_base=other)
    res = client.post("/login?lang=en", data={"email": "nobody@cafe.kr", "password": "wrong",
                                              "csrf_token": csrf_token(client, "/login")},
                      environ_base=other)
    assert res.status_code == 429 and 58 <= int(res.headers["Retry-After"]) <= 60
    with app.extensions["busanpay"].db.read() as s:
        assert "login.throttled" in [a.action for a in s.exec(select(AuditEntry))]


def test_the_wait_lifts_after_a_minute_and_then_grows(client, app, people, clock):
    def attempt(password):
        return client.post("/login", data={"email": "owner@cafe.kr", "password": password,
                                           "csrf_token": csrf_token(client, "/login")})

    for _ in range(5):
        attempt("wrong")
    clock.advance(seconds=61)
    res = attempt("wrong")  # one more guess, then a longer wait
    assert res.status_code == 401
    clock.advance(seconds=61)
    assert attempt("correct horse 1").status_code == 429
    clock.advance(seconds=60)
    assert attempt("correct horse 1").status_code == 302


def test_a_cashier_signs_in_with_the_store_code_and_the_tablet_remembers_it(client, app, people):
    with app.extensions["busanpay"].db.read() as s:
        code = s.get(Store, people).pos_code
    assert re.fullmatch(r"[ACEFGHKMNPRTWXY34679]{6}", code)
    res = client.post("/pos/login", data={"store": f" {code[:3].lower()}-{code[3:]} ",
                                          "pin": "2468",
                                          "csrf_token": csrf_token(client, "/pos/login")})
    assert res.status_code == 302 and res.headers["Location"].endswith("/pos")
    assert "busanpay_device=" in res.headers.get("Set-Cookie", "")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/pos/login")})
    page = client.get("/pos/login").get_data(as_text=True)
    assert f'value="{code}"' in page


def test_the_greenfield_store_id_still_signs_a_cashier_in(client, people):
    res = client.post("/pos/login", data={"store": people, "pin": "2468",
                                          "csrf_token": csrf_token(client, "/pos/login")})
    assert res.status_code == 302


def test_a_wrong_pin_is_refused_without_saying_which_part_was_wrong(client, people):
    res = client.post("/pos/login?lang=en", data={"store": people, "pin": "1111",
                                                  "csrf_token": csrf_token(client, "/pos/login")})
    assert res.status_code == 401 and "Wrong store code or PIN" in res.get_data(as_text=True)
    res = client.post("/pos/login?lang=en", data={"store": "nope", "pin": "2468",
                                                  "csrf_token": csrf_token(client, "/pos/login")})
    assert res.status_code == 401 and "Wrong store code or PIN" in res.get_data(as_text=True)


def test_a_cashier_cannot_use_the_email_login(client, app, people):
    with app.extensions["busanpay"].db.read() as s:
        cashier = s.exec(select(User).where(User.role == "cashier")).one()
    assert cashier.email is None and cashier.pin_hash and "2468" not in cashier.pin_hash


def test_passwords_and_pins_are_stored_hashed_and_validated(app, people):
    gateway = app.extensions["busanpay"]
    with gateway.db.read() as s:
        owner = s.exec(select(User).where(User.email == "owner@cafe.kr")).one()
    assert "correct horse" not in owner.password_hash and owner.password_hash.startswith(("scrypt:", "pbkdf2:"))
    with pytest.raises(AccountError):
        with gateway.db.write() as s:
            create_user(s, role="cashier", store_id=people, pin="12")
    with pytest.raises(AccountError):
        with gateway.db.write() as s:
            create_user(s, role="cashier", store_id=people, pin="2468")  # same PIN in the store
    with pytest.raises(AccountError):
        with gateway.db.write() as s:
            create_user(s, role="owner", email="x@y.kr", password="short", store_id=people)


@pytest.fixture
def app_config(app_config):
    app_config["login_rate_limit"] = "8 per minute"
    return app_config


def test_login_attempts_are_rate_limited_per_client(client, people):
    codes = [client.post("/login", data={"email": f"a{i}@b.kr", "password": "x",
                                         "csrf_token": csrf_token(client, "/login")}).status_code
             for i in range(9)]
    assert codes[:8] == [401] * 8 and codes[8] == 429
