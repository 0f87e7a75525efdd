"""An in-memory chain speaking the `ChainBackend` interface, for tests and benchmarks.

Same control verbs as the demo chain (`pay`, `mine`, `reorg`, `double_spend`, with the demo chain's semantics) but no
signing, no file and no bitcoinlib: transactions are made-up but well-formed (64-hex
txids, each payment spends its own fresh coin, so a double spend conflicts with it).
`down` makes every call raise `BackendUnavailable`, as an unreachable server would.
"""
from __future__ import annotations

import hashlib
import itertools
import threading
from typing import Collection

from chain.backends import (Block, BlockHeader, BlockNotFound, BackendUnavailable, ChainTx,
                            OutPoint, TxOutput, TxStatus)


def _h(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


class MemoryChain:
    name = "memory"
    #: `reorg` lowers the tip on purpose (a later mine builds the new branch): a tip below
    #: what the watcher processed is a reorg here, never a node catching up.
    lower_tip_is_reorg = True

    def __init__(self, *, seed: str = "mem", genesis_time: int = 1_790_000_000):
        self._seed = seed
        self._counter = itertools.count(1)
        self._lock = threading.RLock()
        self.blocks: list[Block] = []
        self.mempool: dict[str, ChainTx] = {}
        self.down = False
        self.retry_after: float | None = None
        self.calls: dict[str, int] = {}
        self._time = genesis_time
        self._append(())  # genesis, height 0

    # -- control -------------------------------------------------------------------------
    def _append(self, txs: tuple[ChainTx, ...]) -> Block:
        prev = self.blocks[-1].header.hash if self.blocks else None
        height = len(self.blocks)
        self._time += 600
        header = BlockHeader(height=height, hash=_h(self._seed, "block", prev, height,
                                                     next(self._counter)),
                             prev_hash=prev, time=self._time)
        block = Block(header=header, txs=txs)
        self.blocks.append(block)
        return block

    def _new_coin(self) -> OutPoint:
        return OutPoint(_h(self._seed, "coin", next(self._counter)), 0)

    def make_tx(self, outputs: list[tuple[str | None, int]],
                inputs: tuple[OutPoint, ...] | None = None) -> ChainTx:
        ins = inputs if inputs is not None else (self._new_coin(),)
        outs = tuple(TxOutput(n=i, address=a, value_sats=v) for i, (a, v) in enumerate(outputs))
        return ChainTx(txid=_h(self._seed, "tx", next(self._counter), ins, outs), inputs=ins,
                       outputs=outs)

    def broadcast(self, tx: ChainTx) -> str:
        with self._lock:
            self.mempool[tx.txid] = tx
            return tx.txid

    def pay(self, address: str, sats: int) -> str:
        return self.broadcast(self.make_tx([(address, sats), (None, 1000)]))

    def pay_many(self, outputs: list[tuple[str, int]]) -> str:
        return self.broadcast(self.make_tx(list(outputs)))

    def mine(self, n: int = 1) -> list[str]:
        with self._lock:
            hashes = []
            for _ in range(n):
                txs = tuple(self.mempool.values())
                self.mempool.clear()
                hashes.append(self._append(txs).header.hash)
            return hashes

    def mine_block(self, txs: list[ChainTx]) -> str:
        """A block of exactly these transactions (benchmarks)."""
        with self._lock:
            return self._append(tuple(txs)).header.hash

    def reorg(self, depth: int, drop: bool = False) -> list[str]:
        """Orphan the last `depth` blocks, as the demo chain does: the tip goes down by
        `depth` (a later mine() builds the new branch); their transactions go back to the
        mempool, or vanish with `drop`. Returns the orphaned hashes, lowest first."""
        with self._lock:
            if depth < 1 or depth >= len(self.blocks):
                raise ValueError(f"cannot reorg {depth} blocks of {len(self.blocks)}")
            removed = self.blocks[-depth:]
            del self.blocks[-depth:]
            if not drop:
                for block in removed:
                    for tx in block.txs:
                        self.mempool[tx.txid] = tx
            return [b.header.hash for b in removed]

    def double_spend(self, txid: str, to_address: str | None = None) -> str:
        """Replace a mempool transaction by one spending the same coins elsewhere."""
        with self._lock:
            original = self.mempool.pop(txid, None)
            if original is None:
                raise ValueError(f"{txid} is not in the mempool")
            total = sum(o.value_sats for o in original.outputs)
            replacement = self.make_tx([(to_address or "bcrt1qelsewhere", total - 500)],
                                       inputs=original.inputs)
            self.mempool[replacement.txid] = replacement
            return replacement.txid

    # -- ChainBackend ----------------------------------------------------------------------
    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.down:
            raise BackendUnavailable("memory chain is down", retry_after=self.retry_after)

    def tip(self) -> BlockHeader:
        with self._lock:
            self._call("tip")
            return self.blocks[-1].header

    def block_hash_at(self, height: int) -> str | None:
        with self._lock:
            self._call("block_hash_at")
            if 0 <= height < len(self.blocks):
                return self.blocks[height].header.hash
            return None

    def block(self, block_hash: str) -> Block:
        with self._lock:
            self._call("block")
            for block in reversed(self.blocks):
                if block.header.hash == block_hash:
                    return block
            raise BlockNotFound(block_hash)

    def mempool_txs(self, watched: Collection[str]) -> list[ChainTx]:
        with self._lock:
            self._call("mempool_txs")
            return [tx for tx in self.mempool.values() if tx.pays(watched)]

    def tx_status(self, txid: str) -> TxStatus:
        with self._lock:
            self._call("tx_status")
            if txid in self.mempool:
                return TxStatus(False, None, None, True)
            for block in self.blocks:
                if any(tx.txid == txid for tx in block.txs):
                    return TxStatus(True, block.header.height, block.header.hash, False)
            return TxStatus(False, None, None, False)

    def close(self) -> None:
        pass
