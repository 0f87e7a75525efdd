"""Wake-ups from Bitcoin Core's ZMQ notifications (-zmqpubhashblock, -zmqpubrawtx).

The notifier only says "something happened"; the watcher then polls its backend at
once instead of waiting for its next tick. Messages are never trusted for content:
a missed or duplicated notification costs at most one poll interval.

    notifier = ZmqNotifier(["tcp://127.0.0.1:28332"])
    while running:
        notifier.wait(timeout=10)   # True: a block or tx was announced
        watcher.poll()
    notifier.close()

Core publishes multipart messages [topic, body, 4-byte little-endian sequence].
"""
from __future__ import annotations

import logging
import struct
import threading
from typing import Iterable

import zmq

log = logging.getLogger(__name__)

DEFAULT_TOPICS = (b"hashblock", b"rawtx")


class ZmqNotifier:
    def __init__(self, endpoints: Iterable[str], *, topics: Iterable[bytes] = DEFAULT_TOPICS,
                 poll_ms: int = 200):
        self.endpoints = list(endpoints)
        if not self.endpoints:
            raise ValueError("ZmqNotifier needs at least one endpoint, e.g. tcp://127.0.0.1:28332")
        self.topics = tuple(t if isinstance(t, bytes) else t.encode() for t in topics)
        self._poll_ms = poll_ms
        self._cond = threading.Condition()
        self._pending = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {t.decode(): 0 for t in self.topics}
        self.last_sequence: dict[str, int] = {}
        self.gaps = 0            # sequence jumps seen (messages lost by the publisher's HWM)
        self.error: BaseException | None = None
        self._context = zmq.Context()
        self._thread = threading.Thread(target=self._run, name="zmq-notifier", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        socket = self._context.socket(zmq.SUB)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, 0)
            socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
            for topic in self.topics:
                socket.setsockopt(zmq.SUBSCRIBE, topic)
            for endpoint in self.endpoints:
                socket.connect(endpoint)
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            self._ready.set()
            while not self._stop.is_set():
                if not dict(poller.poll(self._poll_ms)):
                    continue
                while True:
                    try:
                        parts = socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._record(parts)
                self._wake()
        except zmq.ZMQError as err:
            if not self._stop.is_set():
                self.error = err
                log.warning("ZMQ notifier stopped: %s", err)
                self._wake()  # let the watcher notice (and fall back to polling)
        finally:
            self._ready.set()
            socket.close(0)

    def _wake(self) -> None:
        with self._cond:
            self._pending += 1
            self._cond.notify_all()

    def _record(self, parts: list[bytes]) -> None:
        topic = parts[0].decode(errors="replace") if parts else "?"
        with self._lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if len(parts) >= 3 and len(parts[-1]) == 4:
                (sequence,) = struct.unpack("<I", parts[-1])
                previous = self.last_sequence.get(topic)
                if previous is not None and sequence != (previous + 1) & 0xFFFFFFFF:
                    self.gaps += 1
                self.last_sequence[topic] = sequence

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a notification arrived (True) or `timeout` seconds passed (False).
        Notifications that arrived since the last call count: nothing is lost between polls."""
        with self._cond:
            if not self._pending:
                self._cond.wait_for(lambda: self._pending > 0, timeout)
            arrived = self._pending > 0
            self._pending = 0
        return arrived

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._context.term()

    def __enter__(self) -> "ZmqNotifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
