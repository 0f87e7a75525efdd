"""Rendered QR codes the POS shows besides the invoice's own (which the service keeps):
the code for the rest after a partial payment, and the receipt's link to the public page.

Rendering costs ~15 ms; the POS polls every second. So a code is rendered once per
(invoice, amount) and kept here, bounded, in the process. The payloads are derived from
the invoice, so a cache miss after a restart simply renders again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from payments.qr_codes import render_svg


class QrCache:
    def __init__(self, capacity: int = 512, render: Callable[[str], bytes] = render_svg):
        self.capacity = capacity
        self._render = render
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0  # for tests: how many times a code was drawn

    def svg(self, key: tuple, payload: str) -> bytes:
        """The SVG for ``payload``, drawn on the first request for ``key``."""
        full_key = (key, payload)
        with self._lock:
            cached = self._items.get(full_key)
            if cached is not None:
                self._items.move_to_end(full_key)
                return cached
        body = self._render(payload)
        with self._lock:
            self.renders += 1
            self._items[full_key] = body
            self._items.move_to_end(full_key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return body
