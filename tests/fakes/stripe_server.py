"""A small stateful Stripe-compatible HTTP server on 127.0.0.1 (Connect transfers).

It speaks the wire format stripe-python uses: form-encoded bodies (`metadata[k]=v`),
`Authorization: Bearer sk_…`, JSON objects shaped like Stripe's, errors as
`{"error": {"type", "code", "message"}}`. Idempotency works like Stripe's: the first
response to an `Idempotency-Key` is saved and replayed for a repeat with the same
parameters (header `Idempotent-Replayed: true`); the same key with other parameters is
a 400 `idempotency_error`; a repeat while the first is still running is a 409.

Failure injection (`fail_next(...)`) for the crash cases that matter: answer 500, or
hang, AFTER the transfer was created and its result saved — the client sees an error,
but a retry with the same key replays the transfer instead of making a second one.

`webhook(...)` builds signed webhook deliveries (`Stripe-Signature: t=…,v1=…`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


def _nested(pairs: list[tuple[str, str]]) -> dict:
    """`metadata[payout_id]=x` → {"metadata": {"payout_id": "x"}} (one level, as we use)."""
    out: dict = {}
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            head, rest = key.split("[", 1)
            out.setdefault(head, {})[rest[:-1]] = value
        else:
            out[key] = value
    return out


class StripeFake:
    def __init__(self, api_key: str = "sk_test_busanpay", webhook_secret: str = "whsec_test"):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.transfers: dict[str, dict] = {}
        self.reversals: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, idempotency key)
        self._idempotency: dict[str, tuple[str, int, dict]] = {}
        self._running: set[str] = set()
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self.hang_seconds = 3.0
        self.delay = 0.0  # seconds each POST takes (gives a chaos test time to kill mid-run)
        self.balance_krw: int | None = None  # None: unlimited
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> "StripeFake":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._release.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- test controls ----------------------------------------------------------------
    def fail_next(self, *faults: str) -> None:
        """Queue faults for the next transfer creations: "500_after_create",
        "hang_after_create", "500_before_create", "decline"."""
        with self._lock:
            self._faults.extend(faults)

    def transfers_to(self, destination: str) -> list[dict]:
        return [t for t in self.transfers.values() if t["destination"] == destination]

    # -- HTTP -------------------------------------------------------------------------
    def _send(self, handler, status: int, body: dict, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(raw)))
            handler.send_header("Request-Id", "req_" + secrets.token_hex(7))
            for k, v in (headers or {}).items():
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): what it missed is saved for its retry

    @staticmethod
    def _error(status: int, kind: str, message: str, code: str | None = None) -> tuple[int, dict]:
        err = {"type": kind, "message": message}
        if code:
            err["code"] = code
        return status, {"error": err}

    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        key = handler.headers.get("Idempotency-Key")
        self.requests.append((method, parts.path, key))
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._send(handler, *self._error(401, "invalid_request_error",
                                                    "Invalid API Key provided"))
        params = _nested(parse_qsl(raw if method == "POST" else parts.query, keep_blank_values=True))
        if method == "GET":
            return self._send(handler, *self._get(parts.path, params))
        fingerprint = hashlib.sha256(
            (parts.path + "\n" + json.dumps(params, sort_keys=True)).encode()).hexdigest()
        if key:
            with self._lock:
                saved = self._idempotency.get(key)
                if saved is None and key in self._running:
                    return self._send(handler, *self._error(
                        409, "idempotency_error", "There is currently another in-progress request "
                        "using this Stripe token or idempotency key", "idempotency_key_in_use"))
                if saved is not None:
                    if saved[0] != fingerprint:
                        return self._send(handler, *self._error(
                            400, "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters "
                            f"they were first used with. Try using a key other than '{key}' if you "
                            "meant to execute a different request."))
                    return self._send(handler, saved[1], saved[2], {"Idempotent-Replayed": "true",
                                                                    "Idempotency-Key": key})
                self._running.add(key)
        try:
            if self.delay:
                time.sleep(self.delay)
            fault = None
            if parts.path == "/v1/transfers":
                with self._lock:
                    fault = self._faults.pop(0) if self._faults else None
            if fault == "500_before_create":  # nothing happened: not saved, a retry creates it
                return self._send(handler, *self._error(500, "api_error", "injected failure"))
            status, body = self._post(parts.path, params, fault)
            if key and status < 500:
                with self._lock:
                    self._idempotency[key] = (fingerprint, status, body)
            if fault == "500_after_create":
                return self._send(handler, *self._error(500, "api_error", "injected: created, then failed"))
            if fault == "hang_after_create":
                self._release.wait(self.hang_seconds)
            return self._send(handler, status, body, {"Idempotency-Key": key} if key else None)
        finally:
            if key:
                with self._lock:
                    self._running.discard(key)

    def _get(self, path: str, params: dict) -> tuple[int, dict]:
        if path == "/v1/transfers":
            found = [t for t in self.transfers.values()
                     if not params.get("transfer_group") or t["transfer_group"] == params["transfer_group"]]
            found.sort(key=lambda t: t["created"], reverse=True)
            return 200, {"object": "list", "url": "/v1/transfers", "has_more": False,
                         "data": found[: int(params.get("limit") or 10)]}
        if path.startswith("/v1/transfers/"):
            transfer = self.transfers.get(path.rsplit("/", 1)[1])
            if transfer:
                return 200, transfer
            return self._error(404, "invalid_request_error", "No such transfer", "resource_missing")
        return self._error(404, "invalid_request_error", f"Unrecognized request URL (GET: {path})")

    def _post(self, path: str, params: dict, fault: str | None) -> tuple[int, dict]:
        if path == "/v1/transfers":
            return self._create_transfer(params, fault)
        if path.startswith("/v1/transfers/") and path.endswith("/reversals"):
            return self._reverse(path.split("/")[3], params)
        return self._error(404, "invalid_request_error", f"Unrecognized request URL (POST: {path})")

    def _create_transfer(self, params: dict, fault: str | None) -> tuple[int, dict]:
        for name in ("amount", "currency", "destination"):
            if not params.get(name):
                return self._error(400, "invalid_request_error", f"Missing required param: {name}.",
                                   "parameter_missing")
        try:
            amount = int(params["amount"])
        except ValueError:
            return self._error(400, "invalid_request_error", "Invalid integer: " + params["amount"],
                               "parameter_invalid_integer")
        if amount <= 0:
            return self._error(400, "invalid_request_error", "This value must be greater than 0.")
        if not params["destination"].startswith("acct_"):
            return self._error(400, "invalid_request_error",
                               f"No such destination: '{params['destination']}'", "resource_missing")
        if fault == "decline":
            return self._error(400, "invalid_request_error", "Your destination account needs to "
                               "have at least one of the following capabilities enabled: "
                               "transfers", "insufficient_capabilities_for_transfer")
        with self._lock:
            if self.balance_krw is not None:
                if self.balance_krw < amount:
                    return self._error(400, "invalid_request_error",
                                       "You have insufficient funds in your Stripe account.",
                                       "balance_insufficient")
                self.balance_krw -= amount
            transfer = {
                "id": "tr_" + secrets.token_hex(12), "object": "transfer", "amount": amount,
                "amount_reversed": 0, "balance_transaction": "txn_" + secrets.token_hex(12),
                "created": int(time.time()), "currency": params["currency"].lower(),
                "description": params.get("description"), "destination": params["destination"],
                "destination_payment": "py_" + secrets.token_hex(12), "livemode": False,
                "metadata": params.get("metadata") or {}, "reversals": {
                    "object": "list", "data": [], "has_more": False, "total_count": 0,
                    "url": ""}, "reversed": False, "source_transaction": None,
                "source_type": "card", "transfer_group": params.get("transfer_group")}
            transfer["reversals"]["url"] = f"/v1/transfers/{transfer['id']}/reversals"
            self.transfers[transfer["id"]] = transfer
        return 200, transfer

    def _reverse(self, transfer_id: str, params: dict) -> tuple[int, dict]:
        with self._lock:
            transfer = self.transfers.get(transfer_id)
            if transfer is None:
                return self._error(404, "invalid_request_error", f"No such transfer: '{transfer_id}'",
                                   "resource_missing")
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = int(params.get("amount") or left)
            if left <= 0 or amount > left:
                return self._error(400, "invalid_request_error",
                                   "Transfer has already been fully reversed.")
            reversal = {"id": "trr_" + secrets.token_hex(12), "object": "transfer_reversal",
                        "amount": amount, "currency": transfer["currency"],
                        "created": int(time.time()), "metadata": params.get("metadata") or {},
                        "transfer": transfer_id}
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            transfer["reversals"]["data"].append(reversal)
            transfer["reversals"]["total_count"] += 1
            self.reversals[reversal["id"]] = reversal
            if self.balance_krw is not None:
                self.balance_krw += amount
        return 200, reversal

    # -- webhooks ---------------------------------------------------------------------
    def sign(self, payload: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
        t = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{t}.".encode() + payload,
                       hashlib.sha256).hexdigest()
        return f"t={t},v1={mac}"

    def event(self, event_type: str, obj: dict, *, account: str | None = None) -> dict:
        event = {"id": "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2024-06-20",
                 "created": int(time.time()), "data": {"object": obj}, "livemode": False,
                 "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                 "type": event_type}
        if account:
            event["account"] = account
        return event

    def webhook(self, event_type: str, obj: dict, *, account: str | None = None,
                secret: str | None = None, timestamp: int | None = None,
                event: dict | None = None) -> tuple[bytes, dict]:
        """(body, headers) of a signed delivery, for a Flask test client or `requests`."""
        event = event or self.event(event_type, obj, account=account)
        body = json.dumps(event).encode()
        return body, {"Stripe-Signature": self.sign(body, secret=secret, timestamp=timestamp),
                      "Content-Type": "application/json; charset=utf-8",
                      "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    def deliver(self, url: str, event_type: str, obj: dict, **kw):
        """Send a signed event to a running app over HTTP."""
        import requests

        body, headers = self.webhook(event_type, obj, **kw)
        return requests.post(url, data=body, headers=headers, timeout=10)

    def payout_object(self, amount: int, *, status: str, failure_code: str | None = None) -> dict:
        return {"id": "po_" + secrets.token_hex(12), "object": "payout", "amount": amount,
                "arrival_date": int(time.time()), "automatic": True, "currency": "krw",
                "failure_code": failure_code, "failure_message": failure_code and
                "The bank account has been closed.", "method": "standard", "status": status,
                "type": "bank_account", "metadata": {}}
