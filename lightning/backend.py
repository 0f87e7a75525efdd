"""The Lightning node interface: what the gateway asks of any node.

Implementations: LND REST (`lnd.py`), Core Lightning's clnrest (`cln.py`), and the offline
demo node (`demo_node.py`) for the embedded default, demos and tests. Amounts are integer
millisatoshis; times are aware UTC datetimes. Nothing here knows about invoices of the
gateway, the database schema of the payments or Flask.

A node's settlements are read as a stream with a resume point (`index`): LND's
`settle_index`, CLN's `pay_index`, the demo node's own counter. The listener stores the
last index it committed and resumes from it after a restart or an outage; a settlement is
recorded once (unique on its payment hash), so a notification seen twice changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Iterator, Protocol, runtime_checkable

__all__ = ["LnState", "LnInvoice", "LnSettlement", "NodeInfo", "LightningError",
           "LightningUnavailable", "LightningBackend", "MSAT_PER_SAT"]

MSAT_PER_SAT = 1000


class LnState(StrEnum):
    OPEN = "open"          # may still be paid
    SETTLED = "settled"    # paid; final
    CANCELED = "canceled"  # expired or cancelled; can no longer be paid
    ACCEPTED = "accepted"  # HTLCs held, not settled yet (hold invoices); not money yet


@dataclass(frozen=True)
class LnInvoice:
    payment_hash: str      # 64 lower-case hex
    bolt11: str            # the payment request, lower-case
    amount_msat: int
    expires_at: datetime   # aware UTC
    state: LnState = LnState.OPEN
    amount_paid_msat: int = 0
    settled_at: datetime | None = None
    settle_index: int | None = None  # the stream position of its settlement, when settled


@dataclass(frozen=True)
class LnSettlement:
    """One settled invoice as the stream reports it."""
    payment_hash: str
    amount_paid_msat: int
    settled_at: datetime
    index: int             # resume point: settle_index (LND), pay_index (CLN), demo counter


@dataclass(frozen=True)
class NodeInfo:
    backend: str                 # "demo" | "lnd" | "cln"
    reachable: bool
    alias: str = ""
    node_id: str = ""            # hex public key
    block_height: int | None = None
    local_balance_msat: int = 0  # what the node holds in its channels (our side)
    inbound_msat: int = 0        # what it can still receive (the remote side of its channels)
    error: str | None = None     # why it is unreachable (no secrets)
    down: bool = False           # it did not answer (an outage), not merely refused the call


class LightningError(RuntimeError):
    """The node refused a request (bad amount, duplicate label, ...)."""


class LightningUnavailable(LightningError):
    """The node cannot be reached or answered with a server error; try again later."""


@runtime_checkable
class LightningBackend(Protocol):
    name: str  # "demo" | "lnd" | "cln"

    def create_invoice(self, amount_msat: int, description: str, expiry_seconds: int,
                       *, label: str) -> LnInvoice:
        """A new BOLT11 for exactly `amount_msat`, expiring after `expiry_seconds` (> 0).
        `label` is unique per request (CLN needs one; others may ignore it)."""

    def lookup_invoice(self, payment_hash: str) -> LnInvoice | None:
        """The node's view of one invoice (None when it does not know the hash)."""

    def settlements(self, after_index: int, *, timeout: float) -> Iterator[LnSettlement]:
        """Settlements with index > `after_index`, in index order, as they happen.

        Yields what is already settled first (a settlement that came while nobody
        listened), then waits for new ones; returns (ends the iteration) when `timeout`
        seconds pass with nothing new, so the caller can store its progress and check
        for shutdown. Raises LightningUnavailable when the node cannot be reached or the
        stream breaks; the caller resumes from its last stored index."""

    def node_info(self) -> NodeInfo:
        """Reachability, balance and inbound liquidity; never raises (reachable=False)."""
