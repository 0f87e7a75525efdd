"""One HTTP POST of a webhook delivery, and the pure rules around it: the signature, how an
answer is classified, when to try again.

Nothing here touches the database. Error messages are written here from the kind of failure,
never copied from the HTTP library (those quote the URL, which may carry a merchant's token),
and the secret never leaves `sign`.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta

import requests

from untrusted import retry_after_seconds

SIGNATURE_HEADER = "BTCPay-Sig"
USER_AGENT = "BusanPay-Webhooks/1"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
#: Waits after attempt 1, 2, 3, … (Greenfield: 10 s, 1 min, then 6 × 10 min): 9 attempts in all.
RETRY_DELAYS = (10, 60, 600, 600, 600, 600, 600, 600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
RETRY_AFTER_CAP = 3600  # a 429/503 Retry-After longer than an hour is not honoured
RETRYABLE_CODES = frozenset({408, 429})

SUCCESS, HTTP_ERROR, FAILED = "HttpSuccess", "HttpError", "Failed"


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(UTF8(secret), body)>`, the `BTCPay-Sig` header value."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body), header.strip())


@dataclass(frozen=True)
class SendResult:
    status: str                  # HttpSuccess | HttpError | Failed (no HTTP answer)
    http_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: int | None = None  # seconds, from a 429/503 answer
    duration_ms: int = 0


def classify(code: int, retry_after: int | None = None, duration_ms: int = 0) -> SendResult:
    """2xx succeeds; 5xx, 408 and 429 are worth another try; anything else is final."""
    if 200 <= code < 300:
        return SendResult(SUCCESS, code, None, False, None, duration_ms)
    retryable = code >= 500 or code in RETRYABLE_CODES
    if 300 <= code < 400:
        message = f"HTTP {code}: redirects are not followed"
    else:
        message = f"HTTP {code}"
    return SendResult(HTTP_ERROR, code, message, retryable, retry_after if retryable else None,
                      duration_ms)


def retries_left(attempt_number: int, automatic_redelivery: bool) -> bool:
    """Whether a retryable failure of this attempt (1-based) gets another attempt."""
    return automatic_redelivery and attempt_number < MAX_ATTEMPTS


def retry_delay(attempt_number: int, retry_after: int | None = None) -> timedelta:
    """How long after failed attempt `attempt_number` the next one is due."""
    base = RETRY_DELAYS[min(attempt_number, len(RETRY_DELAYS)) - 1]
    if retry_after:
        base = max(base, min(retry_after, RETRY_AFTER_CAP))
    return timedelta(seconds=base)


def _retry_after(value: str | None) -> int | None:
    return retry_after_seconds(value, cap=RETRY_AFTER_CAP)  # the receiver's header: untrusted


def _network_error(err: Exception, read_timeout: float) -> str:
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return "Could not connect: timed out"
    if isinstance(err, requests.exceptions.ReadTimeout):
        return f"No answer within {read_timeout:g} s"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(err, requests.exceptions.ConnectionError):
        chain, cause = [], err
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        text = " ".join(type(c).__name__ + " " + str(c) for c in chain).lower()
        if "refused" in text:
            return "Could not connect: connection refused"
        if "name or service not known" in text or "nodename" in text or "resolve" in text:
            return "Could not connect: the host name does not resolve"
        if "reset" in text or "aborted" in text or "remotedisconnected" in text:
            return "The connection was closed before an answer"
        return "Could not connect"
    if isinstance(err, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return "The URL cannot be used"
    return f"Request failed ({type(err).__name__})"


class HttpSender:
    """POSTs with short timeouts and no redirects; thread-safe (a new connection per send)."""

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def send(self, url: str, body: bytes, signature: str) -> SendResult:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature,
                   "User-Agent": USER_AGENT}
        started = time.monotonic()
        try:
            with requests.post(url, data=body, headers=headers, allow_redirects=False,
                               timeout=(self.connect_timeout, self.read_timeout),
                               stream=True) as response:
                # Only the status matters; the answer's body is not read (a slow-dripping
                # body cannot hold a worker).
                code = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except Exception as err:  # every failure to get an answer is a network failure
            return SendResult(FAILED, None, _network_error(err, self.read_timeout), True, None,
                              int((time.monotonic() - started) * 1000))
        return classify(code, retry_after, int((time.monotonic() - started) * 1000))
