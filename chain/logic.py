"""The watcher's pure rules: confirmations, reorg walk-back, matching, classification.

No database and no backend calls here, so each rule is tested on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Collection, Iterable, Iterator, Sequence, TypeVar

from chain.backends import ChainTx, TxStatus, normalize_address
from payments.invoice_status import (INCIDENT_ZERO_CONF_LOSS, AdditionalStatus, InvoiceFacts,
                                     PaymentFact, PaymentState, confirmations_required,
                                     full_threshold_sats)

T = TypeVar("T")

#: Settled payments stay under per-block watch this many blocks beyond the confirmations
#: their invoice needed (a reorg that deep is an incident; deeper ones are still found
#: through the block index, just no longer re-decided every block).
REORG_WATCH_BLOCKS = 6
#: A payment first seen after a gap is dated just after the last complete scan.
ARRIVAL_EPSILON = timedelta(microseconds=1)
INCIDENT_DEEP_REORG = "deep-reorg"
INCIDENT_AFTER_MONITORING = "paid-after-monitoring"


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


def incident_facts(facts: InvoiceFacts, payments: list[PaymentFact], rows: list,
                   current: str | None, judge: bool) -> tuple[str | None, str]:
    """The incident the facts support now, and why (for the history).

    - ``deep-reorg``: a settled invoice (not marked by a person) whose on-time payments no
      longer carry the confirmed value it settled on (a reorg took confirmations away, or
      a payment was double-spent, replaced or orphaned after settlement). Judged only at
      the end of a complete pass (`judge`); closes when the value is confirmed again.
    - ``paid-after-monitoring``: a counting payment seen after the invoice's monitoring
      ended (recorded, never credited); closes when no such payment counts any more.
    - ``zero-conf-loss``: as ``deep-reorg``, for an invoice its policy settled at 0
      confirmations (the city's risk: the merchant keeps the credit, the city books the loss).
    A person's mark changes only what the shop sees: incidents follow the chain status, which
    the money follows (`chain_status`)."""
    status = facts.status
    if facts.additional_status == AdditionalStatus.MARKED:
        status = facts.chain_status or "New"
    late = [r for r in rows if r.state == PaymentState.SEEN.value
            and r.seen_at > facts.monitoring_expires_at]
    if not judge:
        if current is None and late:
            return INCIDENT_AFTER_MONITORING, _late_why(late)
        return current, ""
    if status == "Settled":
        required = confirmations_required(facts.speed_policy, facts.amount_krw,
                                          facts.zero_conf_limit_krw)
        needed = max(1, full_threshold_sats(facts.due_sats, facts.payment_tolerance))
        confirmed = sum(p.value_sats for p in payments
                        if p.state == PaymentState.SEEN and p.seen_at <= facts.expires_at
                        and p.is_confirmed(required))
        listing = ", ".join(f"{p.txid}:{p.vout} {p.state.value} {p.confirmations} conf."
                            for p in payments) or "none"
        if confirmed < needed:
            return (INCIDENT_ZERO_CONF_LOSS if required == 0 else INCIDENT_DEEP_REORG), (
                f"settled, but only {confirmed} of the {needed} sats it settled on are "
                f"confirmed ({required} confirmation(s) each) on time; payments: {listing}")
        if current in (INCIDENT_DEEP_REORG, INCIDENT_ZERO_CONF_LOSS):
            return (INCIDENT_AFTER_MONITORING if late else None), (
                f"the facts are gone: {confirmed} of {needed} sats confirmed again; "
                f"payments: {listing}")
    if late:
        return INCIDENT_AFTER_MONITORING, _late_why(late)
    return None, "no payment seen after the end of monitoring counts any more"


def _late_why(late: list) -> str:
    return "paid after monitoring ended: " + ", ".join(
        f"{r.txid}:{r.vout} {r.value_sats} sats seen {r.seen_at.isoformat()}" for r in late)


def block_arrival_time(now: datetime, covered_at: datetime | None,
                       median_time: int | None) -> datetime:
    """When a payment first seen in a block counts as paid: just after the last complete
    scan (`arrival_time`), or the block's median time past when that is later (after a
    gap the block itself says the payment is at least that old; MTP never runs ahead of
    the real time, unlike a header's own timestamp). Never after now."""
    seen = arrival_time(now, covered_at)
    if median_time is not None:
        seen = max(seen, datetime.fromtimestamp(median_time, timezone.utc))
    return min(now, seen)


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
