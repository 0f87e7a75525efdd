"""The Bitcoin Core JSON-RPC backend.

Answers are parsed with `json.loads(..., parse_float=Decimal)` and BTC amounts are
converted exactly (`btc_to_sats`): never a float on the money path.

Core reports RPC errors as `{"result": null, "error": {"code", "message"}, "id"}`,
with HTTP 500 (404 for an unknown method) in its legacy JSON-RPC 1.x mode, or with
HTTP 200 for JSON-RPC 2.0 requests (Core 28+); both are handled. 401 means wrong
credentials (the password is never logged or put in a message).

Mempool strategy: `getrawmempool` lists txids; only txids not seen before are fetched
(`getrawtransaction txid true`, in JSON-RPC batches), and a bounded cache keeps what
was fetched. `tx_status` works without -txindex for transactions this backend has
seen in a block (it remembers, boundedly, which block held them). The transactions that
pay a watched address carry the node's first-seen time (`getmempoolentry` ``time``,
asked once per transaction, in one batch).

What the watcher believes (`node_state`): nothing while `getblockchaininfo` says
``initialblockdownload`` (a fresh node or a ``-reindex``: the tip climbs from 0) or
`getmempoolinfo` says the mempool is not ``loaded`` yet (after a restart). Extra fields of
newer Cores (v29+ ``target``, v30+ ``coinbase_tx``, v31's cluster-mempool ``chunkweight``
and ``fees.chunk``) are ignored.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Collection, Iterable

import requests

from chain.backends import (
    MEMPOOL_TX, UNKNOWN_TX, Block, BlockHeader, BackendError, BackendUnavailable, BlockNotFound,
    ChainTx, NodeState, OutPoint, TxOutput, TxStatus, btc_to_sats, check_hash, normalize_address,
)

RPC_MISC_ERROR = -1
RPC_INVALID_ADDRESS_OR_KEY = -5   # block / tx not found
RPC_INVALID_PARAMETER = -8        # getblockhash: height out of range
RPC_IN_WARMUP = -28
RPC_METHOD_NOT_FOUND = -32601

_TRANSIENT_CODES = {RPC_IN_WARMUP, -9, -10}  # warming up, not connected, initial download


class RpcError(BackendError):
    """Bitcoin Core answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, method: str):
        super().__init__(f"bitcoind {method}: error {code}: {message}")
        self.code = code
        self.rpc_message = message
        self.method = method


# --------------------------------------------------------------------------- parsing

def loads(text: str | bytes):
    """JSON with every non-integer number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


def _address_of(script_pubkey: dict) -> str | None:
    address = script_pubkey.get("address")
    if address is None:  # Core < 22: "addresses": [one] for standard scripts
        many = script_pubkey.get("addresses")
        if isinstance(many, list) and len(many) == 1:
            address = many[0]
    return normalize_address(address) if isinstance(address, str) and address else None


def parse_tx(obj: object) -> ChainTx:
    """A decoded transaction (getblock verbosity 2, getrawtransaction verbose) -> ChainTx."""
    if not isinstance(obj, dict):
        raise BackendError("bitcoind sent a transaction that is not an object")
    try:
        txid = check_hash(obj["txid"], "txid")
        inputs = tuple(
            OutPoint(check_hash(vin["txid"], "input txid"), int(vin["vout"]))
            for vin in obj["vin"] if "coinbase" not in vin
        )
        outputs = []
        for position, vout in enumerate(obj["vout"]):
            n = vout.get("n", position)
            if isinstance(n, bool) or not isinstance(n, int):
                raise BackendError(f"bitcoind sent a non-integer output index {n!r}")
            value = vout["value"]
            if not isinstance(value, (Decimal, int)) or isinstance(value, bool):
                raise BackendError(f"bitcoind sent a non-numeric amount {value!r}")
            try:
                sats = btc_to_sats(value)
            except ValueError as err:
                raise BackendError(f"bitcoind sent a bad amount: {err}") from None
            outputs.append(TxOutput(n, _address_of(vout.get("scriptPubKey") or {}), sats))
    except (KeyError, TypeError, AttributeError) as err:
        raise BackendError(f"bitcoind sent a malformed transaction ({err!r})") from None
    return ChainTx(txid, inputs, tuple(outputs))


def parse_header(obj: object) -> BlockHeader:
    """getblockheader / getblock (any verbosity >= 1) -> BlockHeader."""
    if not isinstance(obj, dict):
        raise BackendError("bitcoind sent a block header that is not an object")
    try:
        prev = obj.get("previousblockhash")
        median = obj.get("mediantime")
        return BlockHeader(
            height=int(obj["height"]),
            hash=check_hash(obj["hash"], "block hash"),
            prev_hash=check_hash(prev, "previous block hash") if prev else None,
            time=int(obj["time"]),
            median_time=int(median) if isinstance(median, int) and not isinstance(median, bool)
            else None,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise BackendError(f"bitcoind sent a malformed block header ({err!r})") from None


# --------------------------------------------------------------------------- backend

class BitcoindBackend:
    name = "bitcoind"

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 cookie_file: str | None = None, timeout: float = 30.0,
                 cache_size: int = 100_000, hint_size: int = 50_000, batch_size: int = 100,
                 session: requests.Session | None = None):
        self.url = url
        self.timeout = timeout
        self.cookie_file = cookie_file
        self._username = username
        self._password = password
        if cookie_file is None and username is None:
            raise ValueError("bitcoind needs credentials: user:password in the URL or a cookie file")
        self._session = session or requests.Session()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, ChainTx] = OrderedDict()   # mempool txs fetched
        self._cache_size = cache_size
        self._times: dict[str, int] = {}                          # mempool txid -> first seen
        self._hints: OrderedDict[str, str] = OrderedDict()       # txid -> block hash seen in
        self._hint_size = hint_size
        self._batch_size = batch_size
        self.zmq_endpoints: list[str] = []
        self.rpc_calls = 0

    # -- credentials -------------------------------------------------------------------

    def _auth(self, *, reread: bool = False) -> tuple[str, str]:
        if self.cookie_file is not None and (self._password is None or reread):
            try:
                text = Path(self.cookie_file).read_text().strip()
            except OSError as err:
                raise BackendUnavailable(
                    f"cannot read the bitcoind cookie file {self.cookie_file}: {err.strerror}") from None
            user, sep, secret = text.partition(":")
            if not sep:
                raise BackendError(f"the bitcoind cookie file {self.cookie_file} is malformed")
            self._username, self._password = user, secret
        return self._username or "", self._password or ""

    # -- transport -----------------------------------------------------------------------

    def _post(self, payload) -> requests.Response:
        body = json.dumps(payload)
        for attempt in (0, 1):
            try:
                response = self._session.post(
                    self.url, data=body, auth=self._auth(reread=attempt == 1),
                    headers={"Content-Type": "application/json"}, timeout=self.timeout)
            except requests.Timeout:
                raise BackendUnavailable(f"bitcoind timed out after {self.timeout:g} s") from None
            except requests.RequestException as err:
                raise BackendUnavailable(f"bitcoind unreachable at {self.url}: {type(err).__name__}") from None
            finally:
                self.rpc_calls += 1
            if response.status_code == 401 and attempt == 0 and self.cookie_file is not None:
                continue  # the node restarted and wrote a new cookie: read it again
            break
        if response.status_code == 401:
            source = f"cookie file {self.cookie_file}" if self.cookie_file else f"user {self._username!r}"
            raise BackendUnavailable(
                f"bitcoind refused the RPC credentials (HTTP 401, {source}): check rpcauth/"
                "rpcuser/rpcpassword or the cookie file path")
        if response.status_code == 403:
            raise BackendUnavailable("bitcoind forbids this client (HTTP 403): check rpcallowip/rpcwhitelist")
        return response

    def _decode(self, response: requests.Response):
        try:
            return loads(response.content)
        except ValueError:
            # An empty 500 (e.g. a work queue overflow), a proxy's HTML page, a cut answer.
            raise BackendUnavailable(
                f"bitcoind HTTP {response.status_code} without JSON: {response.text[:120].strip()!r}"
            ) from None

    @staticmethod
    def _check(reply, method: str, status: int):
        if not isinstance(reply, dict):
            raise BackendError(f"bitcoind {method}: malformed reply")
        error = reply.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            if code in _TRANSIENT_CODES:
                raise BackendUnavailable(f"bitcoind {method}: {message} ({code})")
            raise RpcError(int(code) if isinstance(code, int) else RPC_MISC_ERROR, message, method)
        if status != 200:
            raise BackendUnavailable(f"bitcoind {method}: HTTP {status} without an error object")
        if "result" not in reply:
            raise BackendError(f"bitcoind {method}: reply without a result")
        return reply["result"]

    def call(self, method: str, *params):
        """One JSON-RPC call; the result, or RpcError / BackendUnavailable."""
        payload = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        response = self._post(payload)
        reply = self._decode(response)
        return self._check(reply, method, response.status_code)

    def batch(self, calls: Iterable[tuple[str, list]]) -> list:
        """Several calls in one JSON-RPC batch; each item a result or an RpcError."""
        calls = list(calls)
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [{"jsonrpc": "1.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, calls)]
        response = self._post(payload)
        replies = self._decode(response)
        if not isinstance(replies, list):
            # Some errors (e.g. a parse error) come back as one object for the whole batch.
            self._check(replies, "batch", response.status_code)
            raise BackendError("bitcoind answered a batch with a single object")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        results = []
        for i, (method, _) in zip(ids, calls):
            reply = by_id.get(i)
            if reply is None:
                raise BackendError(f"bitcoind batch: no reply for {method}")
            try:
                results.append(self._check(reply, method, 200))
            except RpcError as err:
                results.append(err)
        return results

    # -- interface -------------------------------------------------------------------

    def tip(self) -> BlockHeader:
        best = check_hash(self.call("getbestblockhash"), "best block hash")
        return parse_header(self.call("getblockheader", best, True))

    def best_hash(self) -> str:
        return check_hash(self.call("getbestblockhash"), "best block hash")

    def probe(self) -> None:
        """The cheapest question (while the node is down the watcher asks it often)."""
        self.call("getblockcount")

    def node_state(self) -> NodeState:
        """Initial block download (or a reindex) and the mempool's loading, in one batch."""
        results = self.batch([("getblockchaininfo", []), ("getmempoolinfo", [])])
        for result in results:
            if isinstance(result, RpcError):
                raise result
        chain, pool = results
        if not isinstance(chain, dict) or not isinstance(pool, dict):
            raise BackendError("bitcoind getblockchaininfo/getmempoolinfo: not objects")
        height = chain.get("blocks")
        height = height if isinstance(height, int) and not isinstance(height, bool) else None
        if chain.get("initialblockdownload") is True:
            return NodeState(False, f"the node is in initial block download (height {height} "
                                    f"of {chain.get('headers')} headers)", height)
        if pool.get("loaded") is False:
            return NodeState(False, "the node is still loading its mempool", height)
        return NodeState(True, None, height)

    def block_hash_at(self, height: int) -> str | None:
        if height < 0:
            return None
        try:
            return check_hash(self.call("getblockhash", int(height)), "block hash")
        except RpcError as err:
            if err.code == RPC_INVALID_PARAMETER:
                return None
            raise

    def block(self, block_hash: str) -> Block:
        block_hash = check_hash(block_hash, "block hash")
        try:
            data = self.call("getblock", block_hash, 2)
        except RpcError as err:
            if err.code == RPC_INVALID_ADDRESS_OR_KEY:
                raise BlockNotFound(f"bitcoind does not know block {block_hash}") from None
            raise
        header = parse_header(data)
        if not isinstance(data.get("tx"), list):
            raise BackendError("bitcoind getblock: no transaction list (verbosity 2 unsupported?)")
        txs = tuple(parse_tx(item) for item in data["tx"])
        with self._lock:
            for tx in txs:
                self._hints[tx.txid] = block_hash
                self._hints.move_to_end(tx.txid)
            while len(self._hints) > self._hint_size:
                self._hints.popitem(last=False)
        return Block(header, txs)

    def mempool_txs(self, watched: Collection[str]) -> list[ChainTx]:
        wanted = {normalize_address(a) for a in watched}
        txids = self.call("getrawmempool", False)
        if not isinstance(txids, list):
            raise BackendError("bitcoind getrawmempool: not a list")
        current = [check_hash(t, "txid") for t in txids]
        with self._lock:
            missing = [t for t in current if t not in self._cache]
        fetched: dict[str, ChainTx] = {}
        for start in range(0, len(missing), self._batch_size):
            chunk = missing[start:start + self._batch_size]
            results = self.batch(("getrawtransaction", [t, True]) for t in chunk)
            for txid, result in zip(chunk, results):
                if isinstance(result, RpcError):
                    if result.code == RPC_INVALID_ADDRESS_OR_KEY:
                        continue  # left the mempool in between (mined, replaced, evicted)
                    raise result
                fetched[txid] = parse_tx(result)
        with self._lock:
            self._cache.update(fetched)
            present = set(current)
            for stale in [t for t in self._cache if t not in present]:
                del self._cache[stale]
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            in_pool = [self._cache.get(t) or fetched.get(t) for t in current]
            for gone in [t for t in self._times if t not in present]:
                del self._times[gone]
        paying = [tx for tx in in_pool if tx is not None and tx.pays(wanted)]
        return self._with_times(paying)

    def _with_times(self, txs: list[ChainTx]) -> list[ChainTx]:
        """Each tx with the node's first-seen time (asked once per tx; a tx that left the
        mempool in between keeps None)."""
        with self._lock:
            unknown = [tx.txid for tx in txs if tx.txid not in self._times]
        for start in range(0, len(unknown), self._batch_size):
            chunk = unknown[start:start + self._batch_size]
            for txid, entry in zip(chunk, self.batch(("getmempoolentry", [t]) for t in chunk)):
                if isinstance(entry, RpcError):
                    if entry.code == RPC_INVALID_ADDRESS_OR_KEY:
                        continue
                    raise entry
                seen = entry.get("time") if isinstance(entry, dict) else None
                if isinstance(seen, int) and not isinstance(seen, bool) and seen > 0:
                    with self._lock:
                        self._times[txid] = seen
        with self._lock:
            return [dataclasses.replace(tx, first_seen=self._times.get(tx.txid)) for tx in txs]

    def tx_status(self, txid: str) -> TxStatus:
        txid = check_hash(txid, "txid")
        try:
            self.call("getmempoolentry", txid)
            return MEMPOOL_TX
        except RpcError as err:
            if err.code != RPC_INVALID_ADDRESS_OR_KEY:
                raise
        block_hash = None
        try:
            raw = self.call("getrawtransaction", txid, True)
            block_hash = raw.get("blockhash") if isinstance(raw, dict) else None
            if block_hash is None:
                return MEMPOOL_TX  # entered the mempool between the two calls
        except RpcError as err:
            if err.code != RPC_INVALID_ADDRESS_OR_KEY:
                raise
            with self._lock:
                hint = self._hints.get(txid)
            if hint is None:
                return UNKNOWN_TX   # without -txindex Core only finds mempool txs
            try:
                self.call("getrawtransaction", txid, True, hint)
                block_hash = hint
            except RpcError as err2:
                if err2.code in (RPC_INVALID_ADDRESS_OR_KEY, RPC_MISC_ERROR):
                    return UNKNOWN_TX
                raise
        header = self.call("getblockheader", check_hash(block_hash, "block hash"), True)
        if int(header.get("confirmations", -1)) < 1:
            return UNKNOWN_TX   # its block was reorganised away and it is not in the mempool
        return TxStatus(True, int(header["height"]), header["hash"].lower(), False)

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"BitcoindBackend({self.url!r})"
