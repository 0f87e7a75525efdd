"""The Esplora REST backend (electrs, blockstream.info, mempool.space).

Wire format: Blockstream/esplora API.md. Amounts are integer satoshis on the wire,
plain-text answers for /blocks/tip/*, /block-height/:h; JSON elsewhere.

Every request goes through one pacer (`min_interval` seconds between request starts,
shared by all threads) because public instances rate-limit per client. A 429 stops the
current operation at once with BackendUnavailable(retry_after=...).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Collection

import requests

from chain.backends import (
    UNKNOWN_TX, Block, BlockHeader, BackendError, BackendUnavailable, BlockNotFound,
    ChainTx, OutPoint, TxOutput, TxStatus, check_hash, normalize_address,
)

PAGE_SIZE = 25  # /block/:hash/txs/:start_index pages (electrs CHAIN_TXS_PER_PAGE)
COINBASE_VOUT = 0xFFFFFFFF


# --------------------------------------------------------------------------- parsing

def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackendError(f"esplora sent a non-integer {what}: {value!r}")
    return value


def parse_tx(obj: object) -> ChainTx:
    """An Esplora transaction object -> ChainTx (coinbase inputs left out)."""
    if not isinstance(obj, dict):
        raise BackendError("esplora sent a transaction that is not an object")
    try:
        txid = check_hash(obj["txid"], "txid")
        inputs = []
        for vin in obj["vin"]:
            if vin.get("is_coinbase") or (vin.get("vout") == COINBASE_VOUT
                                          and set(vin.get("txid", "")) == {"0"}):
                continue
            inputs.append(OutPoint(check_hash(vin["txid"], "input txid"), _int(vin["vout"], "vout")))
        outputs = []
        for n, vout in enumerate(obj["vout"]):
            value = _int(vout["value"], "output value")
            if value < 0:
                raise BackendError(f"esplora sent a negative output value {value}")
            address = vout.get("scriptpubkey_address")
            outputs.append(TxOutput(n, normalize_address(address) if address else None, value))
    except (KeyError, TypeError, AttributeError) as err:
        raise BackendError(f"esplora sent a malformed transaction ({err!r})") from None
    return ChainTx(txid, tuple(inputs), tuple(outputs))


def parse_block_header(obj: object) -> BlockHeader:
    """An Esplora block object (GET /block/:hash) -> BlockHeader."""
    if not isinstance(obj, dict):
        raise BackendError("esplora sent a block that is not an object")
    try:
        prev = obj.get("previousblockhash")
        return BlockHeader(
            height=_int(obj["height"], "height"),
            hash=check_hash(obj["id"], "block hash"),
            prev_hash=check_hash(prev, "previous block hash") if prev else None,
            time=_int(obj["timestamp"], "timestamp"),
            median_time=_int(obj["mediantime"], "mediantime") if obj.get("mediantime") is not None
            else None,
        )
    except KeyError as err:
        raise BackendError(f"esplora sent a block without {err}") from None


def parse_tx_status(obj: object) -> TxStatus:
    """GET /tx/:txid/status (or a tx's `status`) -> TxStatus. Unconfirmed means 'in the
    mempool' only if the tx itself was found; the caller checks that."""
    if not isinstance(obj, dict) or not isinstance(obj.get("confirmed"), bool):
        raise BackendError(f"esplora sent a malformed tx status: {str(obj)[:120]}")
    if obj["confirmed"]:
        return TxStatus(True, _int(obj.get("block_height"), "block_height"),
                        check_hash(obj.get("block_hash"), "block hash"), False)
    return TxStatus(False, None, None, True)


def parse_retry_after(value: str | None, *, now: Callable[[], datetime] | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date -> seconds (never negative)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(int(text)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now() if now else datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


# --------------------------------------------------------------------------- backend

class EsploraBackend:
    name = "esplora"

    def __init__(self, base_url: str, *, min_interval: float = 0.0, concurrency: int = 2,
                 timeout: float = 15.0, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        if not 1 <= int(concurrency) <= 4:
            raise ValueError("concurrency must be between 1 and 4")
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        self.base_url = base_url.rstrip("/")
        self.min_interval = float(min_interval)
        self.concurrency = int(concurrency)
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.headers.setdefault("User-Agent", "busanpay-watcher")
        self._sleep = sleep
        self._monotonic = monotonic
        self._pace_lock = threading.Lock()
        self._next_slot = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.requests_made = 0

    # -- HTTP ------------------------------------------------------------------------

    def _pace(self) -> None:
        if self.min_interval <= 0:
            return
        with self._pace_lock:
            now = self._monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.min_interval
        if slot > now:
            self._sleep(slot - now)

    def _get(self, path: str, *, not_found_ok: bool = False) -> requests.Response | None:
        self._pace()
        url = self.base_url + path
        try:
            response = self._session.get(url, timeout=self.timeout)
        except requests.Timeout:
            raise BackendUnavailable(f"esplora timed out after {self.timeout:g} s: GET {path}") from None
        except requests.RequestException as err:
            raise BackendUnavailable(f"esplora unreachable: GET {path}: {type(err).__name__}") from None
        finally:
            self.requests_made += 1
        status = response.status_code
        if status == 429:
            retry = parse_retry_after(response.headers.get("Retry-After"))
            raise BackendUnavailable(f"esplora rate limit (429) on GET {path}", retry_after=retry)
        if status >= 500:
            retry = parse_retry_after(response.headers.get("Retry-After"))
            raise BackendUnavailable(f"esplora server error {status} on GET {path}: "
                                     f"{response.text[:200].strip()}", retry_after=retry)
        if status == 404 and not_found_ok:
            return None
        if status == 404:
            raise BackendError(f"esplora: not found (404): GET {path}: {response.text[:200].strip()}")
        if status != 200:
            raise BackendError(f"esplora answered {status} on GET {path}: {response.text[:200].strip()}")
        return response

    def _json(self, path: str, *, not_found_ok: bool = False):
        response = self._get(path, not_found_ok=not_found_ok)
        if response is None:
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            # A proxy's HTML error page or a truncated answer: passing, try again later.
            raise BackendUnavailable(f"esplora sent something that is not JSON on GET {path}") from None

    def _text(self, path: str, *, not_found_ok: bool = False) -> str | None:
        response = self._get(path, not_found_ok=not_found_ok)
        return None if response is None else response.text.strip()

    # -- interface -------------------------------------------------------------------

    def tip(self) -> BlockHeader:
        tip_hash = check_hash(self._text("/blocks/tip/hash"), "tip hash")
        return self._header(tip_hash)

    def best_hash(self) -> str:
        return check_hash(self._text("/blocks/tip/hash"), "tip hash")

    def probe(self) -> None:
        self._text("/blocks/tip/height")

    def _header(self, block_hash: str) -> BlockHeader:
        return parse_block_header(self._block_info(block_hash))

    def _block_info(self, block_hash: str) -> dict:
        info = self._json(f"/block/{block_hash}", not_found_ok=True)
        if info is None:
            raise BlockNotFound(f"esplora does not know block {block_hash}")
        return info

    def block_hash_at(self, height: int) -> str | None:
        if height < 0:
            return None
        text = self._text(f"/block-height/{int(height)}", not_found_ok=True)
        return None if text is None else check_hash(text, "block hash")

    def block(self, block_hash: str) -> Block:
        block_hash = check_hash(block_hash, "block hash")
        info = self._block_info(block_hash)
        header = parse_block_header(info)
        tx_count = _int(info.get("tx_count"), "tx_count")
        starts = list(range(0, tx_count, PAGE_SIZE))

        def page(start: int) -> list[ChainTx]:
            items = self._json(f"/block/{block_hash}/txs/{start}")
            if not isinstance(items, list):
                raise BackendError("esplora sent a block page that is not a list")
            return [parse_tx(item) for item in items]

        if len(starts) <= 1 or self.concurrency == 1:
            pages = [page(start) for start in starts]
        else:
            pages = list(self._executor().map(page, starts))
        txs = tuple(tx for items in pages for tx in items)
        if len(txs) != tx_count:
            raise BackendUnavailable(
                f"esplora gave {len(txs)} transactions for block {block_hash} of {tx_count}")
        return Block(header, txs)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="esplora")
            return self._pool

    def mempool_txs(self, watched: Collection[str]) -> list[ChainTx]:
        """One request per watched address (GET /address/:addr/txs/mempool), paced. A 429
        stops the round and raises BackendUnavailable with the server's Retry-After."""
        wanted = {normalize_address(a) for a in watched}
        found: dict[str, ChainTx] = {}
        for address in sorted(wanted):
            items = self._json(f"/address/{address}/txs/mempool")
            if not isinstance(items, list):
                raise BackendError("esplora sent an address history that is not a list")
            for item in items:
                tx = parse_tx(item)
                status = item.get("status") if isinstance(item, dict) else None
                if isinstance(status, dict) and status.get("confirmed"):
                    continue  # confirmed in between: the block walk will see it
                if tx.txid not in found and tx.pays(wanted):
                    found[tx.txid] = tx
        return list(found.values())

    def tx_status(self, txid: str) -> TxStatus:
        txid = check_hash(txid, "txid")
        data = self._json(f"/tx/{txid}/status", not_found_ok=True)
        if data is None:
            return UNKNOWN_TX
        status = parse_tx_status(data)
        if status.confirmed:
            return status
        # electrs answers {"confirmed": false} for txids it has never seen, too: only the
        # transaction itself tells "in the mempool" from "unknown / gone".
        tx = self._json(f"/tx/{txid}", not_found_ok=True)
        if tx is None:
            return UNKNOWN_TX
        inner = tx.get("status") if isinstance(tx, dict) else None
        return parse_tx_status(inner) if isinstance(inner, dict) else TxStatus(False, None, None, True)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self._session.close()

    def __repr__(self) -> str:
        return f"EsploraBackend({self.base_url!r})"
