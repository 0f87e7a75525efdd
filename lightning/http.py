"""Reading a node's HTTP answers within bounds of time and size.

`requests`' read timeout is per socket read: a node (or anything on its address) that
trickles a byte every few seconds keeps a call open for ever, and invoice creation waits
on that call while a cashier waits on the POS. `body()` reads a whole answer by a
wall-clock deadline and up to MAX_BODY bytes; `lines()` reads a stream line by line,
refusing a line longer than MAX_LINE (a stream that never sends a newline would otherwise
be buffered whole in memory).
"""
from __future__ import annotations

import time
from typing import Iterator

import requests
import urllib3

from lightning.backend import LightningUnavailable

MAX_BODY = 8 * 1024 * 1024   # a page of 500 invoices is well under this
MAX_LINE = 1024 * 1024       # one invoice of LND's stream is a few kB
_CHUNK = 16 * 1024


def body(response: requests.Response, deadline: float, who: str) -> requests.Response:
    """Read the streamed `response` whole by monotonic `deadline`; the response then reads
    as an ordinary one (`.json()`, `.text`). Raises LightningUnavailable past the deadline
    or MAX_BODY."""
    parts, size = [], 0
    try:
        # read1: whatever the socket has (a plain read waits for a full chunk, by which
        # time a trickling node has long passed the deadline)
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise LightningUnavailable(f"{who} answered more than {MAX_BODY} bytes")
            if time.monotonic() > deadline:
                raise LightningUnavailable(f"{who} did not answer in time")
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise LightningUnavailable(f"{who} is unreachable: {type(exc).__name__}") from None
    finally:
        response.close()
    response._content = b"".join(parts)  # what `requests` stores after a full read
    return response


def lines(response: requests.Response, who: str) -> Iterator[bytes]:
    """The non-empty lines of a streamed response, each at most MAX_LINE bytes. The
    transport's own exceptions (read timeout, broken stream) pass through."""
    pending = b""
    for chunk in response.iter_content(_CHUNK):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
        if len(pending) > MAX_LINE:
            raise LightningUnavailable(f"{who} sent a line longer than {MAX_LINE} bytes")
    if pending.strip():
        yield pending


class NodeSession:
    """A node's REST endpoint: one secret header on every request (LND's macaroon, CLN's
    rune), the node's own certificate file to verify TLS with, and `_clean` so that the
    secret never travels in a message, whatever the server echoed."""

    def __init__(self, url: str, header: str, secret: str, cert_path: str | None,
                 timeout: float):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._secret = secret.strip()
        self._session = requests.Session()
        self._session.headers[header] = self._secret
        # Passed with each request: REQUESTS_CA_BUNDLE would override a session-wide verify.
        self._verify = cert_path if cert_path else True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _clean(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

