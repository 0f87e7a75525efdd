"""Korean business registration numbers (사업자등록번호): 10 digits, the last a check digit.

The check: weights 1,3,7,1,3,7,1,3,5 on the first nine digits; the ninth digit times 5
also adds its tens digit (the "carry"); the check digit is (10 − sum mod 10) mod 10.
"""
from __future__ import annotations

import re

WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)
_SHAPE = re.compile(r"^\d{3}-?\d{2}-?\d{5}$")


def check_digit(first_nine: str) -> int:
    digits = [int(c) for c in first_nine]
    if len(digits) != 9:
        raise ValueError("nine digits are needed")
    total = sum(d * w for d, w in zip(digits, WEIGHTS)) + (digits[8] * 5) // 10
    return (10 - total % 10) % 10


def normalize_brn(text: str) -> str | None:
    """The ten digits of a well-formed number (hyphens and spaces allowed as 123-45-67890),
    or None when it is not one (shape or check digit)."""
    text = re.sub(r"\s", "", text or "")
    if not _SHAPE.match(text):
        return None
    digits = text.replace("-", "")
    return digits if check_digit(digits[:9]) == int(digits[9]) else None


def display_brn(digits: str) -> str:
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
