"""Parsing the backends' wire formats into the chain dataclasses, exact amounts, specs.

No network, no database. bitcoinlib (address/script helpers of the demo chain) is
imported with BCL_DATA_DIR in a temp dir.
"""
import json
import os
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

os.environ.setdefault("BCL_DATA_DIR", os.path.join(tempfile.gettempdir(), "busanpay-tests-bitcoinlib"))

from chain.backends import (  # noqa: E402
    MAX_MONEY_SATS, BackendError, ChainBackend, OutPoint, TxOutput, backend_from_spec, btc_to_sats,
    check_hash, normalize_address,
)
from chain.backends import bitcoind, esplora  # noqa: E402
from chain.backends.demo import address_for_script, dust_limit, script_for_address  # noqa: E402

ADDR = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
TXID = "7226297f5066505304ecee3cc42095027e0cf83c58e1019d6940846bc2316d5c"
OTHER = "ad64923bec200d9c9933096ccc1b182cd91a93050ac37dcc60ee5c072b391b32"


def core_text(sats: int) -> str:
    whole, frac = divmod(sats, 100_000_000)
    return f"{whole}.{frac:08d}"


# --------------------------------------------------------------------------- amounts

@pytest.mark.parametrize("text, sats", [
    ("0.00000001", 1),
    ("20999999.9769", 2_099_999_997_690_000),
    ("20999999.97690000", 2_099_999_997_690_000),
    ("0E-8", 0),
    ("0.1", 10_000_000),
    ("21000000.00000000", MAX_MONEY_SATS),
    ("1e-8", 1),
])
def test_btc_amounts_convert_to_satoshis_exactly(text, sats):
    assert btc_to_sats(Decimal(text)) == sats
    assert btc_to_sats(text) == sats


def test_the_float_path_would_lose_a_satoshi_and_is_refused():
    assert int(float("0.29") * 100_000_000) == 28_999_999      # what a float parser would credit
    assert btc_to_sats(Decimal("0.29")) == 29_000_000
    with pytest.raises(TypeError):
        btc_to_sats(0.29)


@pytest.mark.parametrize("bad", ["0.000000001", "-0.00000001", "21000000.00000001", "NaN", "Infinity", "abc"])
def test_fractions_of_a_satoshi_negative_and_impossible_amounts_are_refused(bad):
    with pytest.raises(ValueError):
        btc_to_sats(bad)


@given(st.integers(min_value=0, max_value=MAX_MONEY_SATS))
def test_every_amount_bitcoin_core_can_write_comes_back_to_the_same_satoshis(sats):
    reply = json.loads('{"value": %s}' % core_text(sats), parse_float=Decimal)
    assert btc_to_sats(reply["value"]) == sats


# --------------------------------------------------------------------------- esplora

def esplora_tx(**overrides):
    tx = {
        "txid": TXID, "version": 2, "locktime": 0, "size": 222, "weight": 561, "fee": 282,
        "vin": [{"txid": OTHER, "vout": 1, "prevout": None, "scriptsig": "", "scriptsig_asm": "",
                 "witness": ["30", "02"], "is_coinbase": False, "sequence": 4294967293}],
        "vout": [
            {"scriptpubkey": "0014d0c4a3ef09e997b6e99e397e518fe3e41a118ca1",
             "scriptpubkey_asm": "OP_0 OP_PUSHBYTES_20 d0c4a3ef09e997b6e99e397e518fe3e41a118ca1",
             "scriptpubkey_type": "v0_p2wpkh", "scriptpubkey_address": ADDR, "value": 15_000},
            {"scriptpubkey": "6a0568656c6c6f", "scriptpubkey_asm": "OP_RETURN OP_PUSHBYTES_5 68656c6c6f",
             "scriptpubkey_type": "op_return", "value": 0},
        ],
        "status": {"confirmed": False},
    }
    tx.update(overrides)
    return tx


def test_an_esplora_transaction_becomes_inputs_and_outputs_in_sats():
    tx = esplora.parse_tx(esplora_tx())
    assert tx.txid == TXID
    assert tx.inputs == (OutPoint(OTHER, 1),)
    assert tx.outputs == (TxOutput(0, ADDR, 15_000), TxOutput(1, None, 0))


def test_an_esplora_coinbase_input_is_left_out():
    coinbase = {"txid": "0" * 64, "vout": 4294967295, "prevout": None, "scriptsig": "0101",
                "scriptsig_asm": "OP_PUSHBYTES_1 01", "is_coinbase": True, "sequence": 4294967295}
    assert esplora.parse_tx(esplora_tx(vin=[coinbase])).inputs == ()


@pytest.mark.parametrize("value", [1.0, "15000", None, True])
def test_an_esplora_amount_that_is_not_an_integer_is_refused(value):
    tx = esplora_tx()
    tx["vout"][0]["value"] = value
    with pytest.raises(BackendError):
        esplora.parse_tx(tx)


def test_an_esplora_block_header_and_the_genesis_without_a_parent():
    block = {"id": "AB" * 32, "height": 0, "version": 1, "timestamp": 1296688602, "tx_count": 1,
             "size": 285, "weight": 1140, "merkle_root": "00" * 32, "previousblockhash": None,
             "mediantime": 1296688602, "nonce": 2, "bits": 545259519, "difficulty": 4.6e-10}
    header = esplora.parse_block_header(block)
    assert (header.height, header.hash, header.prev_hash, header.time) == (0, "ab" * 32, None, 1296688602)


def test_esplora_tx_status_shapes():
    assert esplora.parse_tx_status({"confirmed": True, "block_height": 7, "block_hash": "cd" * 32,
                                    "block_time": 1}).block_height == 7
    assert esplora.parse_tx_status({"confirmed": False}).in_mempool
    with pytest.raises(BackendError):
        esplora.parse_tx_status({"status": "weird"})


def test_retry_after_in_seconds_or_as_an_http_date():
    now = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
    assert esplora.parse_retry_after("7") == 7.0
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert esplora.parse_retry_after(later, now=lambda: now) == 30.0
    assert esplora.parse_retry_after("soon") is None
    assert esplora.parse_retry_after(None) is None


# --------------------------------------------------------------------------- bitcoin core

def core_tx_text(value_text: str) -> str:
    return """{"txid": "%s", "hash": "%s", "version": 2, "size": 222, "vsize": 141, "weight": 561,
      "locktime": 0,
      "vin": [{"txid": "%s", "vout": 0, "scriptSig": {"asm": "", "hex": ""},
               "txinwitness": ["30", "02"], "sequence": 4294967293}],
      "vout": [{"value": %s, "n": 0, "scriptPubKey": {"asm": "0 d0c4", "desc": "addr(%s)#xxxxxxxx",
                "hex": "0014d0c4a3ef09e997b6e99e397e518fe3e41a118ca1", "address": "%s",
                "type": "witness_v0_keyhash"}},
               {"value": 0.00000000, "n": 1, "scriptPubKey": {"asm": "OP_RETURN 68656c6c6f",
                "desc": "raw(6a0568656c6c6f)#xxxxxxxx", "hex": "6a0568656c6c6f", "type": "nulldata"}}],
      "fee": 0.00000282, "hex": "02"}""" % (TXID, TXID, OTHER, value_text, ADDR, ADDR)


@pytest.mark.parametrize("text, sats", [("0.00000001", 1), ("20999999.97690000", 2_099_999_997_690_000)])
def test_a_bitcoin_core_transaction_is_parsed_with_exact_amounts(text, sats):
    tx = bitcoind.parse_tx(bitcoind.loads(core_tx_text(text)))
    assert tx.inputs == (OutPoint(OTHER, 0),)
    assert tx.outputs == (TxOutput(0, ADDR, sats), TxOutput(1, None, 0))


def test_a_bitcoin_core_amount_parsed_as_float_is_refused():
    with pytest.raises(BackendError):
        bitcoind.parse_tx(json.loads(core_tx_text("0.1")))


def test_a_sub_satoshi_amount_from_a_node_is_refused():
    with pytest.raises(BackendError):
        bitcoind.parse_tx(bitcoind.loads(core_tx_text("0.000000001")))


def test_a_bitcoin_core_coinbase_input_is_left_out_and_old_addresses_lists_are_read():
    data = bitcoind.loads(core_tx_text("50.00000000"))
    data["vin"] = [{"coinbase": "510101", "sequence": 4294967295}]
    script = data["vout"][0]["scriptPubKey"]
    script["addresses"] = [script.pop("address")]        # Core < 22
    tx = bitcoind.parse_tx(data)
    assert tx.inputs == ()
    assert tx.outputs[0] == TxOutput(0, ADDR, 5_000_000_000)


def test_a_bitcoin_core_header_without_a_parent_is_the_genesis():
    header = bitcoind.parse_header({"hash": "0f" * 32, "height": 0, "time": 1296688602,
                                    "confirmations": 3})
    assert header.prev_hash is None and header.height == 0


# --------------------------------------------------------------------------- helpers and specs

def test_bech32_addresses_compare_in_lower_case_and_base58_as_given():
    assert normalize_address(ADDR.upper()) == ADDR
    assert normalize_address("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn") == "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"


def test_hashes_are_checked_and_lower_cased():
    assert check_hash("AB" * 32) == "ab" * 32
    for bad in ["ab" * 31, "zz" * 32, None, 5]:
        with pytest.raises(BackendError):
            check_hash(bad)


@pytest.mark.parametrize("address, script_hex", [
    (ADDR, "0014d0c4a3ef09e997b6e99e397e518fe3e41a118ca1"),
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "76a914243f1394f44554f4ce3fd68649c19adc483ce92488ac"),
    ("bcrt1pqqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0sj9hjuh",
     "5120000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
])
def test_addresses_and_scripts_round_trip_on_regtest(address, script_hex):
    assert script_for_address(address).hex() == script_hex
    assert address_for_script(bytes.fromhex(script_hex), "regtest") == address


def test_a_regtest_p2sh_script_gets_a_2_address_not_a_mainnet_one():
    script = bytes.fromhex("a914" + "11" * 20 + "87")
    address = address_for_script(script, "regtest")
    assert address.startswith("2")
    assert script_for_address(address) == script
    assert address_for_script(bytes.fromhex("6a0568656c6c6f"), "regtest") is None


def test_dust_limits_match_bitcoin_core_defaults():
    assert dust_limit(script_for_address(ADDR)) == 294
    assert dust_limit(bytes.fromhex("5120" + "00" * 32)) == 330
    assert dust_limit(bytes.fromhex("76a914" + "00" * 20 + "88ac")) == 546
    assert dust_limit(bytes.fromhex("a914" + "00" * 20 + "87")) == 540


def test_an_esplora_spec_keeps_the_path_and_takes_its_options():
    backend = backend_from_spec("esplora:https://mempool.space/testnet/api?min_interval=1.5&concurrency=3")
    try:
        assert backend.base_url == "https://mempool.space/testnet/api"
        assert (backend.min_interval, backend.concurrency) == (1.5, 3)
        assert isinstance(backend, ChainBackend)
    finally:
        backend.close()
    local = backend_from_spec("esplora:http://127.0.0.1:3002/")
    assert local.min_interval == 0 and local.base_url == "http://127.0.0.1:3002"
    local.close()


def test_a_bitcoind_spec_takes_credentials_out_of_the_url():
    backend = backend_from_spec("bitcoind:http://busan:p%40ss@127.0.0.1:18443?zmq=tcp://127.0.0.1:28332")
    try:
        assert backend.url == "http://127.0.0.1:18443"
        assert backend._auth() == ("busan", "p@ss")
        assert backend.zmq_endpoints == ["tcp://127.0.0.1:28332"]
        assert "p@ss" not in repr(backend)
    finally:
        backend.close()
    cookie = backend_from_spec("bitcoind:http://127.0.0.1:8332?cookie=/var/lib/bitcoind/.cookie")
    assert cookie.cookie_file == "/var/lib/bitcoind/.cookie" and cookie.url == "http://127.0.0.1:8332"


@pytest.mark.parametrize("spec", ["", "electrum:tcp://x", "esplora:ftp://x", "bitcoind:http://127.0.0.1:8332",
                                  "demo"])
def test_bad_specs_are_refused_with_a_clear_error(spec):
    with pytest.raises(ValueError):
        backend_from_spec(spec)
