"""Finding 8 (webhook SSRF): a merchant's webhook URL must not make the gateway reach the city's
own network. Through the real API and delivery path, on SQLite and PostgreSQL, with a receiver
listening on 127.0.0.1 that would record any request that got through."""
from __future__ import annotations

import ipaddress
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import auth
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.test_backoffice import owner, owners, token_of  # noqa: F401

#: Every spelling of a non-public destination the abuse review tried, and more.
PRIVATE_URLS = {
    "http://127.0.0.1:{port}/hook": "loopback",
    "http://localhost:{port}/hook": "loopback",
    "http://2130706433:{port}/hook": "loopback",
    "http://0x7f.1:{port}/hook": "loopback",
    "http://127.1:{port}/hook": "loopback",
    "http://0177.0.0.1:{port}/hook": "loopback",
    "http://[::1]:{port}/hook": "loopback",
    "http://[::ffff:127.0.0.1]:{port}/hook": "loopback",
    "http://[64:ff9b::7f00:1]:{port}/hook": "loopback",
    "http://169.254.169.254/latest/meta-data/": "link-local",
    "http://[fe80::1]:{port}/": "link-local",
    "http://10.0.0.5:{port}/": "private network",
    "http://172.16.3.4/": "private network",
    "http://192.168.1.1/": "private network",
    "http://100.64.0.1/": "private network",
    "http://[fc00::1]/": "private network",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://0.0.0.0:{port}/": "unspecified address",
    "http://240.0.0.1/": "reserved",
}


@pytest.fixture
def app(app):
    from webhooks import init_webhooks

    init_webhooks(app)  # a no-op once app.py registers the webhooks itself
    assert app.extensions["busanpay"].settings.webhook_allow_private is False  # the default
    return app


@pytest.fixture
def receiver():
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def service(gateway):
    from webhooks.worker import service_for

    return service_for(gateway)


def hooks_path(merchant) -> str:
    return f"/api/v1/stores/{merchant[0]}/webhooks"


def new_invoice(client, merchant) -> None:
    res = client.post(f"/api/v1/stores/{merchant[0]}/invoices", headers=auth(merchant[1]),
                      json={"amount": "15000"})
    assert res.status_code == 200, res.get_data(as_text=True)


def delivery_log(client, merchant, hook_id: str) -> list[dict]:
    res = client.get(f"{hooks_path(merchant)}/{hook_id}/deliveries", headers=auth(merchant[1]))
    assert res.status_code == 200
    return res.get_json()


def stored_webhook(service, merchant, url: str) -> str:
    """A webhook row with this URL as one made before the policy existed (or while
    BUSANPAY_WEBHOOK_ALLOW_PRIVATE was on): the delivery-time check must stop it."""
    from webhooks.rules import WebhookSpec

    hook, _secret = service.create(merchant[0], WebhookSpec(url=url))
    return hook.id


@pytest.mark.parametrize("template", sorted(PRIVATE_URLS))
def test_creating_or_changing_a_webhook_to_a_non_public_address_is_a_422(client, merchant,
                                                                          receiver, template):
    url = template.format(port=receiver.port)
    res = client.post(hooks_path(merchant), headers=auth(merchant[1]), json={"url": url})
    assert res.status_code == 422
    [problem] = res.get_json()
    assert problem["path"] == "url"
    assert problem["message"].startswith(
        f"must point at a public address: {PRIVATE_URLS[template]} addresses are not allowed")
    res = client.post(hooks_path(merchant), headers=auth(merchant[1]),
                      json={"url": "https://shop.example/hook"})
    hook = res.get_json()
    res = client.put(f"{hooks_path(merchant)}/{hook['id']}", headers=auth(merchant[1]),
                     json={"url": url})
    assert res.status_code == 422 and res.get_json()[0]["path"] == "url"
    listed = client.get(hooks_path(merchant), headers=auth(merchant[1])).get_json()
    assert [h["url"] for h in listed] == ["https://shop.example/hook"]


@pytest.mark.parametrize("template", sorted(PRIVATE_URLS))
def test_a_delivery_to_a_non_public_address_is_refused_and_says_why_without_connecting(
        client, merchant, receiver, service, clock, template):
    hook_id = stored_webhook(service, merchant, template.format(port=receiver.port))
    new_invoice(client, merchant)
    service.run_once()
    clock.advance(hours=2)
    service.run_once()  # a refusal is final: not retried
    assert receiver.requests == []
    [logged] = delivery_log(client, merchant, hook_id)
    assert logged["status"] == "Failed" and logged["httpCode"] is None
    assert logged["errorMessage"] == \
        f"refused: address not allowed ({PRIVATE_URLS[template]})"
    assert len(service.attempts(logged["id"])) == 1


def resolving(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Make the gateway's resolver answer names from `answers` (a stand-in for a hostile DNS
    server); returns the list of names asked, in order."""
    from webhooks import destinations

    asked: list[str] = []
    real = destinations.resolve

    def resolve(host: str, port: int):
        if host not in answers:
            return real(host, port)
        asked.append(host)
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(destinations, "resolve", resolve)
    return asked


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["10.1.2.3"], ["93.184.216.34", "127.0.0.1"]])
def test_a_name_that_resolves_to_a_private_address_is_accepted_at_creation_and_refused_at_delivery(
        client, merchant, receiver, service, monkeypatch, answer):
    asked = resolving(monkeypatch, {"hooks.shop.example": answer})
    res = client.post(hooks_path(merchant), headers=auth(merchant[1]),
                      json={"url": f"http://hooks.shop.example:{receiver.port}/hook"})
    assert res.status_code == 200  # a name is judged when it is resolved: at each delivery
    new_invoice(client, merchant)
    service.run_once()
    assert receiver.requests == [] and asked == ["hooks.shop.example"]
    [logged] = delivery_log(client, merchant, res.get_json()["id"])
    reason = "loopback" if answer[-1] == "127.0.0.1" else "private network"
    assert logged["errorMessage"] == f"refused: address not allowed ({reason})"


def test_localhost_resolved_by_the_system_is_refused_at_delivery(client, merchant, receiver,
                                                                  service):
    hook_id = stored_webhook(service, merchant, f"http://localhost:{receiver.port}/hook")
    new_invoice(client, merchant)
    service.run_once()
    assert receiver.requests == []
    assert delivery_log(client, merchant, hook_id)[0]["errorMessage"] == \
        "refused: address not allowed (loopback)"


def test_with_private_addresses_allowed_the_connection_goes_to_the_address_checked_once(
        client, merchant, receiver, gateway, monkeypatch):
    """BUSANPAY_WEBHOOK_ALLOW_PRIVATE=1 (the tests' and demo's setting) lets 127.0.0.1 through.
    The name is resolved once per attempt; a DNS server that answers differently the second
    time (rebinding) is never asked again, and the Host header keeps the URL's name."""
    from webhooks import destinations
    from webhooks.sender import HttpSender
    from webhooks.service import WebhookService

    calls = []

    def rebinding(host, port):
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1" if len(calls) == 1 else "10.255.255.1")]

    monkeypatch.setattr(destinations, "resolve", rebinding)
    service = WebhookService(gateway.db, clock=gateway.clock,
                             sender=HttpSender(allow_private=True, connect_timeout=0.5))
    res = client.post(hooks_path(merchant), headers=auth(merchant[1]),
                      json={"url": f"http://pay.shop.example:{receiver.port}/hook"})
    receiver.secret = res.get_json()["secret"]
    new_invoice(client, merchant)
    service.run_once()
    [request] = receiver.wait_for(1)
    assert calls == ["pay.shop.example"]
    assert request.headers["Host"] == f"pay.shop.example:{receiver.port}"
    assert request.signature_ok is True


class _Redirecting(BaseHTTPRequestHandler):
    location = ""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_is_not_followed(client, merchant, receiver, gateway):
    from webhooks.sender import HttpSender
    from webhooks.service import WebhookService

    handler = type("Handler", (_Redirecting,), {"location": receiver.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service = WebhookService(gateway.db, clock=gateway.clock,
                                 sender=HttpSender(allow_private=True))
        hook_id = stored_webhook(service, merchant,
                                 f"http://127.0.0.1:{server.server_address[1]}/hook")
        new_invoice(client, merchant)
        service.run_once()
    finally:
        server.shutdown()
        server.server_close()
    assert receiver.requests == []
    [logged] = delivery_log(client, merchant, hook_id)
    assert (logged["httpCode"], logged["errorMessage"]) == \
        (307, "HTTP 307: redirects are not followed")


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS endpoint on 127.0.0.1 with a certificate for shop.example only; records the
    TLS server name (SNI) and Host header of each request."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=shop.example", "-addext", "subjectAltName=DNS:shop.example",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    seen: list[tuple[str | None, str | None]] = []
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((names[-1] if names else None, self.headers.get("Host")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert), seen
    server.shutdown()
    server.server_close()


def test_https_to_the_pinned_address_keeps_the_name_for_sni_and_the_certificate_check(
        tls_server, monkeypatch):
    from webhooks.sender import HttpSender

    port, authority, seen = tls_server
    resolving(monkeypatch, {"shop.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    sender = HttpSender(allow_private=True, ca_certs=authority)
    result = sender.send(f"https://shop.example:{port}/hook", b"{}", "sha256=00")
    assert (result.status, result.http_code) == ("HttpSuccess", 200)
    assert seen == [("shop.example", f"shop.example:{port}")]
    # the same address under a name the certificate does not cover: refused by the TLS check
    result = sender.send(f"https://other.example:{port}/hook", b"{}", "sha256=00")
    assert (result.status, result.error) == ("Failed", "TLS handshake failed")
    assert len(seen) == 1


def test_the_back_office_refuses_a_private_webhook_address_with_a_readable_message(
        owner, app, owners):  # noqa: F811
    res = owner.post("/merchant/webhooks?lang=en", data={
        "csrf_token": token_of(owner), "url": "http://169.254.169.254/latest", "scope": "everything"})
    assert res.status_code == 422
    assert "Webhooks go only to public internet addresses" in res.get_data(as_text=True)
    from webhooks.worker import service_for

    assert service_for(app.extensions["busanpay"]).list(owners["store"]) == []
