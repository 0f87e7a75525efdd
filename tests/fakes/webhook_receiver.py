"""A merchant's webhook endpoint over real HTTP on 127.0.0.1, recording every request and
checking its `BTCPay-Sig` with the secret it is told.

    with WebhookReceiver() as hook:
        hook.secret = created["secret"]        # known once the webhook is created
        hook.fail(500, times=2)                # 500, 500, then 200
        hook.answer(429) / hook.answer(408)    # that status every time (until changed)
        hook.hang()                            # accept, read, never answer (until released)
        hook.refuse()                          # nothing listens: connection refused
        hook.ok()                              # back to 200 (listening again)
        hook.wait_for(3, timeout=5)            # until 3 requests arrived
        hook.requests[0].json["deliveryId"], hook.requests[0].signature_ok
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float                 # time.monotonic() when the body was read
    signature_ok: bool | None  # None while the receiver has no secret
    answered: int | None = None  # the status sent back (None: hung or cut off)

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class _Mode:
    kind: str = "ok"          # ok | status | fail_then_ok | hang
    status: int = 200
    remaining: int = 0        # for fail_then_ok
    delay: float = 0.0        # seconds before answering (ok and status modes)


@dataclass(eq=False)
class WebhookReceiver:
    secret: str | None = None
    path: str = "/hook"
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self._mode = _Mode()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._listen()

    # -- control ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def ok(self, delay: float = 0.0) -> None:
        with self._lock:
            self._mode = _Mode("ok", 200, delay=delay)
        self._release.set()
        if self._server is None:
            self._listen()

    def answer(self, status: int, delay: float = 0.0) -> None:
        with self._lock:
            self._mode = _Mode("status", status, delay=delay)

    def fail(self, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self._mode = _Mode("fail_then_ok", status, remaining=times)

    def hang(self) -> None:
        self._release.clear()
        with self._lock:
            self._mode = _Mode("hang")

    def refuse(self) -> None:
        """Stop listening on the port (connections are refused) until `ok()`."""
        server, self._server = self._server, None
        if server is not None:
            self._release.set()
            server.shutdown()
            server.server_close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {count} webhook requests "
                                         f"arrived within {timeout} s")
                self._arrived.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self._release.set()
        self.refuse()

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------
    def _listen(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._record(self, body)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,),
                         name=f"webhook-receiver-{self.port}", daemon=True).start()

    def _verify(self, body: bytes, header: str | None) -> bool | None:
        if self.secret is None:
            return None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return bool(header) and hmac.compare_digest(expected, header)

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        entry = Received(handler.path, dict(handler.headers.items()), body, time.monotonic(),
                         self._verify(body, handler.headers.get("BTCPay-Sig")))
        with self._arrived:
            self.requests.append(entry)
            mode = self._mode
            if mode.kind == "fail_then_ok":
                status = mode.status if mode.remaining > 0 else 200
                mode.remaining -= 1
            elif mode.kind == "status":
                status = mode.status
            else:
                status = 200
            self._arrived.notify_all()
        if mode.kind == "hang":
            self._release.wait(60)
            handler.close_connection = True
            return
        if mode.delay:
            time.sleep(mode.delay)
        payload = b'{"ok":true}' if status < 300 else b'{"error":"nope"}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        entry.answered = status
