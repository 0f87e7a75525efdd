"""Short store codes for the POS login: what a cashier types instead of the 32-character
Greenfield storeId.

Six characters from an alphabet without look-alikes (no 0/O/Q/D, 1/I/L/J, 2/Z, 5/S, 8/B,
U/V), upper case; typing is case-insensitive and ignores spaces and dashes. 20⁶ = 64
million codes, unique by a database constraint (a clash is retried, never checked first).
"""
from __future__ import annotations

import secrets

ALPHABET = "ACEFGHKMNPRTWXY34679"
LENGTH = 6


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(typed: str) -> str:
    """What the cashier typed, as stored: upper case, without spaces or dashes."""
    return "".join(ch for ch in (typed or "").upper() if ch not in " -\t")


def looks_like_code(typed: str) -> bool:
    code = normalize(typed)
    return len(code) == LENGTH and all(ch in ALPHABET for ch in code)
