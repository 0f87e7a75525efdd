"""The LND REST client against a fake lnd REST gateway on 127.0.0.1 (tests/fakes/lnd_server.py)."""
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone

import bolt11
import pytest

from lightning.backend import (LightningBackend, LightningError, LightningUnavailable, LnState)
from lightning.lnd import LndRestBackend
from tests.fakes.lnd_server import FakeLnd
from tests.integration import lightning_node_checks as checks

MACAROON = secrets.token_hex(96)


@pytest.fixture
def node():
    with FakeLnd(macaroon_hex=MACAROON) as fake:
        yield fake


@pytest.fixture
def lnd(node):
    return LndRestBackend(node.url, MACAROON, timeout=3)


def new_invoice(lnd, msat=5_000_000, memo="Haeundae Coffee ₩5,000", expiry=900):
    return lnd.create_invoice(msat, memo, expiry, label=secrets.token_hex(8))


def test_the_client_speaks_the_lightning_backend_interface(lnd):
    assert isinstance(lnd, LightningBackend)
    assert lnd.name == "lnd"


def test_an_invoice_is_created_with_int64_strings_and_decodes_to_its_amount_hash_and_expiry(node, lnd):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    invoice = new_invoice(lnd, msat=5_123_000, memo="Haeundae Coffee ₩5,000", expiry=900)
    body = node.created[-1]
    assert body == {"value_msat": "5123000", "memo": "Haeundae Coffee ₩5,000", "expiry": "900",
                    "private": True}
    assert invoice.amount_msat == 5_123_000
    assert invoice.state is LnState.OPEN and invoice.amount_paid_msat == 0
    assert len(invoice.payment_hash) == 64 and invoice.payment_hash in node.invoices
    assert before + timedelta(seconds=900) <= invoice.expires_at <= before + timedelta(seconds=902)
    decoded = bolt11.decode(invoice.bolt11)
    assert invoice.bolt11.startswith("lnbcrt")
    assert decoded.amount_msat == 5_123_000
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.expiry == 900 and decoded.description == "Haeundae Coffee ₩5,000"
    assert decoded.date + decoded.expiry == int(invoice.expires_at.timestamp())


def test_a_lookup_follows_the_invoice_from_open_to_settled(node, lnd):
    invoice = new_invoice(lnd)
    assert lnd.lookup_invoice(invoice.payment_hash).state is LnState.OPEN
    index = node.settle(invoice.payment_hash)
    seen = lnd.lookup_invoice(invoice.payment_hash)
    assert seen.state is LnState.SETTLED
    assert seen.amount_paid_msat == 5_000_000 and seen.settle_index == index == 1
    assert abs((seen.settled_at - datetime.now(timezone.utc)).total_seconds()) < 5


def test_an_unknown_payment_hash_is_none(lnd):
    assert lnd.lookup_invoice("ab" * 32) is None


def test_an_expired_invoice_is_canceled_and_cannot_be_paid(node, lnd):
    invoice = lnd.create_invoice(1_000, "short", 1, label="x")
    time.sleep(1.1)
    assert lnd.lookup_invoice(invoice.payment_hash).state is LnState.CANCELED
    with pytest.raises(ValueError):
        node.settle(invoice.payment_hash)


def test_a_payment_while_the_stream_is_open_is_yielded_with_its_settle_index_and_amount(node, lnd):
    invoice = new_invoice(lnd, msat=7_000_000)
    threading.Timer(0.3, node.settle, args=(invoice.payment_hash,)).start()
    started = time.monotonic()
    got = list(lnd.settlements(0, timeout=1.5))
    assert [(s.payment_hash, s.amount_paid_msat, s.index) for s in got] == \
        [(invoice.payment_hash, 7_000_000, 1)]
    assert got[0].settled_at.tzinfo is not None
    assert time.monotonic() - started < 4


def test_nothing_new_ends_the_stream_after_the_timeout_without_an_error(lnd):
    started = time.monotonic()
    assert list(lnd.settlements(0, timeout=0.5)) == []
    assert 0.4 < time.monotonic() - started < 2


def test_a_settlement_while_nobody_listens_is_yielded_first_on_the_next_call(node, lnd):
    first, second, third = new_invoice(lnd), new_invoice(lnd), new_invoice(lnd)
    node.settle(first.payment_hash)
    node.settle(second.payment_hash)
    got = list(lnd.settlements(1, timeout=0.5))
    assert [(s.payment_hash, s.index) for s in got] == [(second.payment_hash, 2)]
    node.settle(third.payment_hash)
    got = list(lnd.settlements(2, timeout=0.5))
    assert [(s.payment_hash, s.index) for s in got] == [(third.payment_hash, 3)]


def test_from_index_zero_the_settled_invoices_are_listed_since_lnds_stream_replays_nothing(node, lnd):
    lnd.list_page_size = 2
    invoices = [new_invoice(lnd, msat=1_000 * (n + 1)) for n in range(7)]
    for invoice in (invoices[6], invoices[2], invoices[4]):  # settle order is not add order
        node.settle(invoice.payment_hash)
    threading.Timer(0.5, node.settle, args=(invoices[0].payment_hash,)).start()
    got = list(lnd.settlements(0, timeout=1.5))
    assert [(s.index, s.amount_paid_msat) for s in got] == [(1, 7_000), (2, 3_000), (3, 5_000), (4, 1_000)]
    listed = [path for method, path in node.requests if path.startswith("/v1/invoices?")]
    assert len(listed) == 5  # pages of 2 until an empty one
    assert "settle_index=3" in [p for m, p in node.requests if "subscribe" in p][-1]


def test_a_stream_dropped_mid_way_raises_and_resuming_from_the_last_index_misses_nothing(node, lnd):
    invoices = [new_invoice(lnd, msat=1_000 * (n + 1)) for n in range(5)]
    for invoice in invoices[:4]:
        node.settle(invoice.payment_hash)
    node.drop_streams_after(2)
    seen = []
    with pytest.raises(LightningUnavailable):
        for settlement in lnd.settlements(1, timeout=2):
            seen.append(settlement)
    assert [s.index for s in seen] == [2, 3]
    threading.Timer(0.3, node.settle, args=(invoices[4].payment_hash,)).start()
    seen += list(lnd.settlements(seen[-1].index, timeout=1.5))
    assert [(s.index, s.amount_paid_msat) for s in seen] == \
        [(2, 2_000), (3, 3_000), (4, 4_000), (5, 5_000)]


def test_a_duplicate_notification_from_the_node_is_yielded_once(node, lnd):
    first, second = new_invoice(lnd), new_invoice(lnd)
    def pay():
        node.settle(first.payment_hash)
        node.duplicate_last_settlement()
        node.settle(second.payment_hash)
        node.duplicate_last_settlement()
    threading.Timer(0.3, pay).start()
    got = list(lnd.settlements(0, timeout=1.5))
    assert [(s.payment_hash, s.index) for s in got] == [(first.payment_hash, 1), (second.payment_hash, 2)]


def test_a_stream_the_node_cuts_by_going_down_raises_unavailable(node, lnd):
    threading.Timer(0.3, node.go_down).start()
    with pytest.raises(LightningUnavailable):
        list(lnd.settlements(0, timeout=3))


def test_a_node_that_is_down_makes_every_call_unavailable_until_it_comes_back(node, lnd):
    checks.down_then_back(node, lnd, MACAROON)


def test_a_node_answering_503_is_unavailable_not_refused(node, lnd):
    checks.answering_503(node, lnd)


def test_node_info_reports_identity_height_balance_and_inbound_liquidity(node, lnd):
    info = lnd.node_info()
    assert info.reachable and info.error is None
    assert (info.alias, info.block_height) == ("busan-lnd", 840_000)
    assert len(info.node_id) == 66 and info.node_id.startswith(("02", "03"))
    assert (info.local_balance_msat, info.inbound_msat) == (2_000_000_000, 5_000_000_000)


def test_a_wrong_macaroon_is_a_clear_refusal_not_an_outage(node):
    wrong = secrets.token_hex(96)
    checks.refused_not_unavailable(LndRestBackend(node.url, wrong, timeout=3), "macaroon", wrong)


def test_the_macaroon_never_shows_in_logs_reprs_or_errors(node, caplog):
    caplog.set_level(logging.DEBUG)
    client = LndRestBackend(node.url, MACAROON, timeout=2)
    texts = [repr(client)]
    invoice = new_invoice(client)
    node.settle(invoice.payment_hash)
    list(client.settlements(0, timeout=0.3))
    client.lookup_invoice(invoice.payment_hash)
    node.serve_unavailable(True)
    for call in (lambda: new_invoice(client), lambda: list(client.settlements(0, timeout=0.3))):
        with pytest.raises(LightningError) as caught:
            call()
        texts.append(str(caught.value))
    node.serve_unavailable(False)
    node.go_down()
    texts.append(client.node_info().error)
    checks.nothing_shows(MACAROON, caplog, texts)


def test_tls_with_the_nodes_certificate_works_and_another_certificate_fails(tmp_path):
    checks.tls_pins_the_node_certificate(
        tmp_path, lambda tls: FakeLnd(macaroon_hex=MACAROON, tls=tls),
        lambda url, cert: LndRestBackend(url, MACAROON, cert, timeout=3))
