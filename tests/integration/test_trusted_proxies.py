"""BUSANPAY_TRUSTED_PROXIES: X-Forwarded-* are believed only from the configured proxies, so
rate limits, the audit log and the logs see the real client, and nobody else can spoof one."""
from __future__ import annotations

import pytest
from sqlmodel import select

from accounts.models import AuditEntry
from accounts.service import create_user
from settings import ConfigError, Settings
from tests.integration.test_accounts_login import csrf_token

PROXY = "127.0.0.1"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "trusted_proxies": "127.0.0.1, 10.20.0.0/16",
            "login_rate_limit": "3 per minute"}


def via(client, peer: str, forwarded_for: str | None = None, proto: str = "https") -> dict:
    client.environ_base["REMOTE_ADDR"] = peer
    # Flask-WTF checks the Referer of https form posts against the (forwarded) host.
    headers = {"X-Forwarded-Proto": proto, "X-Forwarded-Host": "pay.busan.example",
               "Referer": f"{proto}://pay.busan.example/login"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


def failed_login(client, headers, email: str = "nobody@busan.example") -> int:
    token = csrf_token(client, "/login")
    return client.post("/login", headers=headers, data={
        "email": email, "password": "wrong password", "csrf_token": token,
    }).status_code


def test_the_client_behind_a_trusted_proxy_is_the_forwarded_one(app, client):
    seen = {}

    @app.get("/_probe")
    def probe():
        from flask import request

        seen.update(addr=request.remote_addr, scheme=request.scheme, host=request.host)
        return "ok"

    client.get("/_probe", headers=via(client, PROXY, "203.0.113.7"))
    assert seen == {"addr": "203.0.113.7", "scheme": "https", "host": "pay.busan.example"}
    client.get("/_probe", headers=via(client, "10.20.3.4", "203.0.113.8"))
    assert seen["addr"] == "203.0.113.8"
    client.get("/_probe", headers=via(client, "198.51.100.9", "203.0.113.7"))  # not a proxy
    assert seen == {"addr": "198.51.100.9", "scheme": "http", "host": "localhost"}


def test_rate_limits_count_per_real_client_and_spoofed_headers_do_not_help(client):
    for _ in range(3):
        assert failed_login(client, via(client, PROXY, "203.0.113.7")) == 401
    assert failed_login(client, via(client, PROXY, "203.0.113.7")) == 429
    assert failed_login(client, via(client, PROXY, "203.0.113.99")) == 401  # another tourist
    # A direct client inventing a new X-Forwarded-For each time is still one client.
    # (another account each time: the per-account throttle is not what is tested here)
    codes = [failed_login(client, via(client, "198.51.100.9", f"192.0.2.{n}"),
                          f"guess{n}@busan.example") for n in range(4)]
    assert codes == [401, 401, 401, 429]


def test_the_audit_log_records_the_forwarded_client(app, client, gateway):
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email="admin@busan.example", password="city admin pass 1")
    headers = via(client, PROXY, "203.0.113.7")
    token = csrf_token(client, "/login")
    res = client.post("/login", headers=headers, data={
        "email": "admin@busan.example", "password": "city admin pass 1", "csrf_token": token})
    assert res.status_code == 302
    with gateway.db.read() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "login")).one()
    assert entry.ip == "203.0.113.7"


def test_a_malformed_proxy_list_is_refused_at_start():
    with pytest.raises(ConfigError, match="BUSANPAY_TRUSTED_PROXIES"):
        Settings.from_env({"BUSANPAY_TRUSTED_PROXIES": "127.0.0.1, the-proxy"},
                          instance_path="/tmp/x")
