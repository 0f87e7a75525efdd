"""The offline demo Lightning node: real signed BOLT11 invoices, settled when told.

For the embedded default (`make start`), demos and tests. It issues BOLT11s that any
decoder reads (encoded and signed by the `bolt11` library, regtest prefix `lnbcrt` on
regtest), keeps its invoices in the database (table `demo_ln_invoice`) so the web
process and a `flask demo pay-lightning` process share one node, and settles an invoice
only when told (`settle`), refusing an expired or already settled one, as a real node
refuses to accept payment for an expired invoice. Its settlement stream is the table read
in `settle_index` order (a counter row, `demo_ln_node`, hands out the indexes).

DEMO ONLY: its node key below is public (derived from a fixed phrase), so anyone can sign
as this "node"; it moves no money and is refused on mainnet (`Settings.check`).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime
from typing import Callable, Iterator

from bolt11 import Bolt11, MilliSatoshi, TagChar, Tags, decode, encode
from sqlalchemy import select, update

from database import Database, insert_ignore
from lightning.backend import (LightningError, LnInvoice, LnSettlement, LnState, NodeInfo,
                               MSAT_PER_SAT)
from lightning.models import DemoLnInvoice, DemoLnNode

#: Not a secret: the demo node's fixed key, so its BOLT11s name the same payee every run.
DEMO_NODE_KEY = hashlib.sha256(b"busanpay demo lightning node (public, demo only)").hexdigest()
#: BOLT11 currency prefixes (`ln` + this) per network.
PREFIXES = {"bitcoin": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt"}
#: How often `settlements` looks for new ones while waiting (the POS shows Paid within 1 s).
POLL_SECONDS = 0.1
MIN_FINAL_CLTV = 18


class DemoRefused(LightningError):
    """The demo node will not pay this invoice (unknown, expired, already settled)."""


class DemoLightningNode:
    name = "demo"

    def __init__(self, db: Database, *, clock: Callable[[], datetime], network: str = "regtest",
                 inbound_sats: int = 100_000_000):
        self.db = db
        self.clock = clock
        self.currency = PREFIXES[network]
        self.inbound_msat = inbound_sats * MSAT_PER_SAT

    # -- the interface ----------------------------------------------------------------
    def create_invoice(self, amount_msat: int, description: str, expiry_seconds: int, *,
                       label: str) -> LnInvoice:
        if not isinstance(amount_msat, int) or amount_msat <= 0:
            raise LightningError("amount_msat must be a positive whole number")
        if not isinstance(expiry_seconds, int) or expiry_seconds <= 0:
            raise LightningError("expiry must be a positive number of seconds")
        now = self.clock()
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        tags = Tags()
        tags.add(TagChar.payment_hash, payment_hash)
        tags.add(TagChar.payment_secret, secrets.token_hex(32))
        tags.add(TagChar.description, description)
        tags.add(TagChar.expire_time, expiry_seconds)
        tags.add(TagChar.min_final_cltv_expiry, MIN_FINAL_CLTV)
        date = int(now.timestamp())
        bolt11 = encode(Bolt11(currency=self.currency, date=date, tags=tags,
                               amount_msat=MilliSatoshi(amount_msat)), DEMO_NODE_KEY)
        expires_at = datetime.fromtimestamp(date + expiry_seconds, now.tzinfo)
        with self.db.write() as s:
            if not insert_ignore(s, DemoLnInvoice.__table__, {
                    "payment_hash": payment_hash, "bolt11": bolt11, "label": label[:100],
                    "description": description[:640], "amount_msat": amount_msat,
                    "created_at": now, "expires_at": expires_at, "amount_paid_msat": 0},
                    conflict=["label"]):
                raise LightningError(f"an invoice labelled {label!r} exists already")
        return LnInvoice(payment_hash=payment_hash, bolt11=bolt11, amount_msat=amount_msat,
                         expires_at=expires_at)

    def lookup_invoice(self, payment_hash: str) -> LnInvoice | None:
        with self.db.read() as s:
            row = s.get(DemoLnInvoice, payment_hash)
        return None if row is None else self._invoice(row)

    def settlements(self, after_index: int, *, timeout: float) -> Iterator[LnSettlement]:
        deadline = time.monotonic() + max(0.0, timeout)
        last = after_index
        while True:
            with self.db.read() as s:
                rows = list(s.execute(select(DemoLnInvoice).where(
                    DemoLnInvoice.settle_index > last).order_by(DemoLnInvoice.settle_index)
                    .limit(500)).scalars())
            for row in rows:
                last = row.settle_index
                yield LnSettlement(payment_hash=row.payment_hash,
                                   amount_paid_msat=row.amount_paid_msat,
                                   settled_at=row.settled_at, index=row.settle_index)
            if rows:
                continue
            if time.monotonic() >= deadline:
                return
            time.sleep(POLL_SECONDS)

    def node_info(self) -> NodeInfo:
        try:
            with self.db.read() as s:
                received = sum(s.execute(select(DemoLnInvoice.amount_paid_msat).where(
                    DemoLnInvoice.settle_index.is_not(None))).scalars())
        except Exception as err:  # the database is the node here: unreachable with it
            return NodeInfo(backend=self.name, reachable=False, error=type(err).__name__)
        return NodeInfo(backend=self.name, reachable=True, alias="busanpay-demo",
                        node_id=demo_node_id(), local_balance_msat=received,
                        inbound_msat=max(0, self.inbound_msat - received))

    # -- the demo's own ----------------------------------------------------------------
    def settle(self, payment_hash_or_bolt11: str, amount_paid_msat: int | None = None
               ) -> LnSettlement:
        """Pay one of its invoices (by payment hash or BOLT11), as a wallet would: refused
        when unknown, expired or already settled. `amount_paid_msat` defaults to the
        invoice's amount (a wallet may pay more, never less)."""
        payment_hash = self._hash_of(payment_hash_or_bolt11)
        now = self.clock()
        with self.db.write() as s:
            row = s.execute(select(DemoLnInvoice).where(DemoLnInvoice.payment_hash == payment_hash)
                            .with_for_update()).scalar_one_or_none()
            if row is None:
                raise DemoRefused("the demo node knows no invoice with this payment hash")
            if row.settle_index is not None:
                raise DemoRefused("this Lightning invoice is already paid")
            if now >= row.expires_at:
                raise DemoRefused("this Lightning invoice has expired: a wallet cannot pay it")
            paid = row.amount_msat if amount_paid_msat is None else amount_paid_msat
            if paid < row.amount_msat:
                raise DemoRefused("a Lightning invoice is paid its amount or more, never less")
            insert_ignore(s, DemoLnNode.__table__, {"id": 1, "settle_index": 0}, conflict=["id"])
            index = s.execute(update(DemoLnNode).where(DemoLnNode.id == 1)
                              .values(settle_index=DemoLnNode.settle_index + 1)
                              .returning(DemoLnNode.settle_index)).scalar_one()
            row.settle_index, row.amount_paid_msat, row.settled_at = index, paid, now
            s.add(row)
        return LnSettlement(payment_hash=payment_hash, amount_paid_msat=paid, settled_at=now,
                            index=index)

    @staticmethod
    def _hash_of(value: str) -> str:
        value = (value or "").strip()
        if value.lower().startswith("lightning:"):
            value = value[len("lightning:"):]
        if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
            return value.lower()
        try:
            return decode(value.lower()).payment_hash
        except Exception:
            raise DemoRefused("neither a payment hash nor a BOLT11 invoice") from None

    def _invoice(self, row: DemoLnInvoice) -> LnInvoice:
        now = self.clock()
        if row.settle_index is not None:
            state = LnState.SETTLED
        elif now >= row.expires_at:
            state = LnState.CANCELED
        else:
            state = LnState.OPEN
        return LnInvoice(payment_hash=row.payment_hash, bolt11=row.bolt11,
                         amount_msat=row.amount_msat, expires_at=row.expires_at, state=state,
                         amount_paid_msat=row.amount_paid_msat, settled_at=row.settled_at,
                         settle_index=row.settle_index)


def demo_node_id() -> str:
    """The demo node's public key (hex), from its fixed key."""
    from coincurve import PrivateKey

    return PrivateKey(bytes.fromhex(DEMO_NODE_KEY)).public_key.format().hex()
