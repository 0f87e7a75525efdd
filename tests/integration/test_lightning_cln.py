"""The Core Lightning clnrest client against a fake clnrest on 127.0.0.1 (tests/fakes/cln_server.py)."""
import logging
import secrets
import threading
import time
from datetime import datetime, timezone

import bolt11
import pytest

from lightning.backend import LightningBackend, LightningError, LightningUnavailable, LnState
from lightning.cln import ClnRestBackend
from tests.fakes.cln_server import FakeCln
from tests.integration import lightning_node_checks as checks

RUNE = secrets.token_urlsafe(48)


@pytest.fixture
def node():
    with FakeCln(rune=RUNE) as fake:
        yield fake


@pytest.fixture
def cln(node):
    return ClnRestBackend(node.url, RUNE, timeout=3)


def new_invoice(cln, msat=5_000_000, description="Haeundae Coffee ₩5,000", expiry=900, label=None):
    return cln.create_invoice(msat, description, expiry, label=label or secrets.token_hex(8))


def test_the_client_speaks_the_lightning_backend_interface(cln):
    assert isinstance(cln, LightningBackend)
    assert cln.name == "cln"


def test_an_invoice_is_created_with_its_label_and_expiry_and_decodes_to_its_amount_and_hash(node, cln):
    before = int(time.time())
    invoice = new_invoice(cln, msat=5_123_000, expiry=900, label="busanpay-inv-1")
    method, params = node.calls[-1]
    assert (method, params) == ("invoice", {"amount_msat": 5_123_000, "label": "busanpay-inv-1",
                                            "description": "Haeundae Coffee ₩5,000", "expiry": 900})
    assert invoice.amount_msat == 5_123_000 and invoice.state is LnState.OPEN
    assert before + 900 <= invoice.expires_at.timestamp() <= before + 902
    decoded = bolt11.decode(invoice.bolt11)
    assert invoice.bolt11.startswith("lnbcrt")
    assert (decoded.amount_msat, decoded.payment_hash, decoded.expiry) == \
        (5_123_000, invoice.payment_hash, 900)
    assert decoded.description == "Haeundae Coffee ₩5,000"


def test_a_used_label_is_refused_unless_it_is_a_retry_of_the_same_request(node, cln):
    first = new_invoice(cln, label="busanpay-inv-7")
    again = new_invoice(cln, label="busanpay-inv-7")  # the first answer was lost: same invoice
    assert (again.payment_hash, again.bolt11, again.expires_at) == \
        (first.payment_hash, first.bolt11, first.expires_at)
    assert len(node.invoices) == 1
    for other in (dict(msat=6_000_000), dict(description="another shop")):
        with pytest.raises(LightningError, match="Duplicate label") as caught:
            new_invoice(cln, label="busanpay-inv-7", **other)
        assert type(caught.value) is not LightningUnavailable
    node.settle(first.payment_hash)
    with pytest.raises(LightningError, match="Duplicate label"):
        new_invoice(cln, label="busanpay-inv-7")


def test_a_lookup_follows_the_invoice_from_unpaid_to_paid(node, cln):
    invoice = new_invoice(cln)
    assert cln.lookup_invoice(invoice.payment_hash).state is LnState.OPEN
    index = node.settle(invoice.payment_hash, amount_msat=5_000_001)
    seen = cln.lookup_invoice(invoice.payment_hash)
    assert seen.state is LnState.SETTLED and seen.settle_index == index == 1
    assert seen.amount_paid_msat == 5_000_001 and seen.bolt11 == invoice.bolt11
    assert abs((seen.settled_at - datetime.now(timezone.utc)).total_seconds()) < 5


def test_an_unknown_payment_hash_is_none_and_an_expired_invoice_is_canceled(node, cln):
    assert cln.lookup_invoice("ab" * 32) is None
    invoice = new_invoice(cln, expiry=1)
    time.sleep(1.1)
    assert cln.lookup_invoice(invoice.payment_hash).state is LnState.CANCELED
    with pytest.raises(ValueError):
        node.settle(invoice.payment_hash)


def test_a_payment_while_waiting_is_yielded_with_its_pay_index_and_amount(node, cln):
    invoice = new_invoice(cln, msat=7_000_000)
    threading.Timer(0.3, node.settle, args=(invoice.payment_hash,)).start()
    got = list(cln.settlements(0, timeout=1))
    assert [(s.payment_hash, s.amount_paid_msat, s.index) for s in got] == \
        [(invoice.payment_hash, 7_000_000, 1)]
    assert got[0].settled_at.tzinfo is not None


def test_the_904_timeout_ends_the_iteration_cleanly_and_the_next_call_continues(node, cln):
    first, second = new_invoice(cln), new_invoice(cln)
    node.settle(first.payment_hash)
    started = time.monotonic()
    assert [s.index for s in cln.settlements(0, timeout=1)] == [1]
    assert 0.9 < time.monotonic() - started < 4
    waits = [p for m, p in node.calls if m == "waitanyinvoice"]
    assert waits[0] == {"lastpay_index": 0, "timeout": 1} and waits[-1]["lastpay_index"] == 1
    node.settle(second.payment_hash)
    assert [s.index for s in cln.settlements(1, timeout=1)] == [2]
    assert list(cln.settlements(2, timeout=1)) == []


def test_settlements_while_nobody_listens_are_yielded_first_on_the_next_call(node, cln):
    invoices = [new_invoice(cln, msat=1_000 * (n + 1)) for n in range(3)]
    for invoice in invoices:
        node.settle(invoice.payment_hash)
    got = list(cln.settlements(0, timeout=1))
    assert [(s.payment_hash, s.index, s.amount_paid_msat) for s in got] == \
        [(i.payment_hash, n + 1, 1_000 * (n + 1)) for n, i in enumerate(invoices)]


def test_a_wait_cut_mid_way_raises_and_resuming_from_the_last_index_misses_nothing(node, cln):
    invoices = [new_invoice(cln) for _ in range(3)]
    node.settle(invoices[0].payment_hash)
    seen = []
    threading.Timer(0.5, node.drop_streams).start()
    with pytest.raises(LightningUnavailable):
        for settlement in cln.settlements(0, timeout=3):
            seen.append(settlement)
    assert [s.index for s in seen] == [1]
    node.settle(invoices[1].payment_hash)
    threading.Timer(0.3, node.settle, args=(invoices[2].payment_hash,)).start()
    seen += list(cln.settlements(seen[-1].index, timeout=1))
    assert [s.payment_hash for s in seen] == [i.payment_hash for i in invoices]
    assert [s.index for s in seen] == [1, 2, 3]


def test_a_duplicate_answer_from_the_node_is_yielded_once(node, cln):
    first, second = new_invoice(cln), new_invoice(cln)
    node.settle(first.payment_hash)
    node.duplicate_next()
    got = list(cln.settlements(0, timeout=1))
    assert [s.index for s in got] == [1]
    node.duplicate_next()
    threading.Timer(0.2, node.settle, args=(second.payment_hash,)).start()
    got = list(cln.settlements(1, timeout=1))
    assert [(s.payment_hash, s.index) for s in got] == [(second.payment_hash, 2)]


def test_a_node_that_is_down_makes_every_call_unavailable_until_it_comes_back(node, cln):
    checks.down_then_back(node, cln, RUNE)


def test_a_node_answering_503_is_unavailable_not_refused(node, cln):
    checks.answering_503(node, cln)


def test_node_info_counts_only_normal_channels_for_balance_and_inbound_liquidity(node, cln):
    info = cln.node_info()
    assert info.reachable and info.error is None
    assert (info.alias, info.block_height) == ("busan-cln", 840_000)
    assert len(info.node_id) == 66
    assert info.local_balance_msat == 2_000_000_000
    # receivable_msat: (4e9 - 1.5e9 - 4e7) + (3e9 - 0.5e9 - 3e7); the opening channel is left out
    assert info.inbound_msat == 2_460_000_000 + 2_470_000_000


def test_a_wrong_rune_is_a_clear_refusal_not_an_outage(node):
    wrong = secrets.token_urlsafe(48)
    checks.refused_not_unavailable(ClnRestBackend(node.url, wrong, timeout=3), "rune", wrong)


def test_the_rune_never_shows_in_logs_reprs_or_errors(node, caplog):
    caplog.set_level(logging.DEBUG)
    client = ClnRestBackend(node.url, RUNE, timeout=2)
    texts = [repr(client)]
    invoice = new_invoice(client, label="one")
    node.settle(invoice.payment_hash)
    list(client.settlements(0, timeout=1))
    client.lookup_invoice(invoice.payment_hash)
    with pytest.raises(LightningError) as caught:
        new_invoice(client, label="one")
    texts.append(str(caught.value))
    node.go_down()
    with pytest.raises(LightningUnavailable) as caught:
        new_invoice(client)
    texts += [str(caught.value), client.node_info().error]
    checks.nothing_shows(RUNE, caplog, texts)


def test_tls_with_the_nodes_certificate_works_and_another_certificate_fails(tmp_path):
    checks.tls_pins_the_node_certificate(
        tmp_path, lambda tls: FakeCln(rune=RUNE, tls=tls),
        lambda url, cert: ClnRestBackend(url, RUNE, cert, timeout=3))
