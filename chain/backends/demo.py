"""The offline demo chain: a regtest-style chain in one SQLite file.

For development and demos, no node needed. Several processes (the web server, a CLI
`demo pay`, a worker) can share one file: SQLite in WAL mode, every mutation one
`BEGIN IMMEDIATE` transaction.

Its transactions are real, signed segwit transactions (bitcoinlib, `sign_and_update()`):
a public demo PAYER key (`DEMO_PAYER_PRIVATE_KEY`, printed here on purpose: it plays
the tourist's wallet and must never hold real coins) spends its own outputs, pays the
requested address and takes its change back. The treasury stays watch-only: the chain
never needs its keys. The payer is funded by the chain itself: the genesis coinbase
pays it 100 outputs of 1 BTC, and every mined block's coinbase pays it the subsidy
plus fees (spendable after 100 blocks, as on regtest). Raw hex and the decoded inputs
and outputs are stored when a transaction is created; readers use the decoded ones.

    chain = DemoChain("instance/demochain.sqlite3")
    txid = chain.pay("bcrt1q...", 10_000)   # into the mempool
    chain.mine()                            # a block with every mempool tx
    chain.reorg(1)                          # orphan the tip; its txs go back to the mempool
    chain.double_spend(txid)                # replace a mempool tx by a conflicting one

bitcoinlib is imported only to build transactions (pay, double_spend), with
BCL_DATA_DIR pointed next to the database file unless it is already set.
"""
from __future__ import annotations

import hashlib
import math
import os
import secrets
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Collection, Iterator

from chain.backends import (
    MEMPOOL_TX, SATS_PER_BTC, UNKNOWN_TX, Block, BlockHeader, BlockNotFound, ChainTx,
    OutPoint, TxOutput, TxStatus, normalize_address,
)

__all__ = [
    "DemoChain", "DEMO_PAYER_PRIVATE_KEY", "DEMO_PAYER_ADDRESSES", "InsufficientFunds",
    "script_for_address", "address_for_script", "dust_limit",
]

# The demo payer ("tourist wallet") key. PUBLIC: anyone can spend from it on any network.
# sha256("Busan Pay demo payer (public key, regtest demos only)").
DEMO_PAYER_PRIVATE_KEY = "55834bccd83f151e2d2dec0016024b0071d9fcbe7c8a237265af11455d05ef60"
DEMO_PAYER_SCRIPT = bytes.fromhex("00142ccabe97a52011b1e569d2625d67d205b5986a2a")  # P2WPKH
DEMO_PAYER_ADDRESSES = {
    "regtest": "bcrt1q9n9ta9a9yqgmretf6f396e7jqk6es632mzhkvw",
    "testnet": "tb1q9n9ta9a9yqgmretf6f396e7jqk6es632etwmm8",
    "signet": "tb1q9n9ta9a9yqgmretf6f396e7jqk6es632etwmm8",
}

GENESIS_OUTPUTS = 100
GENESIS_OUTPUT_SATS = 1 * SATS_PER_BTC
SUBSIDY_SATS = 50 * SATS_PER_BTC
HALVING_INTERVAL = 150            # regtest
COINBASE_MATURITY = 100
FEE_RATE = 2                      # sat/vB for demo payments
REGTEST_BITS = 0x207FFFFF
_REGTEST_TARGET = 0x7FFFFF << (8 * (0x20 - 3))
SEQUENCE_RBF = 0xFFFFFFFD

_HRP = {"bitcoin": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}
_B58_VERSIONS = {  # (p2pkh, p2sh)
    "bitcoin": (0x00, 0x05), "testnet": (0x6F, 0xC4), "signet": (0x6F, 0xC4), "regtest": (0x6F, 0xC4),
}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class InsufficientFunds(ValueError):
    """The demo payer cannot cover this payment (mine 100+ blocks to mature coinbases)."""


# --------------------------------------------------------------------------- scripts

def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _b58check_encode(payload: bytes) -> str:
    data = payload + _sha256d(payload)[:4]
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, rem = divmod(number, 58)
        text = _B58[rem] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def _b58check_decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise ValueError(f"not a base58 address: {text!r}")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    data = b"\0" * (len(text) - len(text.lstrip("1"))) + body
    if len(data) < 5 or _sha256d(data[:-4])[:4] != data[-4:]:
        raise ValueError(f"bad base58 checksum: {text!r}")
    return data[:-4]


def _bl_encoding():
    _prepare_bitcoinlib(None)
    from bitcoinlib import encoding

    return encoding


def script_for_address(address: str) -> bytes:
    """The scriptPubKey an address stands for (any network; the address says which)."""
    text = normalize_address(address)
    if text.lower().startswith(("bc1", "tb1", "bcrt1")):
        encoding = _bl_encoding()
        try:
            return encoding.addr_bech32_to_pubkeyhash(text.lower(), include_witver=True)
        except Exception as err:  # bitcoinlib raises its own EncodingError
            raise ValueError(f"not a valid bech32 address: {address!r} ({err})") from None
    payload = _b58check_decode(text)
    if len(payload) != 21:
        raise ValueError(f"not a P2PKH/P2SH address: {address!r}")
    version, digest = payload[0], payload[1:]
    if version in (0x00, 0x6F):
        return b"\x76\xa9\x14" + digest + b"\x88\xac"
    if version in (0x05, 0xC4):
        return b"\xa9\x14" + digest + b"\x87"
    raise ValueError(f"unknown base58 address version {version:#x}: {address!r}")


def address_for_script(script: bytes, network: str) -> str | None:
    """The address of a standard scriptPubKey on `network` (regtest base58 uses the test
    prefixes m/n/2, unlike bitcoinlib); None for OP_RETURN and other non-standard scripts."""
    hrp = _HRP[network]
    if len(script) in (22, 34) and script[0] == 0x00 and script[1] == len(script) - 2:
        return _bl_encoding().pubkeyhash_to_addr_bech32(script[2:], prefix=hrp, witver=0)
    if len(script) == 34 and script[0] == 0x51 and script[1] == 0x20:
        return _bl_encoding().pubkeyhash_to_addr_bech32(script[2:], prefix=hrp, witver=1)
    p2pkh, p2sh = _B58_VERSIONS[network]
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return _b58check_encode(bytes([p2pkh]) + script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return _b58check_encode(bytes([p2sh]) + script[2:22])
    return None


def dust_limit(script: bytes) -> int:
    """Bitcoin Core's default dust threshold (3 sat/vB discard rate) for an output."""
    if script[:1] == b"\x6a":
        return 0
    output_size = 8 + 1 + len(script)
    witness = len(script) >= 2 and script[0] in (0x00, 0x51) and script[1] == len(script) - 2
    spend_size = 67 if witness else 148   # 32+4+1+4 + 107/4 (segwit) or +107 (legacy)
    return 3 * (output_size + spend_size)


def _push_int(value: int) -> bytes:
    """A script push of a non-negative number (BIP34 height)."""
    if value == 0:
        return b"\x00"
    if 1 <= value <= 16:
        return bytes([0x50 + value])
    body = value.to_bytes((value.bit_length() + 8) // 8, "little")
    return bytes([len(body)]) + body


def _varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    return b"\xfe" + struct.pack("<I", n)


def _coinbase(height: int, outputs: list[tuple[bytes, int]]) -> tuple[str, str]:
    """A coinbase transaction (legacy serialization): (raw hex, txid)."""
    script_sig = _push_int(height) + b"\x08" + secrets.token_bytes(8)
    raw = (struct.pack("<i", 2) + b"\x01" + b"\0" * 32 + b"\xff\xff\xff\xff"
           + _varint(len(script_sig)) + script_sig + b"\xff\xff\xff\xff"
           + _varint(len(outputs))
           + b"".join(struct.pack("<q", value) + _varint(len(s)) + s for s, value in outputs)
           + b"\0\0\0\0")
    return raw.hex(), _sha256d(raw)[::-1].hex()


def _merkle_root(txids: list[str]) -> bytes:
    level = [bytes.fromhex(t)[::-1] for t in txids]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [_sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _block_hash(prev_hash: str | None, txids: list[str], when: int) -> str:
    """Grind an 80-byte header to regtest proof of work (about two tries)."""
    prev = bytes.fromhex(prev_hash)[::-1] if prev_hash else b"\0" * 32
    head = struct.pack("<i", 0x20000000) + prev + _merkle_root(txids) + struct.pack("<II", when, REGTEST_BITS)
    nonce = secrets.randbits(32)
    while True:
        digest = _sha256d(head + struct.pack("<I", nonce))
        if int.from_bytes(digest, "little") <= _REGTEST_TARGET:
            return digest[::-1].hex()
        nonce = (nonce + 1) & 0xFFFFFFFF


def _subsidy(height: int) -> int:
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else SUBSIDY_SATS >> halvings


def _prepare_bitcoinlib(near: str | None) -> None:
    if "BCL_DATA_DIR" not in os.environ:
        base = Path(near).resolve().parent if near else Path.cwd()
        target = base / "bitcoinlib"
        target.mkdir(parents=True, exist_ok=True)
        os.environ["BCL_DATA_DIR"] = str(target)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    hash TEXT PRIMARY KEY, height INTEGER NOT NULL, prev_hash TEXT, time INTEGER NOT NULL,
    active INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS blocks_active_height ON blocks(height) WHERE active = 1;
CREATE TABLE IF NOT EXISTS txs (
    txid TEXT PRIMARY KEY, raw_hex TEXT NOT NULL, coinbase INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('mempool', 'confirmed', 'gone')),
    block_hash TEXT, fee INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS txs_state ON txs(state, seq);
CREATE TABLE IF NOT EXISTS block_txs (
    block_hash TEXT NOT NULL, pos INTEGER NOT NULL, txid TEXT NOT NULL,
    PRIMARY KEY (block_hash, pos));
CREATE TABLE IF NOT EXISTS tx_inputs (
    txid TEXT NOT NULL, n INTEGER NOT NULL, prev_txid TEXT NOT NULL, prev_vout INTEGER NOT NULL,
    PRIMARY KEY (txid, n));
CREATE INDEX IF NOT EXISTS tx_inputs_prev ON tx_inputs(prev_txid, prev_vout);
CREATE TABLE IF NOT EXISTS tx_outputs (
    txid TEXT NOT NULL, n INTEGER NOT NULL, address TEXT, value INTEGER NOT NULL,
    script TEXT NOT NULL, payer INTEGER NOT NULL, spent_by TEXT,
    PRIMARY KEY (txid, n));
CREATE INDEX IF NOT EXISTS tx_outputs_unspent_payer ON tx_outputs(txid) WHERE payer = 1 AND spent_by IS NULL;
CREATE INDEX IF NOT EXISTS tx_outputs_spent_by ON tx_outputs(spent_by) WHERE spent_by IS NOT NULL;
"""


class DemoChain:
    """A ChainBackend over a SQLite file, plus the controls a demo needs."""

    name = "demo"
    #: `reorg` lowers the tip on purpose (a later mine builds the new branch): a tip below
    #: what the watcher processed is a reorg here, never a node catching up.
    lower_tip_is_reorg = True

    def __init__(self, path: str, *, clock: Callable[[], datetime] | None = None,
                 network: str = "regtest"):
        if network not in DEMO_PAYER_ADDRESSES:
            raise ValueError(f"the demo chain runs on regtest, testnet or signet, not {network!r}")
        self.path = str(path)
        self.network = network
        self.payer_address = DEMO_PAYER_ADDRESSES[network]
        self._clock = clock
        self._lock = threading.RLock()
        self._key = None
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._write() as cur:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            row = cur.execute("SELECT value FROM meta WHERE key = 'network'").fetchone()
            if row is None:
                cur.execute("INSERT INTO meta VALUES ('network', ?)", (network,))
                self._create_genesis(cur)
            elif row[0] != network:
                raise ValueError(f"{self.path} holds a {row[0]} demo chain, not {network}")

    # -- plumbing ----------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock().timestamp()) if self._clock else int(time.time())

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("COMMIT")

    def _next_seq(self, cur) -> int:
        row = cur.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        seq = int(row[0]) + 1 if row else 1
        cur.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
        return seq

    def _insert_tx(self, cur, txid: str, raw_hex: str, *, coinbase: bool, state: str,
                   block_hash: str | None, fee: int, inputs: list[tuple[str, int]],
                   outputs: list[tuple[int, str | None, int, bytes]]) -> None:
        known = cur.execute("SELECT state FROM txs WHERE txid = ?", (txid,)).fetchone()
        if known is not None:
            # Signatures are deterministic (RFC 6979): rebuilding a vanished payment from the
            # same coins gives the very same transaction, which simply comes back.
            if known[0] != "gone":
                raise RuntimeError(f"transaction {txid} is already on the demo chain")
            cur.execute("UPDATE txs SET state = ?, block_hash = ?, fee = ?, seq = ? WHERE txid = ?",
                        (state, block_hash, fee, self._next_seq(cur), txid))
            for prev, vout in inputs:
                cur.execute("UPDATE tx_outputs SET spent_by = ? WHERE txid = ? AND n = ?", (txid, prev, vout))
            return
        cur.execute("INSERT INTO txs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (txid, raw_hex, int(coinbase), state, block_hash, fee, self._next_seq(cur)))
        cur.executemany("INSERT INTO tx_inputs VALUES (?, ?, ?, ?)",
                        [(txid, i, prev, vout) for i, (prev, vout) in enumerate(inputs)])
        cur.executemany(
            "INSERT INTO tx_outputs VALUES (?, ?, ?, ?, ?, ?, NULL)",
            [(txid, n, address, value, script.hex(), int(script == DEMO_PAYER_SCRIPT))
             for n, address, value, script in outputs])
        for prev, vout in inputs:
            cur.execute("UPDATE tx_outputs SET spent_by = ? WHERE txid = ? AND n = ?", (txid, prev, vout))

    def _add_block(self, cur, height: int, prev_hash: str | None, payouts: list[tuple[bytes, int]],
                   txids: list[str]) -> str:
        outputs = [(script, value) for script, value in payouts]
        raw, cb_txid = _coinbase(height, outputs)
        when = self._now()
        block_hash = _block_hash(prev_hash, [cb_txid] + txids, when)
        cur.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, 1)", (block_hash, height, prev_hash, when))
        self._insert_tx(cur, cb_txid, raw, coinbase=True, state="confirmed", block_hash=block_hash,
                        fee=0, inputs=[],
                        outputs=[(n, address_for_script(s, self.network), v, s)
                                 for n, (s, v) in enumerate(outputs)])
        cur.executemany("INSERT INTO block_txs VALUES (?, ?, ?)",
                        [(block_hash, pos, t) for pos, t in enumerate([cb_txid] + txids)])
        if txids:
            cur.executemany("UPDATE txs SET state = 'confirmed', block_hash = ? WHERE txid = ?",
                            [(block_hash, t) for t in txids])
        return block_hash

    def _create_genesis(self, cur) -> None:
        self._add_block(cur, 0, None, [(DEMO_PAYER_SCRIPT, GENESIS_OUTPUT_SATS)] * GENESIS_OUTPUTS, [])

    def _tip_row(self, cur) -> tuple[int, str, str | None, int]:
        return cur.execute("SELECT height, hash, prev_hash, time FROM blocks WHERE active = 1 "
                           "ORDER BY height DESC LIMIT 1").fetchone()

    def _evict(self, cur, txid: str) -> list[str]:
        """Remove a tx and everything spending its outputs; free the outputs it spent."""
        gone, stack = [], [txid]
        while stack:
            current = stack.pop()
            row = cur.execute("SELECT state FROM txs WHERE txid = ?", (current,)).fetchone()
            if row is None or row[0] == "gone":
                continue
            cur.execute("UPDATE txs SET state = 'gone', block_hash = NULL WHERE txid = ?", (current,))
            cur.execute("UPDATE tx_outputs SET spent_by = NULL WHERE spent_by = ?", (current,))
            gone.append(current)
            stack.extend(r[0] for r in cur.execute(
                "SELECT DISTINCT i.txid FROM tx_inputs i JOIN txs t ON t.txid = i.txid "
                "WHERE i.prev_txid = ? AND t.state != 'gone'", (current,)))
        return gone

    # -- bitcoinlib ------------------------------------------------------------------

    def _bitcoinlib(self):
        _prepare_bitcoinlib(self.path)
        from bitcoinlib.keys import Key
        from bitcoinlib.transactions import Transaction

        if self._key is None:
            self._key = Key(DEMO_PAYER_PRIVATE_KEY, network=self.network)
        return Transaction

    def _build(self, inputs: list[tuple[str, int, int]], outputs: list[tuple[bytes, int]],
               locktime: int = 0):
        """Sign a segwit tx spending payer outputs -> (raw hex, txid, inputs, outputs)."""
        Transaction = self._bitcoinlib()
        tx = Transaction(network=self.network, witness_type="segwit", version=2, locktime=locktime)
        for prev_txid, vout, value in inputs:
            tx.add_input(prev_txid, vout, keys=self._key, value=value, witness_type="segwit",
                         sequence=SEQUENCE_RBF)
        for script, value in outputs:
            tx.add_output(value, lock_script=script)
        tx.sign_and_update()
        raw = tx.raw_hex()
        decoded = Transaction.parse_hex(raw, network=self.network)
        if decoded.txid != tx.txid:
            raise RuntimeError("bitcoinlib decoded a different txid than it signed")
        decoded_outputs = []
        for out in decoded.outputs:
            script = bytes(out.lock_script)
            address = address_for_script(script, self.network)
            if out.script_type in ("p2wpkh", "p2wsh", "p2tr") and out.address != address:
                raise RuntimeError(f"address mismatch {out.address} != {address}")
            decoded_outputs.append((out.output_n, address, int(out.value), script))
        decoded_inputs = [(i.prev_txid.hex(), i.output_n_int) for i in decoded.inputs]
        return raw, tx.txid, decoded_inputs, decoded_outputs

    @staticmethod
    def _vsize(n_inputs: int, scripts: list[bytes]) -> int:
        return math.ceil(10.5 + 68 * n_inputs + sum(9 + len(s) for s in scripts))

    def _spendable(self, cur, tip_height: int) -> list[tuple[str, int, int]]:
        rows = cur.execute(
            "SELECT o.txid, o.n, o.value, t.coinbase, b.height FROM tx_outputs o "
            "JOIN txs t ON t.txid = o.txid LEFT JOIN blocks b ON b.hash = t.block_hash "
            "WHERE o.payer = 1 AND o.spent_by IS NULL AND t.state IN ('mempool', 'confirmed') "
            "ORDER BY b.height IS NULL, b.height, t.seq, o.n").fetchall()
        usable = []
        for txid, n, value, coinbase, height in rows:
            if coinbase and height and tip_height - height + 1 < COINBASE_MATURITY:
                continue
            usable.append((txid, n, value))
        return usable

    # -- controls ----------------------------------------------------------------------

    def pay(self, address: str, sats: int) -> str:
        """Pay `sats` to `address` from the demo payer; the tx enters the mempool."""
        from payments.addresses import validate_address

        if isinstance(sats, bool) or not isinstance(sats, int) or sats <= 0:
            raise ValueError("pay a positive whole number of satoshis")
        target = validate_address(address, self.network)
        script = script_for_address(target)
        if sats < dust_limit(script):
            raise ValueError(f"{sats} sats is below the dust limit ({dust_limit(script)}) for this address")
        self._bitcoinlib()
        with self._write() as cur:
            tip_height = self._tip_row(cur)[0]
            chosen, total = [], 0
            for utxo in self._spendable(cur, tip_height):
                chosen.append(utxo)
                total += utxo[2]
                if total >= sats + FEE_RATE * self._vsize(len(chosen), [script, DEMO_PAYER_SCRIPT]):
                    break
            else:
                raise InsufficientFunds(f"the demo payer has {total} sats spendable, "
                                        f"not enough for {sats}")
            fee = FEE_RATE * self._vsize(len(chosen), [script, DEMO_PAYER_SCRIPT])
            change = total - sats - fee
            outputs = [(script, sats)]
            if change >= dust_limit(DEMO_PAYER_SCRIPT):
                outputs.append((DEMO_PAYER_SCRIPT, change))
            else:
                fee += change
            # nLockTime = tip height, as Core's wallet does (anti fee sniping)
            raw, txid, inputs, decoded = self._build(chosen, outputs, locktime=tip_height)
            if decoded[0][1] != target and decoded[0][1] is not None:
                raise RuntimeError(f"built a payment to {decoded[0][1]}, not {target}")
            self._insert_tx(cur, txid, raw, coinbase=False, state="mempool", block_hash=None,
                            fee=fee, inputs=inputs, outputs=decoded)
        return txid

    def mine(self, n: int = 1) -> list[str]:
        """Mine `n` blocks; the first takes every mempool transaction. Returns their hashes."""
        if n < 1:
            raise ValueError("mine at least one block")
        hashes = []
        with self._write() as cur:
            height, tip_hash, _, _ = self._tip_row(cur)
            for _ in range(n):
                rows = cur.execute("SELECT txid, fee FROM txs WHERE state = 'mempool' ORDER BY seq").fetchall()
                fees = sum(fee for _, fee in rows)
                height += 1
                tip_hash = self._add_block(cur, height, tip_hash,
                                           [(DEMO_PAYER_SCRIPT, _subsidy(height) + fees)],
                                           [txid for txid, _ in rows])
                hashes.append(tip_hash)
        return hashes

    def reorg(self, depth: int, *, drop: bool = False) -> list[str]:
        """Orphan the last `depth` blocks (the tip goes down by `depth`; a later mine()
        builds the new branch). Their transactions go back to the mempool, or vanish with
        `drop`; coinbases always vanish, and so does whatever spent them. Returns the
        orphaned hashes, lowest first."""
        with self._write() as cur:
            tip_height = self._tip_row(cur)[0]
            if not 1 <= depth <= tip_height:
                raise ValueError(f"can reorganise 1 to {tip_height} blocks, not {depth}")
            orphaned = [r[0] for r in cur.execute(
                "SELECT hash FROM blocks WHERE active = 1 AND height > ? ORDER BY height",
                (tip_height - depth,))]
            cur.executemany("UPDATE blocks SET active = 0 WHERE hash = ?", [(h,) for h in orphaned])
            coinbases, others = [], []
            for block_hash in orphaned:
                for txid, coinbase in cur.execute(
                        "SELECT t.txid, t.coinbase FROM block_txs b JOIN txs t ON t.txid = b.txid "
                        "WHERE b.block_hash = ? AND t.block_hash = ? ORDER BY b.pos",
                        (block_hash, block_hash)).fetchall():
                    (coinbases if coinbase else others).append(txid)
            cur.executemany("UPDATE txs SET state = 'mempool', block_hash = NULL WHERE txid = ?",
                            [(t,) for t in others])
            for txid in coinbases + (others if drop else []):
                self._evict(cur, txid)
        return orphaned

    def double_spend(self, txid: str, to_address: str | None = None) -> str:
        """Replace mempool tx `txid` by a conflicting tx spending the same inputs, paying
        `to_address` (default: back to the demo payer) with a higher fee. The original and
        anything spending it leave the mempool. Returns the new txid."""
        from payments.addresses import validate_address

        target = validate_address(to_address, self.network) if to_address else self.payer_address
        script = script_for_address(target)
        self._bitcoinlib()
        with self._write() as cur:
            row = cur.execute("SELECT state, fee FROM txs WHERE txid = ?", (txid,)).fetchone()
            if row is None or row[0] != "mempool":
                raise ValueError(f"{txid} is not in the mempool"
                                 + (" (reorg its block away first)" if row and row[0] == "confirmed" else ""))
            spent = cur.execute(
                "SELECT i.prev_txid, i.prev_vout, o.value, o.payer FROM tx_inputs i "
                "JOIN tx_outputs o ON o.txid = i.prev_txid AND o.n = i.prev_vout "
                "WHERE i.txid = ? ORDER BY i.n", (txid,)).fetchall()
            if not spent or not all(payer for *_, payer in spent):
                raise ValueError(f"{txid} does not spend the demo payer's outputs")
            vsize = self._vsize(len(spent), [script])
            fee = max(row[1] + vsize, FEE_RATE * vsize)   # BIP125: pay for its own relay too
            value = sum(v for _, _, v, _ in spent) - fee
            if value < dust_limit(script):
                raise ValueError("the inputs cannot cover a replacement")
            self._evict(cur, txid)
            raw, new_txid, inputs, decoded = self._build(
                [(p, n, v) for p, n, v, _ in spent], [(script, value)],
                locktime=self._tip_row(cur)[0])
            self._insert_tx(cur, new_txid, raw, coinbase=False, state="mempool", block_hash=None,
                            fee=fee, inputs=inputs, outputs=decoded)
        return new_txid

    # -- reading -----------------------------------------------------------------------

    def tip(self) -> BlockHeader:
        with self._read() as cur:
            height, block_hash, prev, when = self._tip_row(cur)
        return BlockHeader(height, block_hash, prev, when)

    def block_hash_at(self, height: int) -> str | None:
        with self._read() as cur:
            row = cur.execute("SELECT hash FROM blocks WHERE active = 1 AND height = ?",
                              (height,)).fetchone()
        return row[0] if row else None

    def _txs(self, cur, txids: list[str]) -> list[ChainTx]:
        if not txids:
            return []
        inputs: dict[str, list[OutPoint]] = {t: [] for t in txids}
        outputs: dict[str, list[TxOutput]] = {t: [] for t in txids}
        for start in range(0, len(txids), 500):
            chunk = txids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for txid, prev, vout in cur.execute(
                    f"SELECT txid, prev_txid, prev_vout FROM tx_inputs WHERE txid IN ({marks}) "
                    "ORDER BY txid, n", chunk):
                inputs[txid].append(OutPoint(prev, vout))
            for txid, n, address, value in cur.execute(
                    f"SELECT txid, n, address, value FROM tx_outputs WHERE txid IN ({marks}) "
                    "ORDER BY txid, n", chunk):
                outputs[txid].append(TxOutput(n, address, value))
        return [ChainTx(t, tuple(inputs[t]), tuple(outputs[t])) for t in txids]

    def block(self, block_hash: str) -> Block:
        with self._read() as cur:
            row = cur.execute("SELECT height, hash, prev_hash, time FROM blocks WHERE hash = ?",
                              (block_hash.lower(),)).fetchone()
            if row is None:
                raise BlockNotFound(f"the demo chain has no block {block_hash}")
            txids = [r[0] for r in cur.execute(
                "SELECT txid FROM block_txs WHERE block_hash = ? ORDER BY pos", (row[1],))]
            txs = self._txs(cur, txids)
        return Block(BlockHeader(*row), tuple(txs))

    def mempool_txs(self, watched: Collection[str]) -> list[ChainTx]:
        wanted = {normalize_address(a) for a in watched}
        with self._read() as cur:
            paying, seen = [], set()
            for txid, address in cur.execute(
                    "SELECT o.txid, o.address FROM tx_outputs o JOIN txs t ON t.txid = o.txid "
                    "WHERE t.state = 'mempool' ORDER BY t.seq, o.n"):
                if address in wanted and txid not in seen:
                    seen.add(txid)
                    paying.append(txid)
            return self._txs(cur, paying)

    def tx_status(self, txid: str) -> TxStatus:
        with self._read() as cur:
            row = cur.execute(
                "SELECT t.state, b.height, b.hash FROM txs t LEFT JOIN blocks b ON b.hash = t.block_hash "
                "WHERE t.txid = ?", (txid.lower(),)).fetchone()
        if row is None or row[0] == "gone":
            return UNKNOWN_TX
        if row[0] == "mempool":
            return MEMPOOL_TX
        return TxStatus(True, row[1], row[2], False)

    # -- extras for demos and tests ----------------------------------------------------

    def raw_tx(self, txid: str) -> str:
        with self._read() as cur:
            row = cur.execute("SELECT raw_hex FROM txs WHERE txid = ?", (txid.lower(),)).fetchone()
        if row is None:
            raise KeyError(txid)
        return row[0]

    def mempool(self) -> list[str]:
        with self._read() as cur:
            return [r[0] for r in cur.execute("SELECT txid FROM txs WHERE state = 'mempool' ORDER BY seq")]

    def payer_balance(self) -> int:
        """Unspent demo-payer satoshis (confirmed and unconfirmed, immature coinbases too)."""
        with self._read() as cur:
            row = cur.execute(
                "SELECT COALESCE(SUM(o.value), 0) FROM tx_outputs o JOIN txs t ON t.txid = o.txid "
                "WHERE o.payer = 1 AND o.spent_by IS NULL AND t.state != 'gone'").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"DemoChain({self.path!r})"
