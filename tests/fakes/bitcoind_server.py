"""A fake Bitcoin Core JSON-RPC server, over real HTTP on 127.0.0.1.

Serves a `ChainModel` with Core's shapes: amounts as JSON numbers with exactly eight
decimals (e.g. 0.00000001, 20999999.97690000), getblock verbosity 1/2, getblockheader,
getrawtransaction verbose (with or without -txindex, or with a block hash),
getmempoolentry, getrawmempool, getblockchaininfo; basic auth (user/password or a
cookie file); batch requests; Core's error objects with legacy HTTP statuses (500, 404
for unknown methods) for JSON-RPC 1.x requests and HTTP 200 for "jsonrpc": "2.0".

    with FakeBitcoind() as node:                    # node.url has no credentials
        backend = BitcoindBackend(node.url, username=node.user, password=node.password)
        node.chain.add_mempool_tx([(address, 1)])
        node.rpc_error("getblockhash", -28, "Loading block index...", times=1)
        node.fail(503, times=1)
    with FakeBitcoind(cookie_dir=tmp_path) as node:   # node.cookie_file
        node.rotate_cookie()                          # as on a node restart

What a real node does around a restart (seen on Bitcoin Core v31 regtest):

    node.stop(); node.start()            # down (connection refused), then up on the same port
    node.crash(lose_blocks=31)           # SIGKILL: unflushed blocks and the mempool are lost
    node.boot()                          # -28 "Loading block index…", "Verifying blocks…",
                                         # "Loading wallet…", then the mempool loads
                                         # (getmempoolinfo.loaded false, then true)
    node.boot(reindex=True, ibd_pace=3)  # -reindex: initialblockdownload true and a tip that
                                         # climbs back from 0 (a block every ibd_pace
                                         # requests), then the mempool loads
    node.on("getrawmempool", fn)         # run fn just before the next answer (a block
                                         # arriving between two calls of one pass)

Core v29-v31's extra fields are served too: ``target`` (headers, getblockchaininfo),
``coinbase_tx`` (getblock), cluster-mempool ``chunkweight`` and ``fees.chunk``
(mempool entries); coinbase inputs have sequence 4294967294.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.fakes.chain_model import ChainModel, ModelBlock, ModelTx, core_script, descriptor_checksum

COIN = 100_000_000
WARMUP = ("Loading block index…", "Verifying blocks…", "Loading wallet…")
REGTEST_TARGET = "7fffff" + "0" * 58


class _Amount:
    """Satoshis written as a BTC JSON number with eight decimals, the way Core does."""

    def __init__(self, sats: int):
        self.sats = sats

    def text(self) -> str:
        sign = "-" if self.sats < 0 else ""
        whole, frac = divmod(abs(self.sats), COIN)
        return f"{sign}{whole}.{frac:08d}"


def dumps(value) -> str:
    if isinstance(value, _Amount):
        return value.text()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


class RpcFault(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Failure:
    status: int
    body: bytes
    times: int | None


class FakeBitcoind:
    def __init__(self, chain: ChainModel | None = None, *, user: str = "busan",
                 password: str | None = None, cookie_dir: str | Path | None = None,
                 txindex: bool = False, error_style: str = "by-request"):
        """error_style: "by-request" (Core 28+: JSON-RPC 2.0 requests get HTTP 200 errors,
        others legacy), "legacy" (HTTP 500/404 always) or "v2" (HTTP 200 always)."""
        self.chain = chain or ChainModel()
        self.error_style = error_style
        self.txindex = txindex
        self.user = user
        self.password = password or secrets.token_urlsafe(16)
        self.cookie_file: str | None = None
        if cookie_dir is not None:
            self.cookie_file = str(Path(cookie_dir) / ".cookie")
            self.rotate_cookie()
        self.calls: list[str] = []
        self._failures: list[_Failure] = []
        self._rpc_errors: dict[str, list] = {}
        self._delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self.stopped = False
        self._warmup: list[str] = []
        self._warmup_each = 1
        self._warmup_left = 0
        self._ibd: list[ModelBlock] = []          # blocks a reindex has not reached yet
        self.ibd_pace = 3
        self._ibd_requests = 0
        self._mempool_loading = 0                 # getmempoolinfo answers still loading
        self._warmup_until: float | None = None   # or by the clock (monotonic seconds)
        self._warmup_seconds: float | None = None
        self._loaded_at: float | None = None
        self.ready_at: float | None = None        # when the last boot's node was ready
        self._hooks: dict[str, list] = {}
        self.started_at = time.time()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FakeBitcoind":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(self._address or ("127.0.0.1", 0), Handler)
        self._address = self._server.server_address[:2]
        self.stopped = False
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-bitcoind")
        self._thread.start()
        return self

    def stop(self) -> None:
        """The node goes away: connections are refused (kept-alive ones are dropped)."""
        self.stopped = True
        self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "FakeBitcoind":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._address is not None, "start the fake first"
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def url_with_credentials(self) -> str:
        host, port = self._address
        return f"http://{self.user}:{self.password}@{host}:{port}"

    # -- a node's life ---------------------------------------------------------------------

    def crash(self, *, lose_blocks: int = 0, mempool: bool = True) -> list[str]:
        """SIGKILL: the node stops; its last `lose_blocks` blocks (never flushed) and, with
        `mempool`, its mempool are lost. Returns the lost block hashes."""
        self.stop()
        return self.chain.lose_blocks(lose_blocks, mempool=mempool)

    def boot(self, *, warmup: tuple[str, ...] = WARMUP, warmup_each: int = 1,
             reindex: bool = False, ibd_pace: int = 3, mempool_loading: int = 2,
             warmup_seconds: float | None = None, mempool_seconds: float | None = None) -> None:
        """Start again the way bitcoind does: every request first gets -28 with each
        `warmup` message in turn (`warmup_each` requests each); with `reindex` the chain is
        rebuilt from genesis (initialblockdownload true, one block more every `ibd_pace`
        requests: slower than a watcher's pass, as a real reindex is; do not mine until it
        is done); then the mempool loads (`mempool_loading` getmempoolinfo answers with
        loaded false, while getrawmempool answers nothing). With
        `warmup_seconds` / `mempool_seconds` those phases last that long on the clock
        instead (benchmarks: `ready_at` is when the node was ready)."""
        with self._lock, self.chain.lock:
            self._warmup, self._warmup_each = list(warmup), max(1, warmup_each)
            self._warmup_left = self._warmup_each
            if reindex:
                self._ibd = self.chain.blocks[1:]
                del self.chain.blocks[1:]
                for block in self._ibd:
                    block.active = False
            self.ibd_pace = max(1, ibd_pace)
            self._ibd_requests = 0
            self._mempool_loading = mempool_loading
            self.started_at = time.time()
            now = time.monotonic()
            self._warmup_until = now + warmup_seconds if warmup_seconds is not None else None
            self._warmup_seconds = warmup_seconds
            self._loaded_at = (self._warmup_until or now) + mempool_seconds \
                if mempool_seconds is not None else None
            if mempool_seconds is not None:
                self._mempool_loading = 0
            self.ready_at = self._loaded_at or self._warmup_until or now
        if self.cookie_file:
            self.rotate_cookie()
        self.start()

    def restart(self, *, lose_blocks: int = 0, mempool: bool = True, **boot) -> list[str]:
        lost = self.crash(lose_blocks=lose_blocks, mempool=mempool)
        self.boot(**boot)
        return lost

    def on(self, method: str, action) -> None:
        """Run `action()` once, just before the next answer to `method`."""
        with self._lock:
            self._hooks.setdefault(method, []).append(action)

    @property
    def in_ibd(self) -> bool:
        return bool(self._ibd)

    @property
    def mempool_loaded(self) -> bool:
        if self._loaded_at is not None and time.monotonic() < self._loaded_at:
            return False
        return not self._ibd and self._mempool_loading <= 0

    def _warming(self) -> str | None:
        with self._lock:
            if self._warmup_until is not None:
                left = self._warmup_until - time.monotonic()
                if left <= 0 or not self._warmup:
                    return None
                done = 1 - left / self._warmup_seconds if self._warmup_seconds else 0
                return self._warmup[min(len(self._warmup) - 1, int(done * len(self._warmup)))]
            if not self._warmup:
                return None
            message = self._warmup[0]
            self._warmup_left -= 1
            if self._warmup_left <= 0:
                self._warmup.pop(0)
                self._warmup_left = self._warmup_each
            return message

    def _reindex_step(self) -> None:
        """A reindexing node connects another block every few questions."""
        self._ibd_requests += 1
        if self._ibd and self._ibd_requests % self.ibd_pace == 0:
            block = self._ibd.pop(0)
            block.active = True
            self.chain.blocks.append(block)

    # -- controls --------------------------------------------------------------------------

    def rotate_cookie(self) -> None:
        """Write a new cookie (as bitcoind does at each start); the old one stops working."""
        assert self.cookie_file
        self._cookie_secret = secrets.token_hex(32)
        Path(self.cookie_file).write_text(f"__cookie__:{self._cookie_secret}")

    def fail(self, status: int, *, body: str | bytes = b"", times: int | None = None) -> None:
        """Answer HTTP `status` with `body` (no JSON) to the next `times` requests."""
        with self._lock:
            self._failures.append(_Failure(status, body.encode() if isinstance(body, str) else body, times))

    def rpc_error(self, method: str, code: int, message: str, *, times: int | None = 1) -> None:
        """Make `method` answer with an RPC error object."""
        with self._lock:
            self._rpc_errors.setdefault(method, []).append([code, message, times])

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
            self._rpc_errors.clear()
        self._delay = 0.0

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.pop(0)
            return failure

    def _take_rpc_error(self, method: str):
        with self._lock:
            queue = self._rpc_errors.get(method)
            if not queue:
                return None
            entry = queue[0]
            if entry[2] is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    queue.pop(0)
            return RpcFault(entry[0], entry[1])

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if self.cookie_file:
            if user == "__cookie__" and password == self._cookie_secret:
                return True
        return user == self.user and password == self.password

    # -- JSON shapes -----------------------------------------------------------------------

    def _script_pubkey(self, script: bytes) -> dict:
        kind, asm = core_script(script)
        address = self.chain.address_of(script)
        desc = f"addr({address})" if address else f"raw({script.hex()})"
        result = {"asm": asm, "desc": f"{desc}#{descriptor_checksum(desc)}", "hex": script.hex()}
        if address:
            result["address"] = address
        result["type"] = kind
        return result

    def tx_json(self, tx: ModelTx, *, with_fee: bool = False) -> dict:
        vin = []
        for item in tx.inputs:
            if item.is_coinbase:
                entry = {"coinbase": item.script_sig.hex()}
            else:
                entry = {"txid": item.txid, "vout": item.vout,
                         "scriptSig": {"asm": "", "hex": item.script_sig.hex()}}
            if item.witness:
                entry["txinwitness"] = [w.hex() for w in item.witness]
            entry["sequence"] = item.sequence
            vin.append(entry)
        result = {"txid": tx.txid, "hash": tx.wtxid, "version": tx.version, "size": tx.size,
                  "vsize": tx.vsize, "weight": tx.weight, "locktime": tx.locktime, "vin": vin,
                  "vout": [{"value": _Amount(o.value), "n": n, "scriptPubKey": self._script_pubkey(o.script)}
                           for n, o in enumerate(tx.outputs)]}
        if with_fee and not tx.is_coinbase:
            result["fee"] = _Amount(tx.fee)
        result["hex"] = "02000000" + secrets.token_hex(8)  # stands in for the raw transaction
        return result

    def header_json(self, block: ModelBlock) -> dict:
        result = {"hash": block.hash, "confirmations": self.chain.confirmations(block),
                  "height": block.height, "version": block.version,
                  "versionHex": f"{block.version:08x}", "merkleroot": block.merkle_root,
                  "time": block.time, "mediantime": block.mediantime, "nonce": block.nonce,
                  "bits": block.bits, "difficulty": 4.656542373906925e-10,
                  "target": REGTEST_TARGET,
                  "chainwork": f"{2 * (block.height + 1):064x}", "nTx": len(block.txids)}
        if block.prev_hash:
            result["previousblockhash"] = block.prev_hash
        following = self.chain.next_hash(block)
        if following:
            result["nextblockhash"] = following
        return result

    def _block(self, block_hash: str) -> ModelBlock:
        _check_hash(block_hash, "blockhash")
        block = self.chain.all_blocks.get(block_hash)
        if block is None:
            raise RpcFault(-5, "Block not found")
        return block

    # -- methods ---------------------------------------------------------------------------

    def call(self, method: str, params: list):
        chain = self.chain
        with chain.lock:
            if self._ibd:
                self._reindex_step()
            if method == "getblockchaininfo":
                tip = chain.tip
                headers = tip.height + len(self._ibd)
                return {"chain": "regtest", "blocks": tip.height, "headers": headers,
                        "bestblockhash": tip.hash, "bits": "207fffff", "target": REGTEST_TARGET,
                        "difficulty": 4.656542373906925e-10,
                        "time": tip.time, "mediantime": tip.mediantime,
                        "verificationprogress": 1 if not self._ibd else tip.height / headers,
                        "initialblockdownload": bool(self._ibd),
                        "chainwork": f"{2 * (tip.height + 1):064x}", "size_on_disk": 293 * (tip.height + 1),
                        "pruned": False, "warnings": []}
            if method == "getbestblockhash":
                return chain.tip.hash
            if method == "getblockcount":
                return chain.tip.height
            if method == "getmempoolinfo":
                loaded = self.mempool_loaded
                if not self._ibd and self._mempool_loading > 0:
                    self._mempool_loading -= 1
                pool = [chain.txs[t] for t in chain.mempool()] if loaded else []
                return {"loaded": loaded, "size": len(pool),
                        "bytes": sum(t.vsize for t in pool), "usage": 1_000 * len(pool),
                        "total_fee": _Amount(sum(t.fee for t in pool)), "maxmempool": 300_000_000,
                        "mempoolminfee": _Amount(100), "minrelaytxfee": _Amount(100),
                        "incrementalrelayfee": _Amount(100), "unbroadcastcount": 0,
                        "fullrbf": True}
            if method == "getblockhash":
                height = params[0]
                block = chain.block_at(height) if isinstance(height, int) else None
                if block is None:
                    raise RpcFault(-8, "Block height out of range")
                return block.hash
            if method == "getblockheader":
                block = self._block(params[0])
                if len(params) > 1 and params[1] is False:
                    return "00" * 80
                return self.header_json(block)
            if method == "getblock":
                block = self._block(params[0])
                verbosity = params[1] if len(params) > 1 else 1
                if verbosity == 0:
                    return "00" * 80
                result = self.header_json(block)
                result.update({"strippedsize": block.size - 100, "size": block.size, "weight": block.weight})
                coinbase = chain.txs[block.txids[0]]
                result["coinbase_tx"] = {
                    "version": coinbase.version, "locktime": coinbase.locktime,
                    "sequence": coinbase.inputs[0].sequence,
                    "coinbase": coinbase.inputs[0].script_sig.hex(),
                    "witness": coinbase.inputs[0].witness[0].hex()}
                if verbosity == 1:
                    result["tx"] = list(block.txids)
                else:
                    result["tx"] = [self.tx_json(chain.txs[t], with_fee=True) for t in block.txids]
                return result
            if method == "getrawmempool":
                pool = chain.mempool() if self.mempool_loaded else []
                if params and params[0]:
                    return {t: self._mempool_entry(chain.txs[t]) for t in pool}
                return pool
            if method == "getmempoolentry":
                _check_hash(params[0], "txid")
                tx = chain.txs.get(params[0])
                if tx is None or tx.state != "mempool" or not self.mempool_loaded:
                    raise RpcFault(-5, "Transaction not in mempool")
                return self._mempool_entry(tx)
            if method == "getrawtransaction":
                return self._getrawtransaction(*params)
            if method == "uptime":
                return int(time.time() - self.started_at)
        raise RpcFault(-32601, "Method not found")

    def _mempool_entry(self, tx: ModelTx) -> dict:
        return {"vsize": tx.vsize, "weight": tx.weight, "time": tx.first_seen,
                "height": self.chain.tip.height, "descendantcount": 1, "descendantsize": tx.vsize,
                "ancestorcount": 1, "ancestorsize": tx.vsize, "chunkweight": tx.weight,
                "wtxid": tx.wtxid,
                "fees": {"base": _Amount(tx.fee), "modified": _Amount(tx.fee),
                         "ancestor": _Amount(tx.fee), "descendant": _Amount(tx.fee),
                         "chunk": _Amount(tx.fee)},
                "depends": [], "spentby": [], "bip125-replaceable": True, "unbroadcast": False}

    def _getrawtransaction(self, txid, verbose=False, blockhash=None):
        _check_hash(txid, "parameter 1")
        chain = self.chain
        tx = chain.txs.get(txid)
        if blockhash is not None:
            block = self._block(blockhash)
            if txid not in block.txids:
                raise RpcFault(-5, "No such transaction found in the provided block. "
                                   "Use gettransaction for wallet transactions.")
        elif tx is None or tx.state in ("gone", "elsewhere") or \
                (tx.state == "confirmed" and not self.txindex):
            if self.txindex:
                raise RpcFault(-5, "No such mempool or blockchain transaction. "
                                   "Use gettransaction for wallet transactions.")
            raise RpcFault(-5, "No such mempool transaction. Use -txindex or provide a block hash "
                               "to enable blockchain transaction queries. "
                               "Use gettransaction for wallet transactions.")
        if not verbose:
            return "02000000" + secrets.token_hex(60)
        result = self.tx_json(tx)
        where = chain.all_blocks.get(blockhash) if blockhash else (
            chain.all_blocks.get(tx.block_hash) if tx.state == "confirmed" and tx.block_hash else None)
        if blockhash is not None:
            result["in_active_chain"] = where.active
        if where is not None:
            result["blockhash"] = where.hash
            result["confirmations"] = max(chain.confirmations(where), 0)
            result["time"] = where.time
            result["blocktime"] = where.time
        return result


def _check_hash(value, name: str) -> None:
    if not isinstance(value, str):
        raise RpcFault(-3, f"Expected type string for {name}, got {type(value).__name__}")
    if len(value) != 64:
        raise RpcFault(-8, f"{name} must be of length 64 (not {len(value)}, for '{value}')")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise RpcFault(-8, f"{name} must be hexadecimal string (not '{value}')") from None


class _Handler(BaseHTTPRequestHandler):
    owner: FakeBitcoind
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        fake = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if fake.stopped:  # a kept-alive connection to a node that went away
            self.close_connection = True
            return
        if fake._delay:
            time.sleep(fake._delay)
        if not fake.authorized(self.headers.get("Authorization")):
            self._send(401, b"", {"WWW-Authenticate": 'Basic realm="jsonrpc"'}, ctype=None)
            return
        failure = fake._take_failure()
        if failure is not None:
            self._send(failure.status, failure.body, {}, ctype="text/html")
            return
        try:
            request = json.loads(raw, parse_float=Decimal)
        except ValueError:
            self._reply(500, {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None})
            return
        if isinstance(request, list):
            self._reply(200, [self._one(item)[1] for item in request])
            return
        status, reply = self._one(request)
        self._reply(status, reply)

    def _one(self, request) -> tuple[int, dict]:
        fake = self.owner
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return 400, {"result": None, "error": {"code": -32600, "message": "Invalid Request object"},
                         "id": None}
        method, ident = request["method"], request.get("id")
        params = request.get("params") or []
        v2 = fake.error_style == "v2" or (fake.error_style == "by-request" and request.get("jsonrpc") == "2.0")
        fake.calls.append(method)
        try:
            warming = fake._warming()
            if warming:
                raise RpcFault(-28, warming)
            fault = fake._take_rpc_error(method)
            if fault:
                raise fault
            with fake._lock:
                hooks = fake._hooks.pop(method, [])
            for action in hooks:
                action()
            result = fake.call(method, params)
        except RpcFault as fault:
            error = {"code": fault.code, "message": fault.message}
            if v2:
                return 200, {"jsonrpc": "2.0", "error": error, "id": ident}
            return (404 if fault.code == -32601 else 500), {"result": None, "error": error, "id": ident}
        if v2:
            return 200, {"jsonrpc": "2.0", "result": result, "id": ident}
        return 200, {"result": result, "error": None, "id": ident}

    def _reply(self, status: int, body) -> None:
        self._send(status, (dumps(body) + "\n").encode(), {}, ctype="application/json")

    def _send(self, status: int, body: bytes, headers: dict, *, ctype: str | None) -> None:
        try:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
