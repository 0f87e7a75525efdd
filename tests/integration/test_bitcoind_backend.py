"""The Bitcoin Core JSON-RPC backend against a fake node on 127.0.0.1, and the ZMQ
notifier against a real zmq PUB socket."""
import os
import socket
import struct
import tempfile
import time

import pytest
import requests
import zmq

os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-tests-bitcoinlib"))

from chain.backends import (  # noqa: E402
    BackendUnavailable, BlockNotFound, ChainBackend, OutPoint, TxOutput, TxStatus, backend_from_spec,
)
from chain.backends.bitcoind import BitcoindBackend, RpcError  # noqa: E402
from chain.backends.zmq_notify import ZmqNotifier  # noqa: E402
from tests.fakes.bitcoind_server import FakeBitcoind  # noqa: E402

SHOP = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
CAFE = "bcrt1qnjg0jd8228aq7egyza7plqgskntf9xdqd6jm90"
ELSEWHERE = "bcrt1q9n9ta9a9yqgmretf6f396e7jqk6es632mzhkvw"
UNKNOWN = TxStatus(False, None, None, False)


@pytest.fixture
def node():
    with FakeBitcoind() as fake:
        yield fake


@pytest.fixture
def backend(node):
    b = BitcoindBackend(node.url, username=node.user, password=node.password, timeout=5)
    yield b
    b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_backend_speaks_the_chain_backend_interface(backend):
    assert isinstance(backend, ChainBackend) and backend.name == "bitcoind"


def test_the_tip_is_the_best_blocks_header(node, backend):
    node.chain.mine(2)
    tip = backend.tip()
    assert (tip.height, tip.hash, tip.prev_hash) == (2, node.chain.tip.hash, node.chain.blocks[1].hash)
    assert tip.time == node.chain.tip.time


def test_a_block_is_found_by_height_then_hash_with_every_input_and_output(node, backend):
    paying = node.chain.add_mempool_tx([(SHOP, 15_000), (ELSEWHERE, 84_000)])
    spender = node.chain.add_mempool_tx([(CAFE, 50_000)], inputs=[(paying, 1)])
    [block_hash] = node.chain.mine()
    assert backend.block_hash_at(1) == block_hash
    block = backend.block(block_hash)
    assert block.header.height == 1 and block.header.prev_hash == node.chain.blocks[0].hash
    coinbase, first, second = block.txs
    assert coinbase.inputs == ()
    assert coinbase.outputs[0].value_sats == 50 * 100_000_000 + 282 + (84_000 - 50_000)   # subsidy + fees
    assert coinbase.outputs[1].address is None
    assert first.outputs == (TxOutput(0, SHOP, 15_000), TxOutput(1, ELSEWHERE, 84_000))
    assert second.txid == spender and second.inputs == (OutPoint(paying, 1),)


def test_a_height_above_the_tip_is_none_and_an_unknown_block_is_not_found(backend):
    assert backend.block_hash_at(1) is None
    with pytest.raises(BlockNotFound):
        backend.block("ab" * 32)


def test_amounts_are_converted_exactly_from_the_nodes_json_numbers(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 1), (CAFE, 2_099_999_997_690_000)])
    body = requests.post(node.url, auth=(node.user, node.password),
                         json={"method": "getrawtransaction", "params": [txid, True], "id": 1}).text
    assert '"value": 0.00000001' in body and '"value": 20999999.97690000' in body
    [tx] = backend.mempool_txs([SHOP])
    assert [o.value_sats for o in tx.outputs] == [1, 2_099_999_997_690_000]


def test_the_mempool_round_returns_only_transactions_paying_watched_addresses(node, backend):
    to_shop = node.chain.add_mempool_tx([(SHOP, 10_000)])
    to_both = node.chain.add_mempool_tx([(SHOP, 1), (CAFE, 2)])
    node.chain.add_mempool_tx([(ELSEWHERE, 7_000)])
    found = backend.mempool_txs([SHOP.upper(), CAFE])
    assert sorted(tx.txid for tx in found) == sorted([to_shop, to_both])


def test_the_mempool_round_fetches_only_transactions_it_has_not_seen(node, backend):
    for i in range(3):
        node.chain.add_mempool_tx([(SHOP, 1_000 + i)])
    assert len(backend.mempool_txs([SHOP])) == 3
    fetched_before = node.calls.count("getrawtransaction")
    newest = node.chain.add_mempool_tx([(SHOP, 9_999)])
    found = backend.mempool_txs([SHOP])
    assert len(found) == 4 and newest in {tx.txid for tx in found}
    assert node.calls.count("getrawtransaction") - fetched_before == 1
    node.chain.mine()
    assert backend.mempool_txs([SHOP]) == [] and backend._cache == {}


def test_a_transaction_that_leaves_the_mempool_mid_round_is_skipped(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    node.rpc_error("getrawtransaction", -5, "No such mempool transaction.", times=1)
    assert backend.mempool_txs([SHOP]) == []
    assert [tx.txid for tx in backend.mempool_txs([SHOP])] == [txid]


def test_tx_status_in_the_mempool_confirmed_and_unknown_without_txindex(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    assert backend.tx_status(txid) == TxStatus(False, None, None, True)
    [block_hash] = node.chain.mine()
    # Without -txindex Core finds confirmed txs only given their block: the backend
    # remembers which block it saw them in.
    assert backend.tx_status(txid) == UNKNOWN
    backend.block(block_hash)
    assert backend.tx_status(txid) == TxStatus(True, 1, block_hash, False)
    assert backend.tx_status("ef" * 32) == UNKNOWN


def test_tx_status_of_a_confirmed_transaction_with_txindex(node, backend):
    node.txindex = True
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    [block_hash] = node.chain.mine(2)[:1]
    assert backend.tx_status(txid) == TxStatus(True, 1, block_hash, False)


def test_a_replaced_transaction_becomes_unknown(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    replacement = node.chain.replace(txid)
    assert backend.tx_status(txid) == UNKNOWN
    assert backend.tx_status(replacement).in_mempool


def test_a_reorg_shows_as_a_changed_hash_and_a_dropped_tx_as_unknown(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    [old] = node.chain.mine()
    backend.block(old)
    node.chain.reorg(1, drop=True)
    assert backend.block_hash_at(1) is None
    assert backend.tx_status(txid) == UNKNOWN          # its block is stale, and it is gone
    [new] = node.chain.mine()
    assert backend.block_hash_at(1) == new != old
    assert backend.block(old).header.hash == old      # stale blocks stay readable


def test_a_reorged_transaction_back_in_the_mempool_reads_as_in_the_mempool(node, backend):
    node.txindex = True
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    node.chain.mine()
    node.chain.reorg(1)
    assert backend.tx_status(txid) == TxStatus(False, None, None, True)


def test_bad_credentials_are_a_clear_error_without_the_password(node):
    backend = BitcoindBackend(node.url, username=node.user, password="wrong-secret-123")
    with pytest.raises(BackendUnavailable) as caught:
        backend.tip()
    message = str(caught.value)
    assert "401" in message and "credentials" in message
    assert "wrong-secret-123" not in message and node.password not in message


def test_cookie_authentication_survives_a_node_restart(tmp_path):
    with FakeBitcoind(cookie_dir=tmp_path) as node:
        backend = backend_from_spec(f"bitcoind:{node.url}?cookie={node.cookie_file}")
        assert backend.tip().height == 0
        node.rotate_cookie()
        assert backend.tip().height == 0


def test_a_missing_cookie_file_is_backend_unavailable(tmp_path, node):
    backend = BitcoindBackend(node.url, cookie_file=str(tmp_path / "nope" / ".cookie"))
    with pytest.raises(BackendUnavailable, match="cookie"):
        backend.tip()


@pytest.mark.parametrize("style", ["legacy", "v2"])
def test_rpc_error_objects_are_read_with_http_500_or_200(style):
    with FakeBitcoind(error_style=style) as node:
        backend = BitcoindBackend(node.url, username=node.user, password=node.password)
        assert backend.block_hash_at(99) is None          # -8 out of range
        with pytest.raises(RpcError) as caught:
            backend.call("getblockheader", "ab" * 32)
        assert caught.value.code == -5
        with pytest.raises(RpcError) as unknown:
            backend.call("nosuchmethod")
        assert unknown.value.code == -32601


def test_a_node_warming_up_is_backend_unavailable(node, backend):
    node.rpc_error("getbestblockhash", -28, "Loading block index…", times=1)
    with pytest.raises(BackendUnavailable, match="Loading"):
        backend.tip()
    assert backend.tip().height == 0


@pytest.mark.parametrize("status, body", [(500, b""), (503, b"<html>Service Unavailable</html>")])
def test_http_errors_without_json_are_backend_unavailable(node, backend, status, body):
    node.fail(status, body=body, times=1)
    with pytest.raises(BackendUnavailable):
        backend.tip()


def test_a_refused_connection_and_a_timeout_are_backend_unavailable(node):
    refused = BitcoindBackend(f"http://127.0.0.1:{free_port()}", username="u", password="p", timeout=2)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        refused.tip()
    node.delay(1.0)
    slow = BitcoindBackend(node.url, username=node.user, password=node.password, timeout=0.2)
    with pytest.raises(BackendUnavailable, match="timed out"):
        slow.tip()


def test_the_spec_reads_user_and_password_from_the_url(node):
    backend = backend_from_spec(f"bitcoind:{node.url_with_credentials}")
    assert backend.tip().height == 0
    assert node.password not in backend.url


# --------------------------------------------------------------------------- a node's life

def test_a_reindexing_node_is_not_ready_while_its_tip_climbs_back_from_genesis(node, backend):
    node.chain.mine(4)
    node.restart(reindex=True, ibd_pace=1, warmup=(), mempool_loading=1)
    first = backend.node_state()
    assert not first.ready and "initial block download" in first.reason and first.height < 4
    while "initial block download" in (backend.node_state().reason or ""):
        pass
    loading = backend.node_state()
    assert backend.node_state().ready or "mempool" in loading.reason
    assert backend.node_state().ready and backend.tip().height == 4


def test_a_restarted_node_answers_minus_28_in_sequence_then_loads_its_mempool(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    node.restart(mempool=False, mempool_loading=2)
    messages = []
    for _ in range(3):
        with pytest.raises(BackendUnavailable) as caught:
            backend.probe()
        messages.append(str(caught.value))
    assert ["Loading block index" in messages[0], "Verifying blocks" in messages[1],
            "Loading wallet" in messages[2]] == [True, True, True]
    assert backend.mempool_txs([SHOP]) == []           # not loaded yet: nothing to judge by
    assert backend.node_state().reason == "the node is still loading its mempool"
    assert backend.node_state().reason == "the node is still loading its mempool"
    assert backend.node_state().ready
    assert [tx.txid for tx in backend.mempool_txs([SHOP])] == [txid]


def test_a_crash_loses_the_unflushed_blocks_and_the_mempool(node, backend):
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    node.chain.mine(3)
    pending = node.chain.add_mempool_tx([(CAFE, 5_000)])
    lost = node.crash(lose_blocks=2)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        backend.probe()
    node.boot(warmup=(), mempool_loading=0)
    assert backend.tip().height == 1 and len(lost) == 2
    with pytest.raises(BlockNotFound):
        backend.block(lost[0])
    assert backend.tx_status(pending) == UNKNOWN and backend.mempool_txs([SHOP, CAFE]) == []
    node.chain.rebroadcast(pending)
    assert [tx.txid for tx in backend.mempool_txs([CAFE])] == [pending] and txid


def test_a_reorg_returns_orphaned_transactions_to_the_mempool_unless_they_conflict(node, backend):
    kept = node.chain.add_mempool_tx([(SHOP, 10_000)])
    spent = node.chain.add_mempool_tx([(CAFE, 9_000)])
    node.chain.mine()
    conflict = node.chain.conflicting(spent)       # another miner's branch spends it elsewhere
    node.chain.reorg(1, mine=2, txids=[conflict])
    assert backend.tip().height == 2
    assert backend.tx_status(kept).in_mempool
    assert backend.tx_status(spent) == UNKNOWN


def test_mempool_payments_carry_the_nodes_first_seen_time(node, backend):
    node.chain.clock = lambda: 1_795_000_123
    txid = node.chain.add_mempool_tx([(SHOP, 10_000)])
    [tx] = backend.mempool_txs([SHOP])
    assert (tx.txid, tx.first_seen) == (txid, 1_795_000_123)
    calls = node.calls.count("getmempoolentry")
    backend.mempool_txs([SHOP])
    assert node.calls.count("getmempoolentry") == calls   # asked once per transaction


def test_core_v31_fields_are_served_and_tolerated(node, backend):
    node.chain.add_mempool_tx([(SHOP, 10_000)])
    body = lambda method, *params: requests.post(  # noqa: E731
        node.url, auth=(node.user, node.password),
        json={"method": method, "params": list(params), "id": 1}).json()["result"]
    [entry] = body("getrawmempool", True).values()
    assert entry["chunkweight"] == entry["weight"] and "chunk" in entry["fees"]
    [block_hash] = node.chain.mine()
    block = body("getblock", block_hash, 2)
    assert block["target"] and block["coinbase_tx"]["sequence"] == 4294967294
    assert block["tx"][0]["vin"][0]["sequence"] == 4294967294
    assert "target" in body("getblockchaininfo")
    parsed = backend.block(block_hash)
    assert parsed.header.median_time == block["mediantime"] and parsed.txs[0].inputs == ()


# --------------------------------------------------------------------------- ZMQ

@pytest.fixture
def publisher():
    context = zmq.Context()
    socket_ = context.socket(zmq.PUB)
    socket_.setsockopt(zmq.LINGER, 0)
    port = socket_.bind_to_random_port("tcp://127.0.0.1")
    yield socket_, f"tcp://127.0.0.1:{port}"
    socket_.close(0)
    context.term()


def publish_until_heard(pub, notifier, topic: bytes, body: bytes, seq: int) -> int:
    """A new subscriber misses messages until its subscription reaches the publisher:
    publish until one is heard, like a node announcing block after block."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pub.send_multipart([topic, body, struct.pack("<I", seq)])
        seq += 1
        if notifier.wait(0.1):
            return seq
    raise AssertionError("the notifier never heard the publisher")


def test_the_zmq_notifier_wakes_the_watcher_on_a_block_or_a_transaction(publisher):
    pub, endpoint = publisher
    with ZmqNotifier([endpoint]) as notifier:
        seq = publish_until_heard(pub, notifier, b"hashblock", bytes(32), 0)
        assert notifier.wait(0.2) is False            # nothing new: no wake-up
        pub.send_multipart([b"rawtx", b"\x02\x00\x00\x00", struct.pack("<I", 0)])
        assert notifier.wait(5) is True
        assert notifier.counts["hashblock"] >= 1 and notifier.counts["rawtx"] == 1
        pub.send_multipart([b"sequence", b"x", struct.pack("<I", 0)])   # not subscribed
        assert notifier.wait(0.3) is False
        assert notifier.alive and seq >= 1


def test_notifications_that_arrive_between_waits_are_not_lost(publisher):
    pub, endpoint = publisher
    with ZmqNotifier([endpoint]) as notifier:
        seq = publish_until_heard(pub, notifier, b"hashblock", bytes(32), 0)
        for _ in range(3):
            pub.send_multipart([b"hashblock", bytes(32), struct.pack("<I", seq)])
            seq += 1
        time.sleep(0.3)
        assert notifier.wait(0) is True
        assert notifier.wait(0.1) is False


def test_a_zmq_notifier_needs_an_endpoint():
    with pytest.raises(ValueError):
        ZmqNotifier([])
