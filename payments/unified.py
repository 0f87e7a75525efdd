"""The payment request a tourist is shown: one BIP21 that on-chain and Lightning wallets both
pay (`bitcoin:ADDR?amount=…&label=…&lightning=BOLT11`), or on-chain only.

A BOLT11 joins the URI only when it asks for exactly the amount the URI asks for (a QR must
never ask two amounts): the invoice's full amount before anything was paid, the rest after a
partial payment (the core makes a new BOLT11 for the rest: lightning/invoices.py). The offer
is duck-typed (`bolt11`, `amount_msat`, `payment_hash`), so this module imports nothing of
the lightning package.

QR images are served under URLs that name their payload (`qr_token`): a new BOLT11 is a new
URL, so browsers may keep each image forever and never show a superseded one.
"""
from __future__ import annotations

import hashlib

from payments.bip21 import payment_uri

__all__ = ["bolt11_for", "request_uri", "lightning_qr_payload", "qr_token"]

MSAT_PER_SAT = 1000


def bolt11_for(offer, sats: int | None) -> str | None:
    """The offer's BOLT11 when it asks for exactly `sats`; None otherwise (or no offer)."""
    if offer is None or not getattr(offer, "bolt11", None) or not sats or sats <= 0:
        return None
    return offer.bolt11 if offer.amount_msat == sats * MSAT_PER_SAT else None


def request_uri(address: str, sats: int | None, label: str | None, offer=None, *,
                for_qr: bool = False) -> str:
    """The BIP21 for `sats` to `address`, with `lightning=` when the offer matches."""
    return payment_uri(address, sats or None, label or None, for_qr=for_qr,
                       lightning=bolt11_for(offer, sats))


def lightning_qr_payload(bolt11: str) -> str:
    """The plain Lightning QR: `LIGHTNING:<BOLT11>`, all upper-case (BOLT11's advice for QR
    codes: alphanumeric mode, a smaller code; wallets read the scheme in any case)."""
    return "LIGHTNING:" + bolt11.strip().upper()


def qr_token(payload: str) -> str:
    """A short name of a QR payload for its image URL (`?v=`)."""
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
