"""An in-memory Bitcoin chain that the Esplora and Bitcoin Core fakes both serve.

Tests drive it directly: put transactions in the mempool, mine, reorganise, replace.
Transactions are modelled (no signatures), but carry what both servers report: inputs
with their previous outputs, output scripts and addresses, sizes, weights and fees.

    chain = ChainModel()
    txid = chain.add_mempool_tx([("bcrt1q...", 10_000)])
    [block_hash] = chain.mine()
    chain.reorg(1)                  # the tx is back in the mempool
    new_txid = chain.replace(txid)  # a conflicting tx; the original is gone
    chain.reorg(2, mine=3)          # a real node's reorg: a longer branch in one step
    chain.lose_blocks(3)            # a crash: unflushed blocks and the mempool are gone

With ``clock`` (a callable giving unix seconds) block and first-seen times follow it, so
a test can line the chain's times up with the gateway's clock.
"""
from __future__ import annotations

import hashlib
import secrets
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

from chain.backends.demo import address_for_script, script_for_address

COINBASE_PREV = "0" * 64
SUBSIDY = 50 * 100_000_000
#: Bitcoin Core (v29+) sets the coinbase input's nSequence to 0xFFFFFFFE.
COINBASE_SEQUENCE = 0xFFFFFFFE


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def random_p2wpkh() -> bytes:
    return b"\x00\x14" + secrets.token_bytes(20)


@dataclass
class ModelInput:
    txid: str
    vout: int
    prev_script: bytes | None      # None for a coinbase input
    prev_value: int
    sequence: int = 0xFFFFFFFD
    script_sig: bytes = b""
    witness: tuple[bytes, ...] = ()

    @property
    def is_coinbase(self) -> bool:
        return self.prev_script is None


@dataclass
class ModelOutput:
    script: bytes
    value: int


@dataclass
class ModelTx:
    txid: str
    inputs: list[ModelInput]
    outputs: list[ModelOutput]
    version: int = 2
    locktime: int = 0
    wtxid: str = ""
    first_seen: int = 0
    state: str = "mempool"          # mempool | confirmed | gone | elsewhere (not this node's)
    block_hash: str | None = None

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].is_coinbase

    @property
    def segwit(self) -> bool:
        return any(i.witness for i in self.inputs)

    @property
    def base_size(self) -> int:
        size = 4 + 1 + 1 + 4
        size += sum(32 + 4 + 1 + len(i.script_sig) + 4 for i in self.inputs)
        size += sum(8 + 1 + len(o.script) for o in self.outputs)
        return size

    @property
    def witness_size(self) -> int:
        if not self.segwit:
            return 0
        return 2 + sum(1 + sum(1 + len(item) for item in i.witness) for i in self.inputs)

    @property
    def size(self) -> int:
        return self.base_size + self.witness_size

    @property
    def weight(self) -> int:
        return self.base_size * 4 + self.witness_size

    @property
    def vsize(self) -> int:
        return (self.weight + 3) // 4

    @property
    def fee(self) -> int:
        if self.is_coinbase:
            return 0
        return sum(i.prev_value for i in self.inputs) - sum(o.value for o in self.outputs)


@dataclass
class ModelBlock:
    hash: str
    height: int
    prev_hash: str | None
    time: int
    txids: list[str]
    nonce: int
    merkle_root: str
    bits: str = "207fffff"
    version: int = 0x20000000
    active: bool = True
    mediantime: int = 0
    size: int = 0
    weight: int = 0


@dataclass
class ChainModel:
    network: str = "regtest"
    start_time: int = 1_764_000_000
    blocks: list[ModelBlock] = field(default_factory=list)          # the active chain
    all_blocks: dict[str, ModelBlock] = field(default_factory=dict)  # active and stale
    txs: dict[str, ModelTx] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: Callable[[], int] | None = None
    _clock: int = 0

    def __post_init__(self):
        self._mine_one([])

    # -- building -----------------------------------------------------------------------

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _now(self, height: int) -> int:
        """A block's or a transaction's time: the test's clock, else made-up but rising."""
        tick = self._tick()
        if self.clock is not None:
            return int(self.clock())
        return self.start_time + 600 * height + tick

    def _new_txid(self, tx: ModelTx) -> None:
        blob = repr((tx.version, tx.locktime,
                     [(i.txid, i.vout, i.prev_value) for i in tx.inputs],
                     [(o.script, o.value) for o in tx.outputs])).encode()
        tx.txid = sha256d(blob + secrets.token_bytes(8))[::-1].hex()
        tx.wtxid = sha256d(blob + b"w" + bytes.fromhex(tx.txid))[::-1].hex() if tx.segwit else tx.txid

    def _coinbase(self, height: int, fees: int, pay_to: bytes | None = None) -> ModelTx:
        height_push = bytes([3]) + struct.pack("<I", height)[:3]
        tx = ModelTx("", [ModelInput(COINBASE_PREV, 0xFFFFFFFF, None, 0, COINBASE_SEQUENCE,
                                     height_push + secrets.token_bytes(8), (b"\0" * 32,))],
                     [ModelOutput(pay_to or random_p2wpkh(), SUBSIDY + fees),
                      ModelOutput(b"\x6a\x24\xaa\x21\xa9\xed" + secrets.token_bytes(32), 0)],
                     state="confirmed")
        self._new_txid(tx)
        return tx

    def _mine_one(self, txids: list[str], pay_to: bytes | None = None) -> ModelBlock:
        height = len(self.blocks)
        prev = self.blocks[-1].hash if self.blocks else None
        fees = sum(self.txs[t].fee for t in txids)
        coinbase = self._coinbase(height, fees, pay_to)
        self.txs[coinbase.txid] = coinbase
        all_txids = [coinbase.txid] + txids
        nonce = secrets.randbits(32)
        when = self._now(height)
        merkle = sha256d("".join(all_txids).encode())[::-1].hex()
        header = struct.pack("<i", 0x20000000) + bytes.fromhex(prev or "0" * 64) + bytes.fromhex(merkle) \
            + struct.pack("<III", when, 0x207FFFFF, nonce)
        block = ModelBlock(sha256d(header)[::-1].hex(), height, prev, when, all_txids, nonce, merkle)
        block.size = 80 + 1 + sum(self.txs[t].size for t in all_txids)
        block.weight = 320 + 4 + sum(self.txs[t].weight for t in all_txids)
        recent = [b.time for b in self.blocks[-10:]] + [when]
        block.mediantime = sorted(recent)[len(recent) // 2]
        for txid in all_txids:
            self.txs[txid].state = "confirmed"
            self.txs[txid].block_hash = block.hash
        self.blocks.append(block)
        self.all_blocks[block.hash] = block
        return block

    # -- controls (tests) ----------------------------------------------------------------

    def add_mempool_tx(self, outputs: list[tuple[str | None, int]], *,
                       inputs: list[tuple[str, int]] | None = None, fee: int = 282,
                       op_return: bytes | None = None) -> str:
        """A transaction paying `outputs` [(address, sats)] into the mempool. Without
        `inputs` it spends a made-up P2WPKH output of exactly outputs + fee. An address of
        None makes a non-standard output (bare OP_RETURN pushing `op_return`)."""
        with self.lock:
            outs = []
            for address, value in outputs:
                if address is None:
                    data = op_return or b"busan"
                    outs.append(ModelOutput(b"\x6a" + bytes([len(data)]) + data, value))
                else:
                    outs.append(ModelOutput(script_for_address(address), value))
            total = sum(o.value for o in outs)
            if inputs is None:
                ins = [ModelInput(secrets.token_hex(32), 0, random_p2wpkh(), total + fee)]
            else:
                ins = []
                for prev_txid, vout in inputs:
                    prev = self.txs[prev_txid].outputs[vout]
                    ins.append(ModelInput(prev_txid, vout, prev.script, prev.value))
            for item in ins:
                item.witness = (secrets.token_bytes(71), b"\x02" + secrets.token_bytes(32))
            tx = ModelTx("", ins, outs, first_seen=self._now(len(self.blocks)))
            self._new_txid(tx)
            self.txs[tx.txid] = tx
            return tx.txid

    def mine(self, n: int = 1, *, txids: list[str] | None = None,
             pay_to: str | None = None) -> list[str]:
        """Mine `n` blocks; the first takes `txids` (default: the whole mempool)."""
        with self.lock:
            hashes = []
            for i in range(n):
                chosen = (self.mempool() if txids is None else list(txids)) if i == 0 else []
                block = self._mine_one(chosen, script_for_address(pay_to) if pay_to else None)
                hashes.append(block.hash)
            return hashes

    def reorg(self, depth: int, *, drop: bool = False, mine: int = 0,
              txids: list[str] | None = None) -> list[str]:
        """Orphan the last `depth` blocks; their txs go back to the mempool (or vanish with
        `drop`), as Core returns them, unless they conflict with a transaction of the active
        chain or the mempool. With `mine`, that many new blocks (the first taking `txids`,
        default nothing) are mined in the same step, as a real node switches branches:
        the tip never shows the lower height."""
        with self.lock:
            if not 1 <= depth < len(self.blocks):
                raise ValueError("bad reorg depth")
            orphaned = self.blocks[-depth:]
            del self.blocks[-depth:]
            returned = []
            for block in orphaned:
                block.active = False
                for txid in block.txids:
                    tx = self.txs[txid]
                    tx.block_hash = None
                    tx.state = "gone" if (drop or tx.is_coinbase) else "mempool"
                    if tx.state == "mempool":
                        returned.append(tx)
            for i in range(mine):
                self._mine_one(list(txids or []) if i == 0 else [])
            for tx in returned:
                if self._conflicts(tx):
                    tx.state = "gone"
            return [b.hash for b in orphaned]

    def _conflicts(self, tx: ModelTx) -> bool:
        """Does another live transaction spend one of `tx`'s inputs?"""
        spent = {(i.txid, i.vout) for i in tx.inputs}
        return any(other.txid != tx.txid and other.state in ("mempool", "confirmed")
                   and spent & {(i.txid, i.vout) for i in other.inputs}
                   for other in self.txs.values() if not other.is_coinbase)

    def lose_blocks(self, n: int, *, mempool: bool = True) -> list[str]:
        """A crash: the last `n` blocks were never flushed, so the node no longer knows
        them (not even as stale blocks); with `mempool` the mempool is lost too (no
        mempool.dat). Their transactions are gone from this node; `rebroadcast` brings one
        back, as the payer's wallet would. Returns the lost hashes."""
        with self.lock:
            if not 0 <= n < len(self.blocks):
                raise ValueError("bad number of lost blocks")
            lost = self.blocks[len(self.blocks) - n:] if n else []
            del self.blocks[len(self.blocks) - n:]
            for block in lost:
                del self.all_blocks[block.hash]
                for txid in block.txids:
                    self.txs[txid].state, self.txs[txid].block_hash = "gone", None
            if mempool:
                for tx in self.txs.values():
                    if tx.state == "mempool":
                        tx.state = "gone"
            return [b.hash for b in lost]

    def rebroadcast(self, txid: str) -> None:
        """A lost transaction arrives again (unless something now conflicts with it)."""
        with self.lock:
            tx = self.txs[txid]
            if tx.state == "gone" and not tx.is_coinbase and not self._conflicts(tx):
                tx.state = "mempool"
                tx.first_seen = self._now(len(self.blocks))

    def replace(self, txid: str, outputs: list[tuple[str, int]] | None = None) -> str:
        """A conflicting tx spending the same inputs (higher fee); the original is gone."""
        with self.lock:
            old = self.txs[txid]
            if old.state != "mempool":
                raise ValueError(f"{txid} is not in the mempool")
            old.state = "gone"
            return self.conflicting(txid, outputs, state="mempool")

    def conflicting(self, txid: str, outputs: list[tuple[str, int]] | None = None, *,
                    state: str = "elsewhere") -> str:
        """A tx spending `txid`'s inputs (higher fee) that this node has not seen: another
        miner's branch can carry it (``reorg(…, mine=…, txids=[it])``)."""
        with self.lock:
            old = self.txs[txid]
            total = sum(i.prev_value for i in old.inputs)
            fee = old.fee + 500
            outs = [ModelOutput(script_for_address(a), v) for a, v in outputs] if outputs \
                else [ModelOutput(random_p2wpkh(), total - fee)]
            ins = [ModelInput(i.txid, i.vout, i.prev_script, i.prev_value, i.sequence, b"", i.witness)
                   for i in old.inputs]
            tx = ModelTx("", ins, outs, first_seen=self._now(len(self.blocks)), state=state)
            self._new_txid(tx)
            self.txs[tx.txid] = tx
            return tx.txid

    def drop(self, txid: str) -> None:
        """Evict a mempool transaction (expiry, eviction, a conflict seen elsewhere)."""
        with self.lock:
            self.txs[txid].state = "gone"

    # -- queries (servers) -----------------------------------------------------------------

    @property
    def tip(self) -> ModelBlock:
        return self.blocks[-1]

    def mempool(self) -> list[str]:
        with self.lock:
            pending = [t for t in self.txs.values() if t.state == "mempool"]
            return [t.txid for t in sorted(pending, key=lambda t: t.first_seen)]

    def block_at(self, height: int) -> ModelBlock | None:
        return self.blocks[height] if 0 <= height < len(self.blocks) else None

    def confirmations(self, block: ModelBlock) -> int:
        return self.tip.height - block.height + 1 if block.active else -1

    def next_hash(self, block: ModelBlock) -> str | None:
        if not block.active:
            return None
        after = self.block_at(block.height + 1)
        return after.hash if after else None

    def address_of(self, script: bytes) -> str | None:
        return address_for_script(script, self.network)

    def touches(self, tx: ModelTx, address: str) -> bool:
        script = script_for_address(address)
        return any(o.script == script for o in tx.outputs) or any(
            i.prev_script == script for i in tx.inputs)


# -- script descriptions, as each server writes them ------------------------------------

def _classify(script: bytes) -> tuple[str, bytes]:
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return "p2wpkh", script[2:]
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return "p2wsh", script[2:]
    if len(script) == 34 and script[:2] == b"\x51\x20":
        return "p2tr", script[2:]
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "p2pkh", script[3:23]
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22:] == b"\x87":
        return "p2sh", script[2:22]
    if script[:1] == b"\x6a":
        return "op_return", script[2:]
    return "unknown", script


ESPLORA_TYPES = {"p2wpkh": "v0_p2wpkh", "p2wsh": "v0_p2wsh", "p2tr": "v1_p2tr", "p2pkh": "p2pkh",
                 "p2sh": "p2sh", "op_return": "op_return", "unknown": "unknown"}
CORE_TYPES = {"p2wpkh": "witness_v0_keyhash", "p2wsh": "witness_v0_scripthash",
              "p2tr": "witness_v1_taproot", "p2pkh": "pubkeyhash", "p2sh": "scripthash",
              "op_return": "nulldata", "unknown": "nonstandard"}


def esplora_script(script: bytes) -> tuple[str, str]:
    """(scriptpubkey_type, scriptpubkey_asm) as electrs writes them."""
    kind, data = _classify(script)
    push = f"OP_PUSHBYTES_{len(data)} {data.hex()}"
    asm = {
        "p2wpkh": f"OP_0 {push}", "p2wsh": f"OP_0 {push}", "p2tr": f"OP_PUSHNUM_1 {push}",
        "p2pkh": f"OP_DUP OP_HASH160 {push} OP_EQUALVERIFY OP_CHECKSIG",
        "p2sh": f"OP_HASH160 {push} OP_EQUAL", "op_return": f"OP_RETURN {push}",
    }.get(kind, script.hex())
    return ESPLORA_TYPES[kind], asm


def core_script(script: bytes) -> tuple[str, str]:
    """(type, asm) as Bitcoin Core writes them in scriptPubKey."""
    kind, data = _classify(script)
    asm = {
        "p2wpkh": f"0 {data.hex()}", "p2wsh": f"0 {data.hex()}", "p2tr": f"1 {data.hex()}",
        "p2pkh": f"OP_DUP OP_HASH160 {data.hex()} OP_EQUALVERIFY OP_CHECKSIG",
        "p2sh": f"OP_HASH160 {data.hex()} OP_EQUAL", "op_return": f"OP_RETURN {data.hex()}",
    }.get(kind, script.hex())
    return CORE_TYPES[kind], asm


_DESC_INPUT = ("0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~"
               "ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ")
_DESC_CHARS = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def descriptor_checksum(desc: str) -> str:
    """The 8-character checksum Bitcoin Core appends to output descriptors (BIP380)."""
    def polymod(c: int, value: int) -> int:
        c0 = c >> 35
        c = ((c & 0x7FFFFFFFF) << 5) ^ value
        for bit, gen in enumerate((0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)):
            if c0 >> bit & 1:
                c ^= gen
        return c

    c, cls, clscount = 1, 0, 0
    for ch in desc:
        pos = _DESC_INPUT.index(ch)
        c = polymod(c, pos & 31)
        cls = cls * 3 + (pos >> 5)
        clscount += 1
        if clscount == 3:
            c = polymod(c, cls)
            cls, clscount = 0, 0
    if clscount > 0:
        c = polymod(c, cls)
    for _ in range(8):
        c = polymod(c, 0)
    c ^= 1
    return "".join(_DESC_CHARS[(c >> (5 * (7 - j))) & 31] for j in range(8))
