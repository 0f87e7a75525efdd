"""The Esplora backend against a fake Esplora server on 127.0.0.1 (tests/fakes)."""
import os
import socket
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pytest

os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-tests-bitcoinlib"))

from chain.backends import (  # noqa: E402
    BackendUnavailable, BlockNotFound, ChainBackend, OutPoint, TxOutput, TxStatus, backend_from_spec,
)
from chain.backends.esplora import EsploraBackend  # noqa: E402
from tests.fakes.esplora_server import FakeEsplora  # noqa: E402

SHOP = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
CAFE = "bcrt1qnjg0jd8228aq7egyza7plqgskntf9xdqd6jm90"
ELSEWHERE = "bcrt1q9n9ta9a9yqgmretf6f396e7jqk6es632mzhkvw"


@pytest.fixture
def fx():
    with FakeEsplora() as fake:
        yield fake


@pytest.fixture
def backend(fx):
    b = EsploraBackend(fx.url, concurrency=3, timeout=5)
    yield b
    b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_backend_speaks_the_chain_backend_interface(backend):
    assert isinstance(backend, ChainBackend)
    assert backend.name == "esplora"


def test_the_tip_is_the_best_blocks_header(fx, backend):
    fx.chain.mine(3)
    tip = backend.tip()
    assert (tip.height, tip.hash) == (3, fx.chain.tip.hash)
    assert tip.prev_hash == fx.chain.blocks[2].hash
    assert tip.time == fx.chain.tip.time


def test_a_block_is_found_by_height_then_hash_with_every_input_and_output(fx, backend):
    paying = fx.chain.add_mempool_tx([(SHOP, 15_000), (ELSEWHERE, 84_000)])
    spender = fx.chain.add_mempool_tx([(CAFE, 50_000)], inputs=[(paying, 1)])
    fx.chain.add_mempool_tx([(None, 0), (CAFE, 1)])
    [block_hash] = fx.chain.mine()
    assert backend.block_hash_at(1) == block_hash
    block = backend.block(block_hash)
    assert block.header.height == 1 and block.header.prev_hash == fx.chain.blocks[0].hash
    coinbase, first, second, third = block.txs
    assert coinbase.inputs == () and coinbase.outputs[1].address is None   # witness commitment
    assert first.txid == paying
    assert first.outputs == (TxOutput(0, SHOP, 15_000), TxOutput(1, ELSEWHERE, 84_000))
    assert second.txid == spender and second.inputs == (OutPoint(paying, 1),)
    assert third.outputs == (TxOutput(0, None, 0), TxOutput(1, CAFE, 1))


def test_a_big_block_is_read_in_pages_of_25_in_order(fx, backend):
    txids = [fx.chain.add_mempool_tx([(SHOP, 1_000 + i)]) for i in range(80)]
    [block_hash] = fx.chain.mine()
    block = backend.block(block_hash)
    assert [tx.txid for tx in block.txs[1:]] == txids
    pages = [p for p in fx.requests if p.startswith(f"/block/{block_hash}/txs/")]
    assert sorted(pages) == sorted(f"/block/{block_hash}/txs/{i}" for i in (0, 25, 50, 75))


def test_an_unknown_block_and_a_height_above_the_tip(backend):
    assert backend.block_hash_at(5) is None
    with pytest.raises(BlockNotFound):
        backend.block("ab" * 32)


def test_the_mempool_round_returns_only_transactions_paying_watched_addresses(fx, backend):
    to_shop = fx.chain.add_mempool_tx([(SHOP, 10_000)])
    to_both = fx.chain.add_mempool_tx([(SHOP, 1), (CAFE, 2)])
    fx.chain.add_mempool_tx([(ELSEWHERE, 7_000)])
    found = backend.mempool_txs([SHOP.upper(), CAFE])
    assert sorted(tx.txid for tx in found) == sorted([to_shop, to_both])
    assert backend.mempool_txs([]) == []


def test_a_transaction_only_spending_from_a_watched_address_is_not_a_payment(fx, backend):
    funding = fx.chain.add_mempool_tx([(SHOP, 20_000)])
    fx.chain.mine()
    fx.chain.add_mempool_tx([(ELSEWHERE, 19_000)], inputs=[(funding, 0)])
    assert backend.mempool_txs([SHOP]) == []


def test_tx_status_confirmed_in_the_mempool_and_unknown(fx, backend):
    txid = fx.chain.add_mempool_tx([(SHOP, 10_000)])
    assert backend.tx_status(txid) == TxStatus(False, None, None, True)
    [block_hash] = fx.chain.mine()
    assert backend.tx_status(txid) == TxStatus(True, 1, block_hash, False)
    # electrs says {"confirmed": false} for a txid it never saw: that must read as unknown
    assert backend.tx_status("ef" * 32) == TxStatus(False, None, None, False)


def test_a_replaced_transaction_becomes_unknown_and_its_replacement_is_in_the_mempool(fx, backend):
    txid = fx.chain.add_mempool_tx([(SHOP, 10_000)])
    replacement = fx.chain.replace(txid)
    assert backend.tx_status(txid) == TxStatus(False, None, None, False)
    assert backend.tx_status(replacement).in_mempool
    assert backend.mempool_txs([SHOP]) == []


def test_a_reorg_shows_as_a_changed_hash_at_the_same_height(fx, backend):
    txid = fx.chain.add_mempool_tx([(SHOP, 10_000)])
    fx.chain.mine(2)
    old = backend.block_hash_at(1)
    orphaned = fx.chain.reorg(2)
    assert backend.tip().height == 0 and backend.block_hash_at(1) is None
    assert backend.tx_status(txid).in_mempool
    fx.chain.mine(2)
    assert backend.block_hash_at(1) not in (None, old)
    assert backend.block(orphaned[0]).header.hash == old   # stale blocks stay readable by hash
    assert backend.tx_status(txid).block_hash == backend.block_hash_at(1)


def test_a_429_stops_the_mempool_round_and_carries_retry_after(fx, backend):
    fx.fail(429, retry_after=7, times=1, path_prefix="/address/")
    with pytest.raises(BackendUnavailable) as caught:
        backend.mempool_txs([SHOP, CAFE, ELSEWHERE])
    assert caught.value.retry_after == 7.0
    assert len([p for p in fx.requests if p.startswith("/address/")]) == 1
    assert backend.mempool_txs([SHOP, CAFE, ELSEWHERE]) == []


def test_a_429_with_an_http_date_gives_seconds_to_wait(fx, backend):
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    fx.fail(429, retry_after=later.strftime("%a, %d %b %Y %H:%M:%S GMT"), times=1)
    with pytest.raises(BackendUnavailable) as caught:
        backend.tip()
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_backend_unavailable(fx, backend, status):
    fx.fail(status, times=1)
    with pytest.raises(BackendUnavailable) as caught:
        backend.tip()
    assert str(status) in str(caught.value)
    assert backend.tip().height == 0


def test_an_answer_that_is_not_json_is_backend_unavailable(fx, backend):
    fx.fail(200, body="<html>maintenance</html>", times=1, path_prefix="/block/")
    with pytest.raises(BackendUnavailable):
        backend.tip()


def test_a_refused_connection_is_backend_unavailable():
    backend = EsploraBackend(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(BackendUnavailable) as caught:
        backend.tip()
    assert caught.value.retry_after is None
    backend.close()


def test_a_slow_server_times_out_as_backend_unavailable(fx):
    fx.delay(1.0)
    backend = EsploraBackend(fx.url, timeout=0.2)
    with pytest.raises(BackendUnavailable, match="timed out"):
        backend.tip()
    backend.close()


def test_requests_are_paced_by_the_minimum_interval(fx):
    backend = EsploraBackend(fx.url, min_interval=0.05)
    started = time.monotonic()
    backend.mempool_txs([SHOP, CAFE, ELSEWHERE, SHOP.upper()])   # three distinct addresses
    backend.tip()                                                 # two more requests
    assert time.monotonic() - started >= 4 * 0.05
    backend.close()


def test_pacing_is_shared_by_the_block_page_threads(fx):
    sleeps = []
    clock = [100.0]
    backend = EsploraBackend(fx.url, min_interval=1.0, concurrency=4,
                             sleep=sleeps.append, monotonic=lambda: clock[0])
    for i in range(60):
        fx.chain.add_mempool_tx([(SHOP, 1_000 + i)])
    [block_hash] = fx.chain.mine()
    backend.block(block_hash)   # 1 header + 3 pages, all asking for a slot at the same instant
    assert sorted(sleeps) == [1.0, 2.0, 3.0]
    backend.close()


def test_the_spec_builds_an_unpaced_backend_for_a_local_server(fx):
    backend = backend_from_spec(f"esplora:{fx.url}", network="regtest")
    assert backend.min_interval == 0 and backend.tip().height == 0
    backend.close()
