"""One HTTP POST of a webhook delivery, and the pure rules around it: the signature, how an
answer is classified, when to try again.

Nothing here touches the database. A destination that the address policy refuses
(`webhooks.destinations`) is answered "refused: address not allowed (…)" without connecting to
it, so the delivery log cannot be used to probe the city's own network. Error messages are written here from the kind of failure,
never copied from the HTTP library (those quote the URL, which may carry a merchant's token),
and the secret never leaves `sign`.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import certifi
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import (ConnectTimeoutError, LocationParseError, NewConnectionError,
                                ProtocolError, ReadTimeoutError, SSLError)
from urllib3.util import make_headers

from webhooks import destinations
from webhooks.destinations import DestinationRefused, Resolver, pick_address

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
    if isinstance(err, NewConnectionError):  # before ConnectTimeoutError: it is a subclass
        return ("Could not connect: connection refused" if "refused" in str(err).lower()
                else "Could not connect")
    if isinstance(err, ConnectTimeoutError):
        return "Could not connect: timed out"
    if isinstance(err, (ReadTimeoutError, TimeoutError)):
        return f"No answer within {read_timeout:g} s"
    if isinstance(err, SSLError):
        return "TLS handshake failed"
    if isinstance(err, (ProtocolError, ConnectionError)):
        return "The connection was closed before an answer"
    if isinstance(err, LocationParseError):
        return "The URL cannot be used"
    return f"Request failed ({type(err).__name__})"


class HttpSender:
    """POSTs with short timeouts and no redirects; thread-safe (a new connection per send).

    The host is resolved here, once per attempt, and checked against the address policy
    (`webhooks.destinations`); the connection then goes to that very address while the Host
    header, TLS SNI and certificate check keep the URL's name. urllib3 is used directly (not
    requests) so that nothing resolves the name a second time and no proxy from the
    environment is used."""

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, *, allow_private: bool = False,
                 resolver: Resolver | None = None, ca_certs: str | None = None):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.allow_private = allow_private
        self.resolver = resolver  # None: destinations.resolve (the system resolver)
        self.ca_certs = ca_certs or certifi.where()  # tests pass their own authority

    def send(self, url: str, body: bytes, signature: str) -> SendResult:
        started = time.monotonic()

        def failed(message: str, retryable: bool = True) -> SendResult:
            return SendResult(FAILED, None, message, retryable, None,
                              int((time.monotonic() - started) * 1000))

        try:
            parts = urlsplit(url)
            https = parts.scheme.lower() == "https"
            host, port = parts.hostname or "", parts.port or (443 if https else 80)
        except ValueError:
            return failed("The URL cannot be used", retryable=False)
        if parts.scheme.lower() not in ("http", "https") or not host:
            return failed("The URL cannot be used", retryable=False)
        try:
            ip = pick_address(host, port, allow_private=self.allow_private,
                              resolver=self.resolver or destinations.resolve)
        except DestinationRefused as refused:
            return failed(str(refused), retryable=False)
        except (OSError, UnicodeError, ValueError):
            return failed("Could not connect: the host name does not resolve")
        headers = {"Host": parts.netloc.rpartition("@")[2], "Content-Type": "application/json",
                   SIGNATURE_HEADER: signature, "User-Agent": USER_AGENT}
        if parts.username is not None:
            headers.update(make_headers(basic_auth=f"{unquote(parts.username)}:"
                                                   f"{unquote(parts.password or '')}"))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = Timeout(connect=self.connect_timeout, read=self.read_timeout)
        if https:
            pool = HTTPSConnectionPool(str(ip), port, timeout=timeout, maxsize=1, retries=False,
                                       server_hostname=host, assert_hostname=host,
                                       cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs)
        else:
            pool = HTTPConnectionPool(str(ip), port, timeout=timeout, maxsize=1, retries=False)
        try:
            with pool:
                response = pool.urlopen("POST", target, body=body, headers=headers,
                                        redirect=False, retries=False, preload_content=False,
                                        assert_same_host=False)
                # Only the status matters; the answer's body is not read (a slow-dripping
                # body cannot hold a worker).
                code = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                response.close()
        except Exception as err:  # every failure to get an answer is a network failure
            return failed(_network_error(err, self.read_timeout))
        return classify(code, retry_after, int((time.monotonic() - started) * 1000))
