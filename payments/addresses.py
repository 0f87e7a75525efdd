"""Watch-only BIP32 address derivation and address validation.

Pure domain code: no Flask, no database. The server never holds a private key;
it derives receive addresses from an account-level extended public key
(BIP44 ``xpub``/``tpub``, BIP49 ``ypub``/``upub``, BIP84 ``zpub``/``vpub``).

The point arithmetic runs in libsecp256k1 through coincurve. Each key caches its
two change-level nodes (``.../0`` receive, ``.../1`` change), so one address costs
one HMAC-SHA512, one point tweak and the hashing/encoding of the result.

Base58check, bech32 (BIP173) and bech32m (BIP350) are implemented here from the
specifications; bitcoinlib is not imported (its import is slow and writes files
into ``~/.bitcoinlib`` unless ``BCL_DATA_DIR`` is set). The tests cross-check
everything against bitcoinlib and the published BIP test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from functools import lru_cache

from coincurve import PublicKey

__all__ = [
    "NETWORKS",
    "InvalidExtendedKey",
    "InvalidAddress",
    "DEMO_TREASURY_KEY",
    "is_demo_key",
    "ExtendedKey",
    "validate_address",
    "is_bech32",
]

NETWORKS = ("bitcoin", "testnet", "signet", "regtest")

TEST_NETWORKS = ("testnet", "signet", "regtest")

# BIP84 account key m/84'/1'/0' of the public test mnemonic
# "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon
# abandon about". Anyone can spend from it: for regtest/testnet demos only.
DEMO_TREASURY_KEY = (
    "vpub5Y6cjg78GGuNLsaPhmYsiw4gYX3HoQiRBiSwDaBXKUafCt9bNwWQiitDk5VZ5BVxYnQdwoTyXSs2"
    "JHRPAgjAvtbBrf8ZhDYe2jWAqvZVnsc"
)

# Every account key of that mnemonic that someone might paste (BIP44/49/84, main
# and test networks). is_demo_key() compares decoded key material, so the same key
# re-encoded under another prefix is recognised too.
_PUBLIC_TEST_MNEMONIC_KEYS = (
    DEMO_TREASURY_KEY,
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868"
    "RvUUkgDKf31mGDtKsAYz2oz2AGutZYs",
    "ypub6Ww3ibxVfGzLrAH1PNcjyAWenMTbbAosGNB6VvmSEgytSER9azLDWCxoJwW7Ke7icmizBMXrzBx9"
    "979FfaHxHcrArf3zbeJJJUZPf663zsP",
    "xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMz"
    "G3DSSSSoekkudhUd9yLb6qx39T9nMdj",
    "upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8De"
    "hrnHtv21XXEMYRUocHqguyjknFHYfgY",
    "tpubDC5FSnBiZDMmhiuCmWAYsLwgLYrrT9rAqvTySfuCCrgsWz8wxMXUS9Tb9iVMvcRbvFcAHGkMD5Kx"
    "8koh4GquNGNTfohfk7pgjhaPCdXpoba",
)


class InvalidExtendedKey(ValueError):
    """An extended key the gateway cannot use (readable message for a person)."""


class InvalidAddress(ValueError):
    """A Bitcoin address that is malformed or for another network."""


# --------------------------------------------------------------------------- networks

_BECH32_HRP = {"bitcoin": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}
# Base58 version bytes. Regtest uses the test-network bytes, as Bitcoin Core does.
_P2PKH_VERSION = {"bitcoin": 0x00, "testnet": 0x6F, "signet": 0x6F, "regtest": 0x6F}
_P2SH_VERSION = {"bitcoin": 0x05, "testnet": 0xC4, "signet": 0xC4, "regtest": 0xC4}

_NETWORK_LABEL = {
    "bitcoin": "bitcoin mainnet",
    "testnet": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}

# SLIP-132 extended key versions: version -> (prefix, mainnet?, script type)
_PUBLIC_VERSIONS = {
    0x0488B21E: ("xpub", True, "p2pkh"),
    0x049D7CB2: ("ypub", True, "p2sh-p2wpkh"),
    0x04B24746: ("zpub", True, "p2wpkh"),
    0x043587CF: ("tpub", False, "p2pkh"),
    0x044A5262: ("upub", False, "p2sh-p2wpkh"),
    0x045F1CF6: ("vpub", False, "p2wpkh"),
}
_PRIVATE_VERSIONS = {
    0x0488ADE4: "xprv",
    0x049D7878: "yprv",
    0x04B2430C: "zprv",
    0x04358394: "tprv",
    0x044A4E28: "uprv",
    0x045F18BC: "vprv",
    0x0295B005: "Yprv",
    0x02AA7A99: "Zprv",
    0x024285B5: "Uprv",
    0x02575048: "Vprv",
}
_MULTISIG_PUBLIC_VERSIONS = {
    0x0295B43F: "Ypub",
    0x02AA7ED3: "Zpub",
    0x024289EF: "Upub",
    0x02575483: "Vpub",
}

_HARDENED = 0x80000000
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _check_network(network: str) -> str:
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")
    return network


# --------------------------------------------------------------------------- hashing

def _pick_ripemd160():
    try:
        hashlib.new("ripemd160", b"")
    except (ValueError, TypeError):  # OpenSSL 3 without the legacy provider
        # pycryptodome comes with bitcoinlib and imports quickly (bitcoinlib does not).
        from Crypto.Hash import RIPEMD160

        return lambda data: RIPEMD160.new(data).digest()
    return lambda data: hashlib.new("ripemd160", data).digest()


_ripemd160 = _pick_ripemd160()


def _hash160(data: bytes) -> bytes:
    return _ripemd160(hashlib.sha256(data).digest())


def _double_sha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


# --------------------------------------------------------------------------- base58check

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def _b58check_encode(payload: bytes) -> str:
    data = payload + _double_sha256(payload)[:4]
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58_ALPHABET[rem])
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + "".join(reversed(chars))


class _Base58Error(ValueError):
    pass


def _b58check_decode(text: str) -> bytes:
    if not text:
        raise _Base58Error("it is empty")
    number = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise _Base58Error(
                f"it contains {ch!r}, which is not a base58 character "
                "(base58 never uses 0, O, I or l)"
            )
        number = number * 58 + digit
    leading_ones = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    data = b"\0" * leading_ones + body
    if len(data) < 5:
        raise _Base58Error("it is too short")
    payload, checksum = data[:-4], data[-4:]
    if _double_sha256(payload)[:4] != checksum:
        raise _Base58Error("its checksum does not match (probably a typo or a truncated copy)")
    return payload


# --------------------------------------------------------------------------- bech32 / bech32m

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _BECH32_GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data, frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            return None
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def _segwit_encode(hrp: str, witver: int, program: bytes) -> str:
    data = [witver] + _convertbits(program, 8, 5, True)
    const = _BECH32_CONST if witver == 0 else _BECH32M_CONST
    polymod = _bech32_polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum)


def _segwit_decode(address: str) -> tuple[str, int, bytes]:
    """Decode a lower-case segwit address -> (hrp, witness version, program).

    Raises InvalidAddress with the reason. The caller handles case.
    """
    if len(address) > 90:
        raise InvalidAddress("this bech32 address is too long (more than 90 characters)")
    pos = address.rfind("1")
    if pos < 1 or pos + 7 > len(address):
        raise InvalidAddress("this is not a valid bech32 address (separator or checksum missing)")
    hrp, rest = address[:pos], address[pos + 1:]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise InvalidAddress("this bech32 address has invalid characters in its prefix")
    data = []
    for ch in rest:
        digit = _BECH32_INDEX.get(ch)
        if digit is None:
            raise InvalidAddress(
                f"this bech32 address contains {ch!r}, which bech32 never uses "
                "(it has no 1, b, i or o after the separator)"
            )
        data.append(digit)
    const = _bech32_polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise InvalidAddress("this bech32 address has a wrong checksum (probably a typo)")
    witver = data[0]
    if witver > 16:
        raise InvalidAddress("this bech32 address has an invalid witness version")
    program = _convertbits(data[1:-6], 5, 8, False)
    if program is None or not 2 <= len(program) <= 40:
        raise InvalidAddress("this bech32 address has an invalid witness program")
    if witver == 0 and const != _BECH32_CONST:
        raise InvalidAddress("this segwit v0 address uses a bech32m checksum; v0 needs bech32")
    if witver != 0 and const != _BECH32M_CONST:
        raise InvalidAddress(
            f"this segwit v{witver} address uses a bech32 checksum; v1+ needs bech32m (BIP350)"
        )
    return hrp, witver, bytes(program)


_KNOWN_HRPS = ("bc", "tb", "bcrt")


def _looks_bech32(text: str) -> bool:
    lower = text.lower()
    return any(lower.startswith(hrp + "1") for hrp in _KNOWN_HRPS)


def is_bech32(address: str) -> bool:
    """True if ``address`` is a valid segwit (bech32/bech32m) address of a known
    network (bc, tb, bcrt), in all-lower or all-upper case."""
    if not isinstance(address, str):
        return False
    text = address.strip()
    if not _looks_bech32(text) or (text != text.lower() and text != text.upper()):
        return False
    try:
        hrp, _, _ = _segwit_decode(text.lower())
    except InvalidAddress:
        return False
    return hrp in _KNOWN_HRPS


# --------------------------------------------------------------------------- validation

def _networks_for_hrp(hrp: str) -> str:
    return {"bc": "bitcoin mainnet", "tb": "testnet/signet", "bcrt": "regtest"}.get(hrp, hrp)


def validate_address(address: str, network: str) -> str:
    """Check ``address`` for ``network`` and return it normalized.

    Accepts P2PKH, P2SH, P2WPKH, P2WSH and P2TR. Bech32 addresses may be all
    upper case (as in QR codes) and come back lower case; mixed case is refused.
    """
    _check_network(network)
    if not isinstance(address, str):
        raise InvalidAddress("an address must be text")
    text = address.strip()
    if not text:
        raise InvalidAddress("the address is empty")
    where = _NETWORK_LABEL[network]

    if _looks_bech32(text):
        if text != text.lower() and text != text.upper():
            raise InvalidAddress(
                "this bech32 address mixes upper and lower case; bech32 must be all one case"
            )
        lower = text.lower()
        hrp, witver, program = _segwit_decode(lower)
        if hrp != _BECH32_HRP[network]:
            raise InvalidAddress(
                f"this is a {_networks_for_hrp(hrp)} address ({hrp}1...), not {where}"
            )
        if witver == 0 and len(program) not in (20, 32):
            raise InvalidAddress(
                "this segwit v0 address has a program of "
                f"{len(program)} bytes; P2WPKH is 20 and P2WSH is 32"
            )
        if witver == 1 and len(program) != 32:
            raise InvalidAddress("this taproot (segwit v1) address must have a 32-byte program")
        if witver > 1:
            raise InvalidAddress(
                f"segwit v{witver} addresses are not spendable yet and are not accepted"
            )
        return lower

    try:
        payload = _b58check_decode(text)
    except _Base58Error as exc:
        raise InvalidAddress(f"this is not a valid Bitcoin address: {exc}") from None
    if len(payload) != 21:
        raise InvalidAddress("this is not a Bitcoin address (wrong length for P2PKH/P2SH)")
    version = payload[0]
    if version in (_P2PKH_VERSION[network], _P2SH_VERSION[network]):
        return text
    if version in (0x00, 0x05):
        raise InvalidAddress(f"this is a bitcoin mainnet address, not {where}")
    if version in (0x6F, 0xC4):
        raise InvalidAddress(f"this is a test-network address, not {where}")
    raise InvalidAddress("this is not a Bitcoin address (unknown base58 version)")


# --------------------------------------------------------------------------- extended keys

def _normalize_key_text(text: str) -> str:
    if not isinstance(text, str):
        raise InvalidExtendedKey("an extended public key must be text")
    return "".join(text.split())


@dataclass(frozen=True)
class _Node:
    pubkey: PublicKey
    compressed: bytes
    chain_code: bytes


def _ckd_pub(node: _Node, index: int) -> _Node:
    """BIP32 CKDpub: public parent -> public child (non-hardened only)."""
    digest = hmac.new(
        node.chain_code, node.compressed + index.to_bytes(4, "big"), hashlib.sha512
    ).digest()
    tweak, chain_code = digest[:32], digest[32:]
    if int.from_bytes(tweak, "big") >= _SECP256K1_ORDER:
        # Probability below 2**-127; BIP32 says to use the next index instead.
        raise ValueError(f"child {index} is invalid under BIP32; use the next index")
    child = node.pubkey.add(tweak)  # raises ValueError on the point at infinity
    return _Node(child, child.format(compressed=True), chain_code)


def _check_change(change: int) -> int:
    if isinstance(change, bool) or not isinstance(change, int) or change not in (0, 1):
        raise ValueError(f"change must be 0 (receive) or 1 (change), got {change!r}")
    return change


def _check_index(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value < _HARDENED:
        raise ValueError(
            f"{what} must be 0 <= {what} < 2**31 (public derivation cannot reach hardened "
            f"children), got {value}"
        )
    return value


@dataclass(eq=False)
class ExtendedKey:
    """A parsed account-level extended public key for one network.

    Use :meth:`parse`. Instances are immutable in practice and safe to share
    between threads; the change-level nodes are cached on first use.
    """

    text: str
    network: str
    script_type: str
    prefix: str
    depth: int
    parent_fingerprint: bytes
    child_number: int
    chain_code: bytes
    public_key: bytes
    fingerprint: str
    _root: _Node = field(repr=False)
    _branches: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __eq__(self, other):
        if not isinstance(other, ExtendedKey):
            return NotImplemented
        return (self.text, self.network) == (other.text, other.network)

    def __hash__(self):
        return hash((self.text, self.network))

    @classmethod
    def parse(cls, text: str, network: str) -> "ExtendedKey":
        """Parse and check an extended public key for ``network``.

        Whitespace anywhere (copy-paste line breaks) is removed. Raises
        InvalidExtendedKey with a message a person can act on.
        """
        _check_network(network)
        return _parse_cached(_normalize_key_text(text), network)

    def _branch(self, change: int) -> _Node:
        node = self._branches.get(change)
        if node is None:
            with self._lock:
                node = self._branches.get(change)
                if node is None:
                    node = _ckd_pub(self._root, change)
                    self._branches[change] = node
        return node

    def _encode(self, compressed_pubkey: bytes) -> str:
        key_hash = _hash160(compressed_pubkey)
        if self.script_type == "p2wpkh":
            return _segwit_encode(_BECH32_HRP[self.network], 0, key_hash)
        if self.script_type == "p2sh-p2wpkh":
            redeem_script = b"\x00\x14" + key_hash
            return _b58check_encode(
                bytes([_P2SH_VERSION[self.network]]) + _hash160(redeem_script)
            )
        return _b58check_encode(bytes([_P2PKH_VERSION[self.network]]) + key_hash)

    def address(self, index: int, change: int = 0) -> str:
        """The address at ``<account>/change/index`` (change 0 receive, 1 change)."""
        _check_index(index, "index")
        _check_change(change)
        child = _ckd_pub(self._branch(change), index)
        return self._encode(child.compressed)

    def addresses(self, start: int, count: int, change: int = 0) -> list[str]:
        """``count`` consecutive addresses from ``start``."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        _check_index(start, "start")
        _check_change(change)
        if count:
            _check_index(start + count - 1, "index")
        branch = self._branch(change)
        return [self._encode(_ckd_pub(branch, i).compressed) for i in range(start, start + count)]


def _decode_extended(text: str) -> tuple[int, bytes]:
    """base58check-decode an extended key -> (version, 78-byte payload)."""
    if not text:
        raise InvalidExtendedKey("the extended public key is empty")
    try:
        payload = _b58check_decode(text)
    except _Base58Error as exc:
        raise InvalidExtendedKey(f"this is not a valid extended public key: {exc}") from None
    if len(payload) != 78:
        raise InvalidExtendedKey(
            "this is not an extended public key (wrong length; expected an account "
            "xpub/ypub/zpub or tpub/upub/vpub)"
        )
    return int.from_bytes(payload[:4], "big"), payload


@lru_cache(maxsize=256)
def _parse_cached(text: str, network: str) -> ExtendedKey:
    version, payload = _decode_extended(text)

    if version in _PRIVATE_VERSIONS:
        raise InvalidExtendedKey(
            f"this is a private key ({_PRIVATE_VERSIONS[version]}); the server never takes "
            "private keys. Export the account's extended public key (xpub/ypub/zpub, or "
            "tpub/upub/vpub on test networks) from the wallet instead, and keep this one secret"
        )
    if version in _MULTISIG_PUBLIC_VERSIONS:
        raise InvalidExtendedKey(
            f"a {_MULTISIG_PUBLIC_VERSIONS[version]} key is for a multisig wallet, which is "
            "not supported; use a single-signature account key"
        )
    if version not in _PUBLIC_VERSIONS:
        raise InvalidExtendedKey(
            f"unknown extended key version 0x{version:08x}; expected xpub/ypub/zpub "
            "or tpub/upub/vpub"
        )
    prefix, mainnet, script_type = _PUBLIC_VERSIONS[version]
    if mainnet and network != "bitcoin":
        raise InvalidExtendedKey(
            f"a {prefix} key is for bitcoin mainnet, not {network}; "
            "use a tpub/upub/vpub key on test networks"
        )
    if not mainnet and network == "bitcoin":
        raise InvalidExtendedKey(
            f"a {prefix} key is for test networks, not bitcoin; "
            "use an xpub/ypub/zpub key on mainnet"
        )

    depth = payload[4]
    parent_fingerprint = payload[5:9]
    child_number = int.from_bytes(payload[9:13], "big")
    chain_code = payload[13:45]
    key_data = payload[45:78]
    if depth == 0 and (parent_fingerprint != b"\0\0\0\0" or child_number != 0):
        raise InvalidExtendedKey(
            "this extended key is inconsistent (depth 0 with a parent fingerprint or child "
            "number)"
        )
    if key_data[0] not in (2, 3):
        raise InvalidExtendedKey("this extended key does not hold a compressed public key")
    try:
        point = PublicKey(key_data)
    except Exception:
        raise InvalidExtendedKey(
            "this extended key's public key is not a point on secp256k1"
        ) from None

    return ExtendedKey(
        text=text,
        network=network,
        script_type=script_type,
        prefix=prefix,
        depth=depth,
        parent_fingerprint=parent_fingerprint,
        child_number=child_number,
        chain_code=chain_code,
        public_key=key_data,
        fingerprint=hashlib.sha256(text.encode("ascii")).hexdigest()[:16],
        _root=_Node(point, key_data, chain_code),
    )


def _key_material(text: str) -> bytes | None:
    try:
        _, payload = _decode_extended(_normalize_key_text(text))
    except InvalidExtendedKey:
        return None
    return payload[13:78]  # chain code + public key, whatever the prefix


_DEMO_MATERIAL = frozenset(_key_material(k) for k in _PUBLIC_TEST_MNEMONIC_KEYS)


def is_demo_key(text: str) -> bool:
    """True if ``text`` is an account key of the public "abandon ... about" test
    mnemonic (the demo treasury key or its siblings), under any prefix. Such a key
    is spendable by anyone and must never receive real money."""
    if not isinstance(text, str):
        return False
    material = _key_material(text)
    return material is not None and material in _DEMO_MATERIAL
