"""Finding 11: the session cookie's flags, logout that ends the session on the server, and
no framing of the sign-in, demo and error pages by other sites. (The checkout page is left
out: a shop's website may come to frame it, with `@allow_framing`.)"""
from __future__ import annotations

import pytest
import requests

from accounts.service import create_user
from security_headers import allow_framing
from tests.abuse.login_http import CSRF, Browser
from tests.conftest import auth, make_merchant
from tests.e2e.conftest import live_server

ADMIN = ("admin@busan.go.kr", "city admin pass 1")


def set_cookie_header(res, name: str) -> str:
    return next(c for c in res.raw.headers.getlist("Set-Cookie") if c.startswith(name + "="))


@pytest.fixture
def people(app):
    store_id, token = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="city_admin", email=ADMIN[0], password=ADMIN[1])
        create_user(s, role="cashier", store_id=store_id, pin="2468", display_name="Minji")
    return store_id, token


def test_a_session_cookie_copied_before_logout_opens_nothing_after_it(app, people):
    with live_server(app, "abuse-session") as url:
        admin = Browser(url)
        res = admin.password_login(*ADMIN)
        assert res.status_code == 302 and res.headers["Location"].endswith("/city")
        stolen = admin.http.cookies["session"]
        assert admin.get("/city/").status_code == 200
        admin.post("/logout", data={"csrf_token": admin.csrf("/login")})
        thief = Browser(url, "127.0.0.3")
        thief.http.cookies.set("session", stolen)
        res = thief.get("/city/")
        assert res.status_code == 302 and "/login" in res.headers["Location"]
        # Signing in again works, and only the new session opens /city.
        assert admin.password_login(*ADMIN).status_code == 302
        assert admin.get("/city/").status_code == 200
        assert thief.get("/city/").status_code == 302


def test_the_session_cookie_is_httponly_and_samesite_lax(app, people):
    with live_server(app, "abuse-cookie") as url:
        res = Browser(url).password_login(*ADMIN)
    cookie = set_cookie_header(res, "session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Strict-Transport-Security" not in res.headers  # plain http: no HSTS


@pytest.fixture
def https_config(app_config):
    app_config["public_url"] = "https://pay.busan.example"
    return app_config


def test_an_https_public_url_makes_the_cookies_secure_and_sends_hsts(https_config, people, app):
    with live_server(app, "abuse-https") as url:
        tablet = Browser(url)
        page = tablet.get("/pos/login")
        assert "Secure" in set_cookie_header(page, "session")
        for cookie in tablet.http.cookies:  # the test speaks plain http to the proxy's side
            cookie.secure = False
        res = tablet.pin_login(people[0], "2468", CSRF.search(page.text).group(1))
    assert res.status_code == 302
    for name in ("session", "busanpay_device"):
        cookie = set_cookie_header(res, name)
        assert "Secure" in cookie and "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.fixture
def framed_app(app):
    @app.get("/test-only/embeddable")
    @allow_framing
    def embeddable():
        return "<p>a page a shop may frame</p>"

    @app.get("/test-only/framed-by-one-shop")
    def framed_by_one_shop():  # like the checkout page in a store website's modal
        return "<p>shop</p>", 200, {"Content-Security-Policy":
                                    "default-src 'self'; frame-ancestors https://shop.example"}

    return app


def test_sign_in_demo_and_error_pages_refuse_to_be_framed(framed_app, people):
    store_id, token = people
    with live_server(framed_app, "abuse-frames") as url:
        invoice = requests.post(f"{url}/api/v1/stores/{store_id}/invoices", headers=auth(token),
                                json={"amount": "15000"}, timeout=30).json()
        pages = {path: requests.get(url + path, timeout=30) for path in (
            "/login", "/pos/login", f"/i/{invoice['id']}/demo", "/no-such-page")}
        pages["405"] = requests.put(url + "/login", timeout=30)
        pages["429"] = None
        browser = Browser(url)
        token_ = browser.csrf("/login")
        for _ in range(11):
            pages["429"] = browser.password_login("x@y.kr", "wrong", token_)
        opted_out = requests.get(url + "/test-only/embeddable", timeout=30)
        own_choice = requests.get(url + "/test-only/framed-by-one-shop", timeout=30)
    statuses = {path: res.status_code for path, res in pages.items()}
    assert statuses["/no-such-page"] == 404 and statuses["405"] == 405 and statuses["429"] == 429
    for path, res in pages.items():
        assert res.headers.get("X-Frame-Options") == "DENY", path
        assert "frame-ancestors 'none'" in res.headers.get("Content-Security-Policy", ""), path
    assert "X-Frame-Options" not in opted_out.headers
    assert "frame-ancestors" not in opted_out.headers.get("Content-Security-Policy", "")
    # A page that names who may frame it keeps that choice (no X-Frame-Options over it).
    assert "X-Frame-Options" not in own_choice.headers
    assert own_choice.headers["Content-Security-Policy"].endswith(
        "frame-ancestors https://shop.example")
