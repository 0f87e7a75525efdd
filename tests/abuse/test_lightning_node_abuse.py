"""A Lightning node that answers slowly or sends what no node should: invoice creation (the
POS and the API wait on it) stays bounded, and the listener refuses an endless stream line.
Driven through the real API and the real LND/clnrest clients against their fakes over HTTP
on 127.0.0.1; on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import time

import pytest

from lightning.config import NODE_TIMEOUT
from lightning.invoices import current_lightning
from lightning.listener import Listener, health
from tests.conftest import auth, make_merchant
from tests.fakes.cln_server import FakeCln
from tests.fakes.lnd_server import FakeLnd
from tests.fakes.node_http import NodeRequest
# the gateway configured for the `node` fixture below (the same credentials)
from tests.integration.test_lightning_nodes_core import MACAROON, RUNE, app_config  # noqa: F401


class Misbehaving:
    """A node (or whatever took its address) that trickles one byte a second of every
    answer, or streams one endless line."""
    trickle = False
    endless_line = False

    def handle(self, request: NodeRequest) -> None:
        if self.endless_line and "subscribe" in request.path:
            request.start_chunked()
            try:
                for _ in range(64):  # 4 MiB without a newline
                    request.send_chunk(b"x" * 65536)
            except OSError:
                pass
            return request.cut()
        if self.trickle:
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", "100000")
            request.end_headers()
            for _ in range(120):
                try:
                    request.wfile.write(b" ")
                    request.wfile.flush()
                except OSError:
                    return
                time.sleep(1)
            return
        return super().handle(request)


class SlowLnd(Misbehaving, FakeLnd):
    pass


class SlowCln(Misbehaving, FakeCln):
    pass


@pytest.fixture(params=["lnd", "cln"])
def node(request):
    fake = SlowLnd(macaroon_hex=MACAROON) if request.param == "lnd" else SlowCln(rune=RUNE)
    with fake:
        yield request.param, fake


def create(client, store_id, token) -> tuple[dict, float]:
    started = time.monotonic()
    res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 5000},
                      headers=auth(token))
    assert res.status_code == 200, res.get_json()
    return res.get_json(), time.monotonic() - started


def test_a_node_that_trickles_its_answers_holds_invoice_creation_no_longer_than_one_timeout(
        app, client, gateway, node):
    store_id, token = make_merchant(app)
    node[1].trickle = True
    invoice, took = create(client, store_id, token)
    assert took < NODE_TIMEOUT + 2.5, took  # it was 128 s: every call waited for the trickle
    offer = current_lightning(gateway, invoice["id"])
    assert offer.bolt11 is None and offer.unavailable == "unreachable"
    _, took = create(client, store_id, token)  # the next cashier does not wait at all
    assert took < 1.0, took


def test_an_endless_line_on_the_settlement_stream_is_refused_not_buffered(
        app, client, gateway, node):
    kind, fake = node
    if kind == "cln":
        pytest.skip("clnrest answers waitanyinvoice as one JSON body, bounded by its own size")
    fake.endless_line = True
    listener = Listener(gateway, gateway.lightning, sleep=lambda _s: None)
    summary = listener.run_once(2.0)
    assert summary["ok"] is False and "longer than" in summary["error"], summary
    assert health(gateway)["status"] == "down"


def test_a_settlement_the_node_sends_without_its_payment_hash_is_a_stored_failure_not_a_crash(
        app, client, gateway, node):
    kind, fake = node
    if kind == "cln":
        pytest.skip("the malformed answer of LND's stream; clnrest's is the same JSON path")
    listener = Listener(gateway, gateway.lightning, sleep=lambda _s: None)

    def malformed():
        with fake.changed:
            fake.events.append({"state": "SETTLED", "settle_index": "1", "amt_paid_msat": "1000"})
            fake.changed.notify_all()

    threading.Timer(0.3, malformed).start()
    summary = listener.run_once(1.5)  # it raised KeyError: the job died unseen, health "ok"
    assert summary["ok"] is False and "stream" in summary["error"], summary
    assert health(gateway)["status"] == "down" and listener.stored_index() == 0


def test_a_bolt11_the_node_settled_for_less_than_asked_is_not_offered_again(app, client, gateway,
                                                                            node):
    kind, fake = node
    store_id, token = make_merchant(app)
    invoice, _ = create(client, store_id, token)
    paid = current_lightning(gateway, invoice["id"])
    fake.settle(paid.payment_hash, 999)  # a node reporting less than the BOLT11 asked: 0 sats
    assert Listener(gateway, gateway.lightning, sleep=lambda _s: None).run_once(1.0)["recorded"] == 1
    offer = current_lightning(gateway, invoice["id"])
    assert offer.bolt11 and offer.payment_hash != paid.payment_hash  # that one cannot be paid again
    assert offer.amount_msat == paid.amount_msat  # nothing was credited for 999 msat
