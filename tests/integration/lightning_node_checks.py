"""Checks every Lightning node client must pass, whatever node it speaks to (used by
test_lightning_lnd.py and test_lightning_cln.py with their own fakes)."""
from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Callable

import pytest

from lightning.backend import LightningError, LightningUnavailable, LnState
from tests.fakes.node_http import self_signed_cert


def refused_not_unavailable(client, word: str, secret: str) -> None:
    """Every call fails with a plain LightningError (a fault waiting will not heal, not an
    outage) that names `word` and does not show `secret`; node_info says so, unreachable."""
    calls = (lambda: client.create_invoice(1_000, "x", 60, label=secrets.token_hex(8)),
             lambda: client.lookup_invoice("ab" * 32),
             lambda: list(client.settlements(1, timeout=1)))
    for call in calls:
        with pytest.raises(LightningError) as caught:
            call()
        assert type(caught.value) is LightningError
        assert word in str(caught.value) and secret not in str(caught.value)
    info = client.node_info()
    assert not info.reachable and word in info.error and secret not in info.error


def nothing_shows(secret: str, caplog, texts: list[str]) -> None:
    assert caplog.records  # urllib3 did log the requests
    seen = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(texts)
    assert secret not in seen and secret[:16] not in seen


def tls_pins_the_node_certificate(tmp_path: Path, start_node: Callable, client_for: Callable) -> None:
    """start_node(tls) → a started fake (context manager) serving HTTPS with that (cert, key);
    client_for(url, cert_path) → a client. The node's own certificate works end to end (a payment seen on the stream); another
    self-signed one and the system CAs fail with a LightningError that says TLS."""
    cert, key = self_signed_cert(tmp_path / "node", "node")
    other_cert, _ = self_signed_cert(tmp_path / "other", "impostor")
    with start_node((cert, key)) as node:
        assert node.url.startswith("https://")
        trusted = client_for(node.url, cert)
        invoice = trusted.create_invoice(5_000_000, "coffee", 900, label="tls")
        threading.Timer(0.3, node.settle, args=(invoice.payment_hash,)).start()
        assert [s.payment_hash for s in trusted.settlements(0, timeout=1.5)] == [invoice.payment_hash]
        assert trusted.node_info().reachable
        for client in (client_for(node.url, other_cert), client_for(node.url, None)):
            with pytest.raises(LightningError, match="TLS") as caught:
                client.create_invoice(5_000_000, "coffee", 900, label="tls-2")
            assert type(caught.value) is LightningError
            info = client.node_info()
            assert not info.reachable and "TLS" in info.error


def down_then_back(node, client, secret: str) -> None:
    """The node process is gone, then back on the same port: LightningUnavailable from
    every call meanwhile, node_info unreachable with a reason free of the secret, then all
    works again without a new client."""
    node.go_down()
    with pytest.raises(LightningUnavailable, match="unreachable"):
        client.create_invoice(1_000, "x", 60, label=secrets.token_hex(8))
    with pytest.raises(LightningUnavailable):
        list(client.settlements(1, timeout=1))
    info = client.node_info()
    assert (info.backend, info.reachable) == (client.name, False)
    assert info.error and secret not in info.error
    node.come_back()
    assert client.node_info().reachable
    assert client.create_invoice(1_000, "x", 60, label=secrets.token_hex(8)).state is LnState.OPEN


def answering_503(node, client) -> None:
    """Up but answering 503 (starting, overloaded): unavailable, not refused."""
    node.serve_unavailable(True)
    with pytest.raises(LightningUnavailable, match="503"):
        client.create_invoice(1_000, "x", 60, label=secrets.token_hex(8))
    with pytest.raises(LightningUnavailable):
        list(client.settlements(1, timeout=1))
    assert client.node_info().reachable is False
    node.serve_unavailable(False)
    assert client.node_info().reachable is True
