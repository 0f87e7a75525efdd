"""The modal checkout in a real browser: a shop page on another origin loads
/modal/btcpay.js, shows the invoice in an overlay, and receives its status as the payer pays
on the demo chain — only when the shop's origin is the store's website (frame-ancestors)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from merchants.models import Store
from tests.e2e.conftest import BROWSER_TEST, ROOT, live_server
from tests.integration.test_payment_scenarios import DUE, World, demo_chain  # noqa: F401

pytestmark = BROWSER_TEST
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"

SHOP_PAGE = """<!doctype html><html><head><title>Shop</title></head><body>
<h1>Order 1001</h1>
<script src="{gateway}/modal/btcpay.js"></script>
<script>
  window.got = [];
  window.btcpay.onModalReceiveMessage(function (event) {{ window.got.push(event.data); }});
  window.btcpay.showInvoice("{invoice_id}");
</script></body></html>"""


@contextmanager
def shop_server(html: str):
    """A shop's page on its own origin (127.0.0.1, another port)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def statuses(page) -> list:
    return page.evaluate("window.got.map(m => typeof m === 'object' ? m.status : m)")


def wait_until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def shop_showing_an_invoice(app, client, gateway, clock, chain, website: str | None):
    """(world, invoice, gateway URL, shop URL); the store's website is `website` (None: the
    shop's own origin)."""
    world = World(app, client, gateway, clock, chain)
    world.run()
    invoice = world.invoice(15000)
    with live_server(app) as base, shop_server(SHOP_PAGE.format(
            gateway=base, invoice_id=invoice["id"])) as shop:
        with gateway.db.write() as session:
            store = session.get(Store, world.store_id)
            store.website = website or shop
            session.add(store)
        yield world, invoice, base, shop


def test_a_shop_on_the_store_website_gets_the_status_and_the_close(app, client, gateway, clock,
                                                                   demo_chain, browser):  # noqa: F811
    with shop_showing_an_invoice(app, client, gateway, clock, demo_chain, None) as (
            world, invoice, base, shop):
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(shop + "/checkout")
        assert wait_until(lambda: statuses(page) == ["New"]), statuses(page)
        frame = page.frame(name="btcpay")
        assert frame is not None and frame.url.startswith(f"{base}/i/{invoice['id']}")
        world.pay(invoice["id"], DUE)
        world.run()  # seen in the mempool: Processing (MediumSpeed waits for a block)
        assert wait_until(lambda: statuses(page)[-1:] == ["Processing"]), statuses(page)
        world.chain.mine()
        world.run()
        assert wait_until(lambda: statuses(page)[-1:] == ["Settled"]), statuses(page)
        assert all(isinstance(m, str) or m["invoiceId"] == invoice["id"]
                   for m in page.evaluate("window.got"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "modal-settled-1280.png"))
        frame.click("button.modal-close")
        assert wait_until(lambda: statuses(page)[-1:] == ["close"])
        assert wait_until(lambda: page.frame(name="btcpay") is None)  # the overlay is gone
        assert errors == []
        context.close()


def test_a_page_on_another_origin_cannot_frame_the_checkout(app, client, gateway, clock,
                                                            demo_chain, browser):  # noqa: F811
    with shop_showing_an_invoice(app, client, gateway, clock, demo_chain,
                                 "https://shop.example") as (_world, _invoice, _base, intruder):
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.goto(intruder + "/checkout")
        time.sleep(2.5)
        assert statuses(page) == []  # the browser refused to show the checkout in its frame
        context.close()
