"""Several watchers at once WITHOUT the pass lock: the fencing on the processed-block cursor
alone keeps every block, payment and event single (SQLite and PostgreSQL)."""
from __future__ import annotations

import threading
import time
from collections import Counter

from sqlmodel import select

from chain.memchain import MemoryChain
from chain.models import ChainBlock, ChainWatcherState
from chain.watcher import Watcher
from payments.models import Invoice, InvoiceEvent, Payment
from tests.conftest import auth


class NoLock:
    def acquire(self, wait=0.0):
        return True

    def release(self):
        pass


def test_four_unlocked_watchers_racing_record_everything_exactly_once(app, client, gateway,
                                                                      merchant):
    store_id, token = merchant
    invoices = []
    for _ in range(40):
        res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 15000},
                          headers=auth(token))
        invoices.append(res.get_json()["id"])
    with gateway.db.read() as s:
        address = {i.id: i.address for i in s.exec(select(Invoice))}
    chain = MemoryChain()
    watchers = [Watcher(gateway, chain) for _ in range(4)]
    for w in watchers:
        w.lock = NoLock()  # only the fencing stands between them
    stop = threading.Event()
    outcomes: Counter = Counter()
    errors: list[BaseException] = []

    def loop(w):
        while not stop.is_set():
            try:
                summary = w.run_once(force=True)
                outcomes["fenced" if (summary["skipped"] or "").startswith("fenced") else
                         "ok" if summary["ok"] else "other"] += 1
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    threads = [threading.Thread(target=loop, args=(w,)) for w in watchers]
    for t in threads:
        t.start()
    try:
        for round_ in range(4):
            for invoice_id in invoices[round_ * 10:(round_ + 1) * 10]:
                chain.pay(address[invoice_id], 10_000)
            time.sleep(0.05)
            chain.mine()
            time.sleep(0.05)
        chain.mine(2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    watchers[0].run_once(force=True)

    with gateway.db.read() as s:
        payments = list(s.exec(select(Payment)))
        events = list(s.exec(select(InvoiceEvent)))
        blocks = list(s.exec(select(ChainBlock)))
        state = s.get(ChainWatcherState, 1)
        statuses = Counter(i.status for i in s.exec(select(Invoice)))
    assert len(payments) == 40 and len({(p.txid, p.vout) for p in payments}) == 40
    assert statuses == Counter({"Settled": 40})
    per_invoice = Counter((e.invoice_id, e.event_type) for e in events)
    for invoice_id in invoices:
        for event in ("InvoiceCreated", "InvoiceReceivedPayment", "InvoiceProcessing",
                      "InvoicePaymentSettled", "InvoiceSettled"):
            assert per_invoice[(invoice_id, event)] == 1, (invoice_id, event)
    heights = Counter(b.height for b in blocks if not b.orphaned)
    assert all(n == 1 for n in heights.values())
    assert state.best_height == chain.tip().height
    print(dict(outcomes))
    assert outcomes["ok"] > 0
