"""BIP21 payment URIs: ``bitcoin:<address>?amount=<BTC>&label=<text>``.

Amounts are int satoshis in code and decimal BTC text in the URI (at most 8
places, never exponent notation). Labels and messages are UTF-8 percent-encoded
(RFC 3986), so Korean, Chinese and Japanese shop names and ``& = # ? +`` and
spaces survive the round trip.

QR payload (``for_qr=True``): a bech32 address is upper-cased (BIP173 allows
either case), which lets the QR encoder put the 42+ address characters in
alphanumeric mode and gives a smaller code. The scheme stays lower-case
``bitcoin:``: RFC 3986 schemes are case-insensitive and BIP173 mentions the
all-upper-case form, but some wallet parsers still test for the literal
``bitcoin:``, and the gain (8 more alphanumeric characters, not a whole QR
version for our payloads: see tests/unit/test_qr_codes.py) is not worth that risk.

Unified QR: with ``lightning=<BOLT11>`` (last, after amount, label and message) one code
serves on-chain and Lightning wallets. A BOLT11 is bech32 too: upper-case in the QR
payload (with the address, a long alphanumeric run the encoder packs at 5.5 bits per
character), lower-case in a clickable link; never percent-encoded (only [0-9a-z]).
"""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import quote, unquote

from payments.addresses import is_bech32

__all__ = ["InvalidPaymentURI", "format_btc", "payment_uri", "parse_payment_uri"]

SATS_PER_BTC = 100_000_000

# BIP21: amount = *digit [ "." *digit ]; we also require a digit and at most 8 places.
_AMOUNT_RE = re.compile(r"(?=\.?[0-9])[0-9]*(\.[0-9]{0,8})?\Z")


# A BOLT11 payment request: ln + currency prefix, one case, bech32 data (checked by the node).
_BOLT11_RE = re.compile(r"(?:ln[0-9a-z]+|LN[0-9A-Z]+)\Z")


class InvalidPaymentURI(ValueError):
    """A BIP21 URI that cannot be used as a payment request."""


def _check_sats(sats: int) -> int:
    if isinstance(sats, bool) or not isinstance(sats, int):
        raise TypeError(f"amounts are int satoshis, got {type(sats).__name__}")
    if sats < 0:
        raise ValueError(f"amount cannot be negative: {sats} sats")
    return sats


def format_btc(sats: int) -> str:
    """Satoshis -> plain decimal BTC text: 1 -> "0.00000001", 150000 -> "0.0015",
    100000000 -> "1". Never exponent notation, never a float."""
    whole, frac = divmod(_check_sats(sats), SATS_PER_BTC)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:08d}".rstrip("0")


def _encode_text(text: str) -> str:
    # safe="" also escapes "/", "?", "&", "=", "#", "+"; spaces become %20 (not "+").
    return quote(text, safe="", encoding="utf-8", errors="strict")


def payment_uri(
    address: str,
    sats: int | None,
    label: str | None = None,
    message: str | None = None,
    *,
    for_qr: bool = False,
    lightning: str | None = None,
) -> str:
    """Build ``bitcoin:<address>?amount=..&label=..&message=..&lightning=..``.

    ``sats`` None leaves the amount out; otherwise it must be a positive int.
    With ``for_qr`` a bech32 address and the BOLT11 are upper-cased for a smaller QR code.
    ``lightning`` is a BOLT11 for the same amount (the caller checks that), or None.
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError("a payment URI needs an address")
    address = address.strip()
    if any(c in address for c in "?&=#:/ %"):
        raise ValueError(f"not an address: {address!r}")
    if is_bech32(address):
        address = address.upper() if for_qr else address.lower()

    params = []
    if sats is not None:
        if _check_sats(sats) == 0:
            raise ValueError("a payment request for 0 sats makes no sense; pass None for no amount")
        params.append("amount=" + format_btc(sats))
    if label:
        params.append("label=" + _encode_text(label))
    if message:
        params.append("message=" + _encode_text(message))
    if lightning:
        bolt11 = lightning.strip()
        if not _BOLT11_RE.match(bolt11):
            raise ValueError("not a BOLT11 payment request")
        params.append("lightning=" + (bolt11.upper() if for_qr else bolt11.lower()))
    uri = "bitcoin:" + address
    if params:
        uri += "?" + "&".join(params)
    return uri


def parse_btc(text: str) -> int:
    """Decimal BTC text -> int satoshis. Refuses exponents, signs and >8 places."""
    if not isinstance(text, str) or not _AMOUNT_RE.match(text):
        raise InvalidPaymentURI(
            f"invalid amount {text!r}: expected decimal BTC with at most 8 places"
        )
    sats = Decimal(text) * SATS_PER_BTC
    return int(sats)  # exact: the regex allows at most 8 places


def parse_payment_uri(uri: str) -> dict:
    """Parse a BIP21 URI -> {"address", "sats", "label", "message", "params"}.

    ``address`` is normalized (bech32 lower-cased), ``sats`` is an int or None,
    ``label``/``message`` are decoded text or None, ``params`` holds any other
    (decoded) parameters. Unknown ``req-`` parameters make the URI invalid (BIP21).
    """
    if not isinstance(uri, str):
        raise InvalidPaymentURI("a payment URI must be text")
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "bitcoin":
        raise InvalidPaymentURI("not a bitcoin: URI")
    address, _, query = rest.partition("?")
    if not address:
        raise InvalidPaymentURI("the URI has no address")
    if is_bech32(address):
        address = address.lower()

    result: dict = {"address": address, "sats": None, "label": None, "message": None,
                    "params": {}}
    seen = set()
    for part in query.split("&") if query else ():
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            raise InvalidPaymentURI(f"parameter {key!r} has no value")
        key = unquote(key, errors="strict")
        if key in seen:
            raise InvalidPaymentURI(f"parameter {key!r} appears twice")
        seen.add(key)
        try:
            decoded = unquote(value, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise InvalidPaymentURI(f"parameter {key!r} is not valid UTF-8") from None
        if key == "amount":
            result["sats"] = parse_btc(decoded)
        elif key in ("label", "message"):
            result[key] = decoded
        elif key.startswith("req-"):
            raise InvalidPaymentURI(f"required parameter {key!r} is not supported")
        else:
            result["params"][key] = decoded
    return result
