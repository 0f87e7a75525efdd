"""The watcher's pure rules: confirmations, reorg walk-back, matching, classification.

No database and no backend calls here, so each rule is tested on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Collection, Iterable, Iterator, Sequence, TypeVar

from chain.backends import ChainTx, TxStatus, normalize_address
from payments.invoice_status import PaymentState

T = TypeVar("T")

#: Settled payments stay under per-block watch this many blocks beyond the confirmations
#: their invoice needed (a reorg that deep is an incident; deeper ones are still found
#: through the block index, just no longer re-decided every block).
REORG_WATCH_BLOCKS = 6
#: A payment first seen after a gap is dated just after the last complete scan.
ARRIVAL_EPSILON = timedelta(microseconds=1)


def confirmations(tip_height: int | None, block_height: int | None) -> int:
    """tip − height + 1 for a payment in a block of the processed chain; 0 when unconfirmed
    (bitcoinlib's Esplora helper counts one short: never use it)."""
    if block_height is None or tip_height is None or block_height > tip_height:
        return 0
    return tip_height - block_height + 1


def find_fork(stored: Iterable[tuple[int, str]],
              hash_at: Callable[[int], str | None]) -> int | None:
    """Walk back from our best processed block to the last one the backend still has.

    `stored`: (height, hash) of processed, not orphaned blocks, highest first.
    `hash_at(height)`: the backend's active-chain hash at that height (None above its tip).
    Returns the fork height (the highest block both agree on), or None when no stored
    block is on the backend's chain (a reorg deeper than everything we processed).
    """
    for height, block_hash in stored:
        if hash_at(height) == block_hash:
            return height
    return None


@dataclass(frozen=True)
class Match:
    """One transaction output paying a watched address."""

    txid: str
    vout: int
    address: str
    value_sats: int


def candidate_addresses(txs: Iterable[ChainTx]) -> set[str]:
    """Every address a block pays, normalised as invoices store them."""
    return {normalize_address(o.address) for tx in txs for o in tx.outputs if o.address}


def outputs_paying(txs: Iterable[ChainTx], addresses: Collection[str]) -> list[Match]:
    """The outputs paying any of `addresses`, in block order (each (txid, vout) once)."""
    found: list[Match] = []
    seen: set[tuple[str, int]] = set()
    for tx in txs:
        for out in tx.outputs:
            if not out.address:
                continue
            address = normalize_address(out.address)
            if address in addresses and (tx.txid, out.n) not in seen:
                seen.add((tx.txid, out.n))
                found.append(Match(tx.txid, out.n, address, out.value_sats))
    return found


def conflicting_spends(txs: Iterable[ChainTx],
                       watched_inputs: dict[tuple[str, int], set[str]]) -> set[str]:
    """Txids of watched payment transactions that a transaction in `txs` conflicts with:
    it spends one of their inputs under another txid."""
    conflicted: set[str] = set()
    for tx in txs:
        for spent in tx.inputs:
            owners = watched_inputs.get((spent.txid, spent.vout))
            if owners:
                conflicted.update(owner for owner in owners if owner != tx.txid)
    return conflicted


def classify(status: TxStatus, *, lost_block: bool,
             conflict_confirmed: bool = False) -> PaymentState:
    """What a payment not seen in this pass's mempool answer has become.

    In a block or in the mempool: still SEEN (a block is recorded when we process it).
    Unknown to the backend: DOUBLE_SPENT when a conflicting transaction confirmed,
    ORPHANED when its block was reorganised away, REPLACED otherwise.
    """
    if status.confirmed or status.in_mempool:
        return PaymentState.SEEN
    if conflict_confirmed:
        return PaymentState.DOUBLE_SPENT
    return PaymentState.ORPHANED if lost_block else PaymentState.REPLACED


def arrival_time(now: datetime, covered_at: datetime | None) -> datetime:
    """When a newly found payment counts as seen: just after the last complete scan.

    The payment was not there when that scan started, so it arrived after it; it may have
    arrived any time since. Dating it at the earliest possible moment means an outage
    (backend or watcher down) never makes an on-time payment late. Without any earlier
    complete scan: now.
    """
    if covered_at is None:
        return now
    return min(now, covered_at + ARRIVAL_EPSILON)


def backoff_seconds(failures: int, retry_after: float | None = None,
                    cap: float = 300.0) -> float:
    """1, 2, 4 … seconds, at most `cap`, never less than the server's Retry-After."""
    delay = min(cap, float(2 ** max(0, min(failures - 1, 16))))
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), 3600.0)
    return delay


def watch_done(confs: int, required: int, extra: int = REORG_WATCH_BLOCKS) -> bool:
    """A confirmed payment needs no per-block work once it is `extra` blocks deeper than
    its invoice needed."""
    return confs >= max(required, 1) + extra


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
