"""Building the chain backend and the watcher of one gateway (cached in `gateway.extras`).

Tests put their own backend in ``gateway.extras["chain_backend"]`` before the first call.
"""
from __future__ import annotations

import threading

from chain.backends import backend_from_spec

_lock = threading.RLock()


class NotDemoChain(RuntimeError):
    """A demo-chain command on a gateway that watches a real chain."""


def backend_for(gateway):
    """The gateway's chain backend, built once from BUSANPAY_CHAIN."""
    backend = gateway.extras.get("chain_backend")
    if backend is None:
        with _lock:
            backend = gateway.extras.get("chain_backend")
            if backend is None:
                settings = gateway.settings
                backend = backend_from_spec(settings.chain, demo_path=settings.demo_chain_path,
                                            network=settings.network)
                gateway.extras["chain_backend"] = backend
    return backend


def is_demo(gateway) -> bool:
    backend = gateway.extras.get("chain_backend")
    if backend is not None:
        return hasattr(backend, "pay") and hasattr(backend, "mine")
    return (gateway.settings.chain or "").strip().lower() == "demo"


def demo_chain_for(gateway):
    """The demo chain (pay, mine, reorg, double_spend); NotDemoChain otherwise."""
    if not is_demo(gateway):
        raise NotDemoChain(f"the demo commands need BUSANPAY_CHAIN=demo (this gateway watches "
                           f"{gateway.settings.chain!r})")
    return backend_for(gateway)


def watcher_for(gateway):
    """The gateway's watcher (one per process; passes are serialised by its lock)."""
    watcher = gateway.extras.get("chain_watcher")
    if watcher is None:
        with _lock:
            watcher = gateway.extras.get("chain_watcher")
            if watcher is None:
                from chain.watcher import Watcher, health

                watcher = Watcher(gateway, backend_for(gateway))
                gateway.extras["chain_watcher"] = watcher
                gateway.extras.setdefault("watcher_health", lambda: health(gateway))
    return watcher
