"""A fake Esplora REST server (electrs' HTTP API), over real HTTP on 127.0.0.1.

Serves a `ChainModel` with the wire shapes of Blockstream/esplora API.md as electrs
writes them: plain-text tip height/hash and block-height answers, JSON blocks and
transactions with their full field sets (version, locktime, size, weight, fee, vin with
prevout/scriptsig/witness/is_coinbase/sequence, vout with scriptpubkey, asm, type,
address, value in sats, status), 25-transaction block pages, electrs' error texts.

    with FakeEsplora() as fx:
        txid = fx.chain.add_mempool_tx([(address, 10_000)])
        fx.chain.mine()
        fx.fail(429, retry_after=7, times=1)   # the next request is rate-limited
        fx.delay(2.0)                          # every answer waits 2 s (timeouts)
        fx.requests                            # paths requested, in order
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.chain_model import ChainModel, ModelBlock, ModelTx, esplora_script

PAGE = 25
MAX_MEMPOOL_TXS = 50
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    body: bytes
    times: int | None          # None: until healed
    path_prefix: str | None


class FakeEsplora:
    def __init__(self, chain: ChainModel | None = None):
        self.chain = chain or ChainModel()
        self.requests: list[str] = []
        self._failures: list[_Failure] = []
        self._delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FakeEsplora":
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name="fake-esplora")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "FakeEsplora":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- failure controls -------------------------------------------------------------

    def fail(self, status: int, *, retry_after: int | str | None = None, body: str | bytes | None = None,
             times: int | None = None, path_prefix: str | None = None) -> None:
        """Answer `status` (with Retry-After if given) to the next `times` requests (all,
        until heal(), when None), optionally only to paths starting with `path_prefix`."""
        if body is None:
            body = {429: "Too Many Requests", 500: "Internal Server Error",
                    502: "<html><body>502 Bad Gateway</body></html>",
                    503: "Service Unavailable"}.get(status, "error")
        with self._lock:
            self._failures.append(_Failure(status, None if retry_after is None else str(retry_after),
                                           body.encode() if isinstance(body, str) else body,
                                           times, path_prefix))

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()
        self._delay = 0.0

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.path_prefix and not path.startswith(failure.path_prefix):
                    continue
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                return failure
        return None

    # -- JSON shapes ---------------------------------------------------------------------

    def _vout(self, script: bytes, value: int) -> dict:
        kind, asm = esplora_script(script)
        out = {"scriptpubkey": script.hex(), "scriptpubkey_asm": asm, "scriptpubkey_type": kind}
        address = self.chain.address_of(script)
        if address:
            out["scriptpubkey_address"] = address
        out["value"] = value
        return out

    def _status(self, tx: ModelTx) -> dict:
        if tx.state == "confirmed" and tx.block_hash:
            block = self.chain.all_blocks[tx.block_hash]
            return {"confirmed": True, "block_height": block.height, "block_hash": block.hash,
                    "block_time": block.time}
        return {"confirmed": False}

    def tx_json(self, tx: ModelTx, *, with_status: bool = True) -> dict:
        vin = []
        for item in tx.inputs:
            entry = {
                "txid": item.txid, "vout": item.vout,
                "prevout": None if item.is_coinbase else self._vout(item.prev_script, item.prev_value),
                "scriptsig": item.script_sig.hex(),
                "scriptsig_asm": "" if not item.script_sig else f"OP_PUSHBYTES_{len(item.script_sig)} "
                                                                 f"{item.script_sig.hex()}",
            }
            if item.witness:
                entry["witness"] = [w.hex() for w in item.witness]
            entry["is_coinbase"] = item.is_coinbase
            entry["sequence"] = item.sequence
            vin.append(entry)
        result = {"txid": tx.txid, "version": tx.version, "locktime": tx.locktime, "vin": vin,
                  "vout": [self._vout(o.script, o.value) for o in tx.outputs],
                  "size": tx.size, "weight": tx.weight, "fee": tx.fee}
        if with_status:
            result["status"] = self._status(tx)
        return result

    def block_json(self, block: ModelBlock) -> dict:
        return {"id": block.hash, "height": block.height, "version": block.version,
                "timestamp": block.time, "tx_count": len(block.txids), "size": block.size,
                "weight": block.weight, "merkle_root": block.merkle_root,
                "previousblockhash": block.prev_hash, "mediantime": block.mediantime,
                "nonce": block.nonce, "bits": int(block.bits, 16), "difficulty": 4.656542373906925e-10}

    # -- routing ---------------------------------------------------------------------------

    def handle(self, path: str) -> tuple[int, str, bytes, dict]:
        """(status, content type, body, extra headers) for GET `path`."""
        chain = self.chain
        parts = path.split("?")[0].strip("/").split("/")
        text = "text/plain"

        def ok_json(value):
            return 200, "application/json", json.dumps(value).encode(), {}

        def not_found(message):
            return 404, text, message.encode(), {}

        def bad(message):
            return 400, text, message.encode(), {}

        with chain.lock:
            if parts[:2] == ["blocks", "tip"] and len(parts) == 3:
                if parts[2] == "height":
                    return 200, text, str(chain.tip.height).encode(), {}
                if parts[2] == "hash":
                    return 200, text, chain.tip.hash.encode(), {}
            if parts[0] == "block-height" and len(parts) == 2:
                if not parts[1].isdigit():
                    return bad(f"invalid digit found in string")
                block = chain.block_at(int(parts[1]))
                return (200, text, block.hash.encode(), {}) if block else not_found("Block not found")
            if parts[0] == "block" and len(parts) >= 2:
                if not _HEX64.match(parts[1]):
                    return bad("Invalid hex string")
                block = chain.all_blocks.get(parts[1].lower())
                if block is None:
                    return not_found("Block not found")
                if len(parts) == 2:
                    return ok_json(self.block_json(block))
                if parts[2] == "status" and len(parts) == 3:
                    status = {"in_best_chain": block.active}
                    if block.active:
                        status["height"] = block.height
                        status["next_best"] = chain.next_hash(block)
                    return ok_json(status)
                if parts[2] == "txids" and len(parts) == 3:
                    return ok_json(block.txids)
                if parts[2] == "txs" and len(parts) in (3, 4):
                    start = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else 0
                    if start % PAGE:
                        return bad(f"start index must be a multiple of {PAGE}")
                    if start >= len(block.txids) and start > 0:
                        return bad("start index out of range")
                    page = [chain.txs[t] for t in block.txids[start:start + PAGE]]
                    return ok_json([self.tx_json(tx) for tx in page])
            if parts[0] == "tx" and len(parts) >= 2:
                if not _HEX64.match(parts[1]):
                    return bad("Invalid hex string")
                tx = chain.txs.get(parts[1].lower())
                known = tx is not None and tx.state not in ("gone", "elsewhere")
                if len(parts) == 3 and parts[2] == "status":
                    # electrs: an unknown txid is simply "not confirmed"
                    return ok_json(self._status(tx) if known else {"confirmed": False})
                if not known:
                    return not_found("Transaction not found")
                if len(parts) == 2:
                    return ok_json(self.tx_json(tx))
            if parts[0] == "address" and len(parts) == 4 and parts[2:] == ["txs", "mempool"]:
                address = parts[1]
                try:
                    matching = [chain.txs[t] for t in reversed(chain.mempool())
                                if chain.touches(chain.txs[t], address)]
                except ValueError:
                    return bad("Invalid Bitcoin address")
                return ok_json([self.tx_json(tx) for tx in matching[:MAX_MEMPOOL_TXS]])
            if parts == ["mempool", "txids"]:
                return ok_json(chain.mempool())
        return not_found(f"endpoint does not exist {path.split('?')[0]!r}")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeEsplora
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        fake = self.owner
        fake.requests.append(self.path)
        if fake._delay:
            time.sleep(fake._delay)
        failure = fake._take_failure(self.path)
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            self._send(failure.status, "text/plain", failure.body, headers)
            return
        try:
            status, ctype, body, headers = fake.handle(self.path)
        except Exception as err:  # a bug in the fake shows up as a 500, like a real server
            status, ctype, body, headers = 500, "text/plain", repr(err).encode(), {}
        self._send(status, ctype, body, headers)

    def _send(self, status: int, ctype: str, body: bytes, headers: dict) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "public, max-age=10")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
