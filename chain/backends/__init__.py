"""Chain backends: how the watcher sees the Bitcoin chain.

Three implementations share one small interface (`ChainBackend`):

- `EsploraBackend` (esplora.py): the Esplora REST API (Blockstream/esplora API.md),
  as served by electrs, blockstream.info and mempool.space; paced requests.
- `BitcoindBackend` (bitcoind.py): a Bitcoin Core node over JSON-RPC, optionally woken
  by its ZMQ notifications (zmq_notify.py).
- `DemoChain` (demo.py): an offline regtest-style chain in a SQLite file, with real
  signed segwit transactions, for development and demos.

Everything here speaks integer satoshis. Backends answer with the frozen dataclasses
below; a coinbase input has no previous output and is left out of `ChainTx.inputs`.
Output addresses are lower-case for bech32 and as given for base58; `None` when the
script has no address (OP_RETURN, bare multisig, ...).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Collection, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "TxOutput", "OutPoint", "ChainTx", "BlockHeader", "Block", "TxStatus", "NodeState", "READY",
    "BackendError", "BackendUnavailable", "BlockNotFound", "ChainBackend",
    "btc_to_sats", "backend_from_spec", "SATS_PER_BTC", "MAX_MONEY_SATS",
]

SATS_PER_BTC = 100_000_000
MAX_MONEY_SATS = 21_000_000 * SATS_PER_BTC


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class TxOutput:
    n: int
    address: str | None
    value_sats: int


@dataclass(frozen=True)
class OutPoint:
    txid: str
    vout: int


@dataclass(frozen=True)
class ChainTx:
    txid: str
    inputs: tuple[OutPoint, ...]
    outputs: tuple[TxOutput, ...]
    #: Unix seconds when the node first saw it in its mempool (Bitcoin Core's
    #: getmempoolentry ``time``); None when the backend cannot say (Esplora, demo chains).
    first_seen: int | None = None

    def pays(self, addresses: Collection[str]) -> tuple[TxOutput, ...]:
        """The outputs paying any of `addresses` (compared as the backends write them)."""
        return tuple(o for o in self.outputs if o.address is not None and o.address in addresses)


@dataclass(frozen=True)
class BlockHeader:
    height: int
    hash: str
    prev_hash: str | None   # None for the genesis block
    time: int               # unix seconds (the header's timestamp)
    median_time: int | None = None  # median time past (unix seconds) when the backend gives it


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[ChainTx, ...]


@dataclass(frozen=True)
class TxStatus:
    """confirmed and in_mempool both False: the backend does not know the tx (never seen,
    replaced, double-spent or reorganised away and dropped)."""
    confirmed: bool
    block_height: int | None
    block_hash: str | None
    in_mempool: bool


UNKNOWN_TX = TxStatus(False, None, None, False)
MEMPOOL_TX = TxStatus(False, None, None, True)


@dataclass(frozen=True)
class NodeState:
    """Can the node be believed right now? ``ready`` False while it is in initial block
    download (a reindex too) or its mempool is not loaded yet; ``reason`` says why (shown
    in the watcher's health). ``height`` is its active chain's height when known."""
    ready: bool
    reason: str | None = None
    height: int | None = None


READY = NodeState(True)


# --------------------------------------------------------------------------- errors

class BackendError(Exception):
    """The backend answered, but refused the request or answered nonsense."""


class BackendUnavailable(BackendError):
    """A passing failure: network error, timeout, 5xx, rate limit, node warming up.
    Retry later; `retry_after` (seconds) when the server said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BlockNotFound(BackendError):
    """The backend does not know a block with this hash."""


# --------------------------------------------------------------------------- interface

@runtime_checkable
class ChainBackend(Protocol):
    name: str

    def tip(self) -> BlockHeader:
        """The best block's header."""

    def block_hash_at(self, height: int) -> str | None:
        """The hash of the active chain's block at `height`; None above the tip."""

    def block(self, block_hash: str) -> Block:
        """The block with all its transactions' inputs and outputs (raises BlockNotFound)."""

    def mempool_txs(self, watched: Collection[str]) -> list[ChainTx]:
        """Unconfirmed transactions paying any of the `watched` addresses."""

    def tx_status(self, txid: str) -> TxStatus:
        """Where the transaction is now (see TxStatus)."""

    # Optional (the watcher falls back when a backend lacks them):
    #   node_state() -> NodeState   whether the node can be believed now (default READY)
    #   probe() -> None             one cheap request; raises BackendError while down
    #   best_hash() -> str          the tip's hash alone (default: tip().hash)

    def close(self) -> None:
        """Release connections and threads."""


# --------------------------------------------------------------------------- helpers

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_hash(value: object, what: str = "hash") -> str:
    """A 64-hex-digit txid or block hash, lower-cased; BackendError otherwise."""
    if not isinstance(value, str) or not _HEX64.match(value.lower()):
        raise BackendError(f"malformed {what}: {str(value)[:80]!r}")
    return value.lower()


def normalize_address(address: str) -> str:
    """Bech32 addresses compare in lower case (QR codes carry them upper-case); base58
    addresses are case-sensitive and stay as given."""
    text = address.strip()
    lower = text.lower()
    if lower.startswith(("bc1", "tb1", "bcrt1")) and (text == lower or text == text.upper()):
        return lower
    return text


def btc_to_sats(value: Decimal | str | int) -> int:
    """Exact BTC -> satoshis, for Bitcoin Core's JSON numbers parsed as Decimal.

    Refuses floats (parse with `json.loads(..., parse_float=Decimal)`), fractions of a
    satoshi, negative values, NaN/infinity and amounts above 21 million BTC.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("BTC amounts must be Decimal, str or int, never float")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a BTC amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a BTC amount: {value!r}")
    sats = amount * SATS_PER_BTC
    if sats != sats.to_integral_value():
        raise ValueError(f"{value} BTC is not a whole number of satoshis")
    result = int(sats)
    if result < 0 or result > MAX_MONEY_SATS:
        raise ValueError(f"{value} BTC is out of range")
    return result


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _pop_options(url: str, names: set[str]) -> tuple[str, dict[str, list[str]]]:
    """Split our own options (e.g. ?min_interval=0&cookie=...) off a URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query.items() if k in names}
    rest = [(k, item) for k, v in query.items() if k not in names for item in v]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def backend_from_spec(spec: str, *, demo_path: str | None = None,
                      network: str = "regtest") -> ChainBackend:
    """Build a backend from a BUSANPAY_CHAIN value.

    - ``demo``: the offline demo chain in `demo_path` (a SQLite file).
    - ``esplora:<base URL>``, e.g. ``esplora:https://mempool.space/testnet/api``. Options
      in the query: ``min_interval`` (seconds between requests; default 0.25, or 0 on
      127.0.0.1/localhost), ``concurrency`` (1-4 threads for block pages), ``timeout``.
    - ``bitcoind:<RPC URL>``, e.g. ``bitcoind:http://user:pass@127.0.0.1:18443`` or
      ``bitcoind:http://127.0.0.1:8332?cookie=/home/btc/.bitcoin/.cookie``; options
      ``timeout`` and ``zmq`` (repeatable, e.g. ``zmq=tcp://127.0.0.1:28332``: kept in
      ``backend.zmq_endpoints`` for a ZmqNotifier).
    """
    text = (spec or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind == "demo":
        if not demo_path:
            raise ValueError("the demo chain needs a file path (demo_path)")
        from chain.backends.demo import DemoChain

        return DemoChain(demo_path, network=network)
    if kind == "esplora":
        url, opts = _pop_options(rest, {"min_interval", "concurrency", "timeout"})
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"esplora needs an http(s) base URL, got {rest!r}")
        default_interval = 0.0 if _is_loopback(parts.hostname) else 0.25
        from chain.backends.esplora import EsploraBackend

        return EsploraBackend(
            url,
            min_interval=float(opts.get("min_interval", [default_interval])[0]),
            concurrency=int(opts.get("concurrency", [2])[0]),
            timeout=float(opts.get("timeout", [15])[0]),
        )
    if kind == "bitcoind":
        url, opts = _pop_options(rest, {"cookie", "timeout", "zmq"})
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("bitcoind needs an http(s) RPC URL, e.g. http://user:pass@127.0.0.1:8332")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        clean = urlunsplit(parts._replace(netloc=netloc))
        from chain.backends.bitcoind import BitcoindBackend

        backend = BitcoindBackend(
            clean, username=username, password=password,
            cookie_file=opts.get("cookie", [None])[0],
            timeout=float(opts.get("timeout", [30])[0]),
        )
        backend.zmq_endpoints = list(opts.get("zmq", []))
        return backend
    raise ValueError(f"unknown chain backend {spec!r}: use demo, esplora:<URL> or bitcoind:<URL>")
