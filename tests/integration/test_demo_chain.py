"""The offline demo chain: real signed regtest transactions in a shared SQLite file."""
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time

import pytest

os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-tests-bitcoinlib"))

from chain.backends import (  # noqa: E402
    BlockNotFound, ChainBackend, TxOutput, TxStatus, backend_from_spec,
)
from chain.backends.demo import (  # noqa: E402
    DEMO_PAYER_ADDRESSES, DEMO_PAYER_PRIVATE_KEY, DemoChain, InsufficientFunds,
)

SHOP = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
CAFE = "bcrt1qnjg0jd8228aq7egyza7plqgskntf9xdqd6jm90"
PAYER = DEMO_PAYER_ADDRESSES["regtest"]
UNKNOWN = TxStatus(False, None, None, False)
IN_MEMPOOL = TxStatus(False, None, None, True)


@pytest.fixture
def chain(tmp_path, clock):
    demo = DemoChain(str(tmp_path / "demochain.sqlite3"), clock=clock)
    yield demo
    demo.close()


def parse(raw_hex: str):
    from bitcoinlib.transactions import Transaction

    return Transaction.parse_hex(raw_hex, network="regtest")


def test_a_new_chain_has_a_genesis_block_funding_the_demo_payer(chain, clock):
    assert isinstance(chain, ChainBackend) and chain.name == "demo"
    tip = chain.tip()
    assert (tip.height, tip.prev_hash, tip.time) == (0, None, int(clock().timestamp()))
    genesis = chain.block(tip.hash)
    [coinbase] = genesis.txs
    assert coinbase.inputs == ()
    assert {o.address for o in coinbase.outputs} == {PAYER}
    assert chain.payer_balance() == 100 * 100_000_000


def test_the_payer_key_is_the_published_demo_key():
    from bitcoinlib.keys import Key

    assert Key(DEMO_PAYER_PRIVATE_KEY, network="regtest").address(encoding="bech32") == PAYER


def test_a_payment_enters_the_mempool_and_matches_a_watched_address(chain):
    txid = chain.pay(SHOP, 15_000)
    assert chain.tx_status(txid) == IN_MEMPOOL
    [tx] = chain.mempool_txs([SHOP.upper(), CAFE])
    assert tx.txid == txid
    assert tx.outputs[0] == TxOutput(0, SHOP, 15_000)
    assert tx.outputs[1].address == PAYER                       # the change
    assert chain.mempool_txs([CAFE]) == []


def test_the_raw_transaction_parses_with_bitcoinlib_and_its_signatures_verify(chain):
    txid = chain.pay(SHOP, 12_345)
    [decoded] = chain.mempool_txs([SHOP])
    parsed = parse(chain.raw_tx(txid))
    assert parsed.txid == txid and parsed.witness_type == "segwit"
    assert [(o.output_n, o.address, o.value) for o in parsed.outputs] == \
        [(o.n, o.address, o.value_sats) for o in decoded.outputs]
    assert [(i.prev_txid.hex(), i.output_n_int) for i in parsed.inputs] == \
        [(i.txid, i.vout) for i in decoded.inputs]
    with sqlite3.connect(chain.path) as db:   # segwit signatures commit to the spent values
        for item in parsed.inputs:
            item.value = db.execute("SELECT value FROM tx_outputs WHERE txid = ? AND n = ?",
                                    (item.prev_txid.hex(), item.output_n_int)).fetchone()[0]
    assert parsed.verify()
    fee = sum(i.value for i in parsed.inputs) - sum(o.value for o in parsed.outputs)
    assert 0 < fee <= 2 * parsed.vsize + 4


def test_mining_confirms_every_mempool_transaction_in_one_block(chain):
    first, second = chain.pay(SHOP, 10_000), chain.pay(CAFE, 20_000)
    [block_hash] = chain.mine()
    assert chain.block_hash_at(1) == block_hash and chain.block_hash_at(2) is None
    block = chain.block(block_hash)
    assert block.header.prev_hash == chain.block_hash_at(0)
    coinbase, *paid = block.txs
    assert coinbase.inputs == () and [tx.txid for tx in paid] == [first, second]
    assert coinbase.outputs[0].value_sats > 50 * 100_000_000    # subsidy plus the fees
    assert all(tx.inputs for tx in paid)
    assert chain.tx_status(first) == TxStatus(True, 1, block_hash, False)
    assert chain.mempool_txs([SHOP, CAFE]) == []


def test_block_hashes_meet_regtest_proof_of_work_and_unknown_blocks_are_refused(chain):
    for block_hash in chain.mine(3):
        assert int(block_hash, 16) <= 0x7FFFFF << (8 * 29)
    with pytest.raises(BlockNotFound):
        chain.block("ab" * 32)


def test_a_reorg_puts_the_orphaned_transactions_back_in_the_mempool(chain):
    txid = chain.pay(SHOP, 10_000)
    orphaned = chain.mine(2)
    assert chain.reorg(2) == orphaned
    assert chain.tip().height == 0 and chain.block_hash_at(1) is None
    assert chain.tx_status(txid) == IN_MEMPOOL
    assert [tx.txid for tx in chain.mempool_txs([SHOP])] == [txid]
    rebuilt = chain.mine()
    assert rebuilt[0] != orphaned[0] and chain.block_hash_at(1) == rebuilt[0]
    assert chain.tx_status(txid).block_hash == rebuilt[0]
    assert chain.block(orphaned[0]).header.hash == orphaned[0]   # stale blocks stay readable


def test_a_reorg_with_drop_makes_the_payment_vanish_and_frees_the_payers_coins(chain):
    before = chain.payer_balance()
    txid = chain.pay(SHOP, 10_000)
    chain.mine()
    chain.reorg(1, drop=True)
    assert chain.tx_status(txid) == UNKNOWN
    assert chain.mempool() == [] and chain.payer_balance() == before
    again = chain.pay(SHOP, 10_000)                  # the freed coins can be spent again
    assert chain.tx_status(again) == IN_MEMPOOL


def test_a_rebuilt_height_gets_a_different_hash_even_at_the_same_time(chain):
    hashes = set()
    for _ in range(5):
        hashes.update(chain.mine())
        chain.reorg(1)
    assert len(hashes) == 5


def test_the_chain_cannot_reorganise_its_genesis(chain):
    chain.mine(2)
    with pytest.raises(ValueError):
        chain.reorg(3)


def test_a_double_spend_replaces_the_payment_and_the_original_disappears(chain):
    txid = chain.pay(SHOP, 10_000)
    replacement = chain.double_spend(txid)
    assert chain.tx_status(txid) == UNKNOWN
    assert chain.tx_status(replacement) == IN_MEMPOOL
    assert chain.mempool_txs([SHOP]) == []
    original_inputs = {(i.prev_txid.hex(), i.output_n_int) for i in parse(chain.raw_tx(txid)).inputs}
    replacing = parse(chain.raw_tx(replacement))
    assert {(i.prev_txid.hex(), i.output_n_int) for i in replacing.inputs} == original_inputs
    assert [o.address for o in replacing.outputs] == [PAYER]
    [block_hash] = chain.mine()
    assert [tx.txid for tx in chain.block(block_hash).txs[1:]] == [replacement]


def test_a_double_spend_can_pay_another_address(chain):
    txid = chain.pay(SHOP, 10_000)
    replacement = chain.double_spend(txid, CAFE)
    [tx] = chain.mempool_txs([CAFE])
    assert tx.txid == replacement and tx.outputs[0].address == CAFE


def test_a_double_spend_also_removes_transactions_built_on_the_original(chain):
    # Without confirmed coins left the payer spends its unconfirmed change, as wallets do.
    chain.mine(1)
    txids = [chain.pay(SHOP, 10_000 + i) for i in range(101)]
    last = txids[-1]
    parent = {i.prev_txid.hex() for i in parse(chain.raw_tx(last)).inputs}
    assert parent <= set(txids)
    [spent_parent] = parent
    bystander = next(t for t in txids[:-1] if t != spent_parent)
    chain.double_spend(spent_parent)
    assert chain.tx_status(spent_parent) == UNKNOWN
    assert chain.tx_status(last) == UNKNOWN
    assert chain.tx_status(bystander) == IN_MEMPOOL


def test_a_confirmed_payment_cannot_be_double_spent_without_a_reorg(chain):
    txid = chain.pay(SHOP, 10_000)
    chain.mine()
    with pytest.raises(ValueError, match="reorg"):
        chain.double_spend(txid)
    chain.reorg(1)
    assert chain.tx_status(chain.double_spend(txid)) == IN_MEMPOOL


@pytest.mark.parametrize("address, sats", [
    ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", 10_000),   # mainnet address on regtest
    ("not an address", 10_000),
    (SHOP, 293),                                               # dust
    (SHOP, 0),
])
def test_payments_the_node_would_refuse_are_refused(chain, address, sats):
    with pytest.raises(ValueError):
        chain.pay(address, sats)
    assert chain.mempool() == []


def test_a_payment_beyond_the_payers_funds_is_refused(chain):
    with pytest.raises(InsufficientFunds):
        chain.pay(SHOP, 101 * 100_000_000)
    assert chain.mempool() == []


def test_legacy_regtest_addresses_get_their_m_and_2_forms_back(chain):
    for address in ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "2MyHZxgtTiAtGsPFw1CPqCuHn1J8WQPdw9r"):
        txid = chain.pay(address, 10_000)
        [tx] = chain.mempool_txs([address])
        assert tx.txid == txid and tx.outputs[0].address == address


def test_an_upper_case_bech32_address_is_paid_and_stored_in_lower_case(chain):
    chain.pay(SHOP.upper(), 10_000)
    [tx] = chain.mempool_txs([SHOP])
    assert tx.outputs[0].address == SHOP


def test_a_payment_takes_less_than_50_ms(chain):
    chain.pay(SHOP, 10_000)                # warm-up: bitcoinlib import and key
    timings = []
    for i in range(20):
        started = time.perf_counter()
        chain.pay(SHOP, 10_000 + i)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.05


def test_the_chain_lives_in_its_file_and_is_shared_by_instances(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    one, two = DemoChain(path), DemoChain(path)
    txid = one.pay(SHOP, 10_000)
    assert two.tx_status(txid) == IN_MEMPOOL
    [block_hash] = two.mine()
    assert one.tip().hash == block_hash
    one.close(), two.close()
    with pytest.raises(ValueError):
        DemoChain(path, network="testnet")


def test_the_spec_demo_opens_the_chain_at_the_given_path(tmp_path):
    chain = backend_from_spec("demo", demo_path=str(tmp_path / "d.sqlite3"))
    assert isinstance(chain, DemoChain) and chain.tip().height == 0
    chain.close()


def _pay_many(path: str, address: str, count: int, start, results) -> None:
    chain = DemoChain(path)
    chain.pay(address, 1_000)              # warm up before the start line
    start.wait(30)
    results.put([chain.pay(address, 10_000 + i) for i in range(count)])
    chain.close()


def test_two_processes_paying_at_once_both_land(tmp_path):
    path = str(tmp_path / "busy.sqlite3")
    DemoChain(path).close()
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_pay_many, args=(path, address, 15, start, results))
               for address in (SHOP, CAFE)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    start.set()
    paid = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    chain = DemoChain(path)
    in_mempool = {tx.txid for tx in chain.mempool_txs([SHOP, CAFE])}
    assert len(set(paid[0] + paid[1])) == 30 and set(paid[0] + paid[1]) <= in_mempool
    assert len(in_mempool) == 32                  # and the two warm-up payments
    spent = [(i.txid, i.vout) for tx in chain.mempool_txs([SHOP, CAFE]) for i in tx.inputs]
    assert len(spent) == len(set(spent))          # no coin spent twice
    [block_hash] = chain.mine()
    assert len(chain.block(block_hash).txs) == 1 + 32
    chain.close()
