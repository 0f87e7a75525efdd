"""The watcher as a background job: a pass about every second, at once on a ZMQ
notification when the backend is a Bitcoin Core node with ``zmq=`` endpoints. While the
backend is down a pass is one cheap probe; a probe that answers or a notification ends
the back-off at once.

Safe in several processes at once: a pass takes the watcher lock (another pass running
means this one is skipped) and every write is fenced on the processed-block cursor.
"""
from __future__ import annotations

import logging
import threading

from background import Job
from chain.runtime import backend_for, watcher_for

log = logging.getLogger(__name__)

WATCHER_INTERVAL = 1.0


def jobs(gateway) -> list[Job]:
    watcher = watcher_for(gateway)
    wake = threading.Event()
    _start_notifier(gateway, backend_for(gateway), wake, watcher)
    return [Job("watcher", WATCHER_INTERVAL, watcher.run_once, wake=wake)]


def _start_notifier(gateway, backend, wake: threading.Event, watcher) -> None:
    endpoints = list(getattr(backend, "zmq_endpoints", None) or [])
    if not endpoints or "chain_zmq" in gateway.extras:
        return
    from chain.backends.zmq_notify import ZmqNotifier

    notifier = ZmqNotifier(endpoints)
    gateway.extras["chain_zmq"] = notifier

    def relay() -> None:
        while notifier.alive:
            if notifier.wait(timeout=5.0):
                watcher.nudge()  # the node is up: a back-off ends at once
                wake.set()
        log.warning("ZMQ notifications stopped (%s): polling every %.0f s",
                    notifier.error, WATCHER_INTERVAL)

    threading.Thread(target=relay, name="zmq-wake", daemon=True).start()
