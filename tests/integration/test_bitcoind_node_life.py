"""The watcher against a Bitcoin Core node's life, on the fake bitcoind over real HTTP:
restarts, reindexing, crashes that lose blocks and the mempool, outages and reorgs that
heal (issue 10's seven findings, each a scenario here), on SQLite and PostgreSQL, with
two watchers taking turns where the order of passes matters."""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import select

from chain.backends.bitcoind import BitcoindBackend
from chain.models import InvoiceIncident
from chain.watcher import Watcher, health
from payments.models import Invoice, InvoiceEvent, Payment
from tests.conftest import auth, make_merchant
from tests.fakes.bitcoind_server import FakeBitcoind
from tests.fakes.chain_model import ChainModel
from tests.integration.test_settlement_support import post_all, sgateway  # noqa: F401

DUE = 10_000  # 15,000 won at the test rate
STATUS_EVENTS = ("InvoiceProcessing", "InvoiceSettled", "InvoiceExpired", "InvoiceInvalid")


class Node:
    """A store, the fake node (its clock is the gateway's), and watchers taking turns."""

    def __init__(self, app, client, gateway, clock, *, speed="MediumSpeed", limit=0,
                 watchers=2):
        from decimal import Decimal

        self.app, self.client, self.gateway, self.clock = app, client, gateway, clock
        self.fake = FakeBitcoind(ChainModel(clock=lambda: int(clock().timestamp()))).start()
        self.chain = self.fake.chain
        self.backend = BitcoindBackend(self.fake.url, username=self.fake.user,
                                       password=self.fake.password, timeout=5)
        gateway.extras["chain_backend"] = self.backend
        self.store_id, self.token = make_merchant(app, speed_policy=speed,
                                                  zero_conf_limit_krw=limit,
                                                  payment_tolerance=Decimal(0))
        self.watchers = [Watcher(gateway, self.backend) for _ in range(watchers)]
        self.turn = 0
        self.summaries: list[dict] = []

    def close(self):
        self.backend.close()
        self.fake.close()

    # -- invoices --------------------------------------------------------------------------
    def invoice(self, **checkout) -> dict:
        body = {"amount": 15000, **({"checkout": checkout} if checkout else {})}
        res = self.client.post(f"/api/v1/stores/{self.store_id}/invoices", json=body,
                               headers=auth(self.token))
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def api(self, invoice_id) -> dict:
        return self.client.get(f"/api/v1/invoices/{invoice_id}", headers=auth(self.token)).get_json()

    def row(self, invoice_id) -> Invoice:
        with self.gateway.db.read() as s:
            return s.get(Invoice, invoice_id)

    def status(self, invoice_id) -> tuple[str, str]:
        row = self.row(invoice_id)
        return row.status, row.additional_status

    def pay(self, invoice_id, sats=DUE) -> str:
        return self.chain.add_mempool_tx([(self.row(invoice_id).address, sats)])

    def payments(self, invoice_id) -> list[Payment]:
        with self.gateway.db.read() as s:
            return list(s.exec(select(Payment).where(Payment.invoice_id == invoice_id)))

    def events(self, invoice_id=None) -> list[InvoiceEvent]:
        with self.gateway.db.read() as s:
            query = select(InvoiceEvent).order_by(InvoiceEvent.id)
            if invoice_id:
                query = query.where(InvoiceEvent.invoice_id == invoice_id)
            return list(s.exec(query))

    def incidents(self, invoice_id=None) -> list[InvoiceIncident]:
        with self.gateway.db.read() as s:
            query = select(InvoiceIncident).order_by(InvoiceIncident.id)
            if invoice_id:
                query = query.where(InvoiceIncident.invoice_id == invoice_id)
            return list(s.exec(query))

    # -- the watcher -----------------------------------------------------------------------
    def run(self, **kw) -> dict:
        """One pass by the next watcher in turn (a second later on the clock)."""
        self.clock.advance(seconds=1)
        watcher = self.watchers[self.turn % len(self.watchers)]
        self.turn += 1
        summary = watcher.run_once(**kw)
        self.summaries.append(summary)
        return summary

    def settle_down(self, limit=60) -> dict:
        """Passes until one covers chain and mempool (the node may be warming up)."""
        for _ in range(limit):
            summary = self.run(force=True)
            if summary["ok"]:
                return summary
        raise AssertionError(f"no good pass: {self.summaries[-3:]}")


@pytest.fixture
def app_config(app_config):
    # The webhook receivers listen on 127.0.0.1 (BUSANPAY_WEBHOOK_ALLOW_PRIVATE=1 where the
    # SSRF guard exists; an unknown override is ignored elsewhere).
    return {**app_config, "webhook_allow_private": True}


@pytest.fixture
def node(app, client, gateway, clock):
    world = Node(app, client, gateway, clock)
    world.settle_down()
    yield world
    world.close()


def assert_one_webhook_per_transition(node: Node):
    per = Counter((e.invoice_id, e.event_type) for e in node.events()
                  if e.event_type in STATUS_EVENTS)
    assert all(n == 1 for n in per.values()), [k for k, n in per.items() if n > 1]


def assert_no_incident_stands(node: Node):
    assert [(r.invoice_id, r.kind, r.opened_why) for r in node.incidents() if r.closed_at is None] == []
    with node.gateway.db.read() as s:
        assert s.exec(select(Invoice).where(Invoice.incident.is_not(None))).all() == []


def assert_ledger_checks(app, gateway):
    post_all(gateway)
    res = app.test_cli_runner().invoke(args=["ledger", "check"])
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------- finding 1

def test_a_reindexing_node_is_waited_for_never_taken_for_a_deep_reorg(node, app, sgateway):
    settled, processing = node.invoice(), node.invoice(speedPolicy="LowSpeed")
    node.chain.mine(5)
    node.pay(settled["id"])
    node.settle_down()
    node.chain.mine()
    node.pay(processing["id"])
    node.settle_down()
    assert node.status(settled["id"]) == ("Settled", "None")
    processing_tx = node.payments(processing["id"])[0].txid
    node.chain.add_mempool_tx([("bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk", 5_000)])
    node.fake.restart(reindex=True, mempool=False)
    waited = set()
    for _ in range(60):
        summary = node.run()
        assert summary["reorgs"] == [], summary
        assert node.status(settled["id"]) == ("Settled", "None")
        assert node.row(settled["id"]).incident is None
        assert node.status(processing["id"]) == ("Processing", "None")
        if summary.get("waiting"):
            waited.add(summary.get("waiting").split(" (")[0])
            assert health(node.gateway)["status"] == "waiting"
        if summary["ok"]:
            break
    assert waited == {"the node is in initial block download", "the node is still loading its mempool"}
    assert health(node.gateway)["status"] == "ok" and health(node.gateway)["waiting"] is None
    (payment,) = node.payments(processing["id"])
    assert (payment.txid, payment.state) == (processing_tx, "seen")
    node.chain.mine()
    node.settle_down()
    assert node.status(processing["id"]) == ("Processing", "None")   # 2 of 6 confirmations
    assert_one_webhook_per_transition(node)
    assert node.incidents() == []
    assert_ledger_checks(app, sgateway)


def test_a_node_whose_tip_fell_below_the_processed_height_is_waited_for(node):
    inv = node.invoice()
    node.pay(inv["id"])
    node.settle_down()
    node.chain.mine(3)
    node.settle_down()
    node.fake.restart(lose_blocks=2, mempool=False, warmup=())
    for _ in range(5):   # waits, never judges: no reorg, no incident
        summary = node.run()
        assert not summary["ok"] and summary["reorgs"] == []
        assert "below the processed height" in (summary.get("waiting") or "") or \
            "mempool" in (summary.get("waiting") or "")
    assert node.status(inv["id"]) == ("Settled", "None") and node.row(inv["id"]).incident is None
    node.chain.mine(3)   # the node goes on past where it was
    node.settle_down()
    assert node.status(inv["id"]) == ("Settled", "None")


# --------------------------------------------------------------------------- finding 2

def test_the_watcher_is_back_within_two_seconds_of_the_node_answering_again(node, clock):
    inv = node.invoice()
    node.fake.stop()
    for _ in range(20):   # a 20 s outage: the back-off has grown past 8 s
        assert node.run()["ok"] is False
    node.pay(inv["id"])
    node.fake.start()
    back = clock()
    time.sleep(0.6)       # a probe is due
    while clock() - back <= timedelta(seconds=2):
        if node.run()["ok"]:
            break
    else:
        raise AssertionError(f"still blind 2 s after the node answered: {node.summaries[-1]}")
    assert node.status(inv["id"]) == ("Processing", "None")


def test_a_zmq_notification_ends_the_back_off_at_once(node):
    node.fake.stop()
    for _ in range(8):
        node.run()
    node.fake.start()
    watcher = node.watchers[node.turn % 2]
    watcher.nudge()   # what chain/jobs.py's ZMQ relay does on a notification
    node.clock.advance(seconds=1)
    assert watcher.run_once()["ok"] is True


# --------------------------------------------------------------------------- finding 3

def test_a_deep_reorg_incident_closes_itself_when_the_payment_confirms_again(node, app, sgateway):
    from dashboard import queries

    inv = node.invoice()
    txid = node.pay(inv["id"])
    node.settle_down()
    node.chain.mine()
    node.settle_down()
    assert node.status(inv["id"]) == ("Settled", "None")
    node.chain.reorg(1, mine=2)   # a longer branch without the payment: back in the mempool
    summary = node.settle_down()
    assert summary["reorgs"] and node.row(inv["id"]).incident == "deep-reorg"
    assert node.api(inv["id"])["incident"]["kind"] == "deep-reorg"
    with node.gateway.db.read() as s:
        assert [r.invoice.id for r in queries.exceptions(s)[0]] == [inv["id"]]
    node.chain.mine()             # the next block confirms it again
    node.settle_down()
    row = node.row(inv["id"])
    assert (row.status, row.incident, row.incident_since) == ("Settled", None, None)
    assert node.api(inv["id"])["incident"] is None
    (record,) = node.incidents(inv["id"])
    assert record.kind == "deep-reorg" and txid in record.opened_why
    assert record.closed_at is not None and "confirmed again" in record.closed_why
    with node.gateway.db.read() as s:
        assert queries.exceptions(s)[0] == []      # the queue shows open ones only
    bodies = [json.loads(e.payload_json) for e in node.events(inv["id"])
              if e.event_type == "BusanPayInvoiceIncident"]
    assert [b["incident"] and b["incident"]["kind"] for b in bodies] == ["deep-reorg", None]
    assert bodies[1]["closedIncident"]["kind"] == "deep-reorg"
    assert_one_webhook_per_transition(node)
    assert_ledger_checks(app, sgateway)


def test_a_city_review_covers_the_incident_it_saw_not_one_that_opens_later(node):
    from dashboard import queries
    from dashboard.models import CityExceptionReview

    inv = node.invoice()
    node.pay(inv["id"])
    node.settle_down()
    node.chain.mine()
    node.settle_down()
    node.chain.reorg(1, mine=2)
    node.settle_down()
    with node.gateway.db.write() as s:
        s.add(CityExceptionReview(invoice_id=inv["id"], kind="deep-reorg", outcome="no-action",
                                  reviewed_at=node.clock()))
    open_queue = lambda: [r.invoice.id for r in queries.exceptions(s)[0]]  # noqa: E731
    with node.gateway.db.read() as s:
        assert open_queue() == []          # reviewed
    node.chain.mine()                      # it confirms again: closed
    node.settle_down()
    node.chain.reorg(1, mine=2)            # and is reorganised away again: a new incident
    node.settle_down()
    assert node.row(inv["id"]).incident == "deep-reorg"
    assert [r.closed_at is None for r in node.incidents(inv["id"])] == [False, True]
    with node.gateway.db.read() as s:
        assert open_queue() == [inv["id"]]


# --------------------------------------------------------------------------- finding 4

def test_the_invoice_api_shows_an_incident_and_only_subscribed_webhooks_hear_of_it(
        app, client, gateway, clock):
    from tests.fakes.webhook_receiver import WebhookReceiver
    from webhooks.worker import service_for

    world = Node(app, client, gateway, clock, speed="HighSpeed", limit=20_000)
    receivers = [WebhookReceiver(), WebhookReceiver()]
    try:
        world.settle_down()
        hooks = []
        for receiver, events in zip(receivers, (None, ["BusanPayInvoiceIncident"])):
            body = {"url": receiver.url}
            if events:
                body["authorizedEvents"] = {"everything": False, "specificEvents": events}
            res = client.post(f"/api/v1/stores/{world.store_id}/webhooks", json=body,
                              headers=auth(world.token))
            assert res.status_code == 200, res.get_json()
            receiver.secret = res.get_json()["secret"]
            hooks.append(res.get_json())
        inv = world.invoice()
        txid = world.pay(inv["id"])
        world.settle_down()
        assert world.status(inv["id"]) == ("Settled", "None")     # 0-conf under the limit
        assert world.api(inv["id"])["incident"] is None
        replacement = world.chain.replace(txid)                  # double-spent after settling
        world.chain.mine(txids=[replacement])
        world.settle_down()
        body = world.api(inv["id"])
        assert (body["status"], body["additionalStatus"]) == ("Settled", "None")
        assert body["incident"] == {"kind": "zero-conf-loss", "since": int(clock().timestamp())}  # the city's 0-conf risk
        service_for(gateway).run_once()
        [heard] = receivers[1].wait_for(1)
        assert heard.json["type"] == "BusanPayInvoiceIncident"
        assert heard.json["incident"] == body["incident"] and "double_spent" in heard.json["reason"]
        time.sleep(0.2)
        assert "BusanPayInvoiceIncident" not in [r.json["type"] for r in receivers[0].requests]
    finally:
        for receiver in receivers:
            receiver.close()
        world.close()


# --------------------------------------------------------------------------- finding 5

def test_a_payment_made_after_expiry_while_the_node_was_unreachable_is_late(node, clock):
    inv = node.invoice()
    expires = node.row(inv["id"]).expires_at
    clock.advance(minutes=14)
    node.settle_down()
    node.fake.stop()
    clock.now = expires + timedelta(seconds=28)
    node.pay(inv["id"])   # the node's mempool dates it; the watcher cannot ask
    node.run()
    node.fake.start()
    node.settle_down()
    (payment,) = node.payments(inv["id"])
    assert payment.seen_at == expires + timedelta(seconds=28) and payment.late
    assert node.status(inv["id"]) == ("Expired", "PaidLate")


def test_a_payment_first_seen_in_a_block_after_expiry_is_dated_by_its_median_time_past(node, clock):
    inv = node.invoice()
    on_time = node.invoice()
    expires = node.row(inv["id"]).expires_at
    node.pay(on_time["id"])
    clock.advance(minutes=14)
    node.settle_down()
    node.fake.stop()
    clock.now = expires + timedelta(minutes=1)
    for _ in range(6):
        clock.advance(seconds=30)
        node.chain.mine()
    node.pay(inv["id"])
    node.chain.mine()
    node.fake.start()
    node.settle_down()
    (payment,) = node.payments(inv["id"])
    assert payment.late and expires < payment.seen_at <= clock()
    assert node.status(inv["id"]) == ("Expired", "PaidLate")
    assert node.status(on_time["id"]) == ("Settled", "None")


# --------------------------------------------------------------------------- finding 6

def test_a_block_between_the_tip_and_the_mempool_scan_never_makes_a_payment_look_replaced(node):
    inv = node.invoice(speedPolicy="LowMediumSpeed")
    node.pay(inv["id"])
    node.settle_down()
    assert node.status(inv["id"]) == ("Processing", "None")
    node.fake.on("getrawmempool", lambda: node.chain.mine())
    summary = node.run(force=True)
    assert summary["ok"] and summary.get("tipMoved") == 1 and summary["blocks"] == 1, summary
    (payment,) = node.payments(inv["id"])
    assert (payment.state, payment.block_height) == ("seen", 1)
    assert node.status(inv["id"]) == ("Processing", "None")


# --------------------------------------------------------------------------- finding 7

def test_a_crash_that_loses_blocks_and_the_mempool_sends_no_second_webhook(node, app, sgateway):
    inv = node.invoice(speedPolicy="LowSpeed")
    waiting = node.invoice(speedPolicy="LowSpeed")
    txid = node.pay(inv["id"])
    node.settle_down()
    node.chain.mine(2)
    pending = node.pay(waiting["id"])
    node.settle_down()
    assert node.status(inv["id"]) == node.status(waiting["id"]) == ("Processing", "None")
    node.fake.crash(lose_blocks=2)   # the payment's block and the mempool are gone
    for _ in range(3):
        assert not node.run()["ok"]
    node.fake.boot()
    node.chain.mine(3)               # the node goes on without them
    node.settle_down()
    assert node.status(inv["id"])[0] == "New" and node.status(waiting["id"])[0] == "New"
    node.chain.rebroadcast(txid)     # the payers' wallets send them again
    node.chain.rebroadcast(pending)
    node.settle_down()
    node.chain.mine(6)
    node.settle_down()
    assert node.status(inv["id"]) == node.status(waiting["id"]) == ("Settled", "None")
    for invoice_id in (inv["id"], waiting["id"]):
        kinds = [e.event_type for e in node.events(invoice_id)]
        assert kinds.count("InvoiceProcessing") == 1 and kinds.count("InvoiceSettled") == 1, kinds
    assert_ledger_checks(app, sgateway)


# --------------------------------------------------------------------------- all of it

@pytest.mark.parametrize("seed", [7, 2026])
def test_after_any_sequence_of_restarts_reindexes_outages_and_reorgs_nothing_false_stands(
        node, app, sgateway, seed):
    rng = random.Random(seed)
    invoices = [node.invoice(speedPolicy=rng.choice(["MediumSpeed", "LowMediumSpeed"]))
                for _ in range(8)]
    paid: list[str] = []
    for step in range(14):
        action = rng.choice(["pay", "pay", "mine", "outage", "crash", "reindex", "reorg"])
        if action == "pay" and len(paid) < len(invoices):
            paid.append(node.pay(invoices[len(paid)]["id"]))
        elif action == "mine":
            node.chain.mine(rng.randint(1, 2))
        elif action == "outage":
            node.fake.stop()
            for _ in range(rng.randint(1, 4)):
                node.run()
            node.fake.start()
        elif action == "crash":
            node.fake.crash(lose_blocks=min(rng.randint(0, 2), len(node.chain.blocks) - 1),
                            mempool=rng.random() < 0.5)
            node.run()
            node.fake.boot(mempool_loading=rng.randint(0, 2))
            node.chain.mine(3)
        elif action == "reindex":
            node.fake.restart(reindex=True, ibd_pace=rng.randint(1, 3), mempool=False)
        elif action == "reorg" and len(node.chain.blocks) > 2:
            node.chain.reorg(1, mine=2)
        for _ in range(rng.randint(0, 3)):
            node.run()
        node.settle_down()
    for txid in paid:
        node.chain.rebroadcast(txid)   # whatever a crash lost, the payers send again
    for invoice in invoices[len(paid):]:
        node.pay(invoice["id"])
    node.settle_down()
    node.chain.mine(2)
    node.settle_down()
    assert {node.status(i["id"]) for i in invoices} == {("Settled", "None")}
    assert_no_incident_stands(node)
    assert_one_webhook_per_transition(node)
    assert_ledger_checks(app, sgateway)


# --------------------------------------------------------------------------- the CLI

def test_watcher_once_exits_0_on_a_good_pass_2_while_the_node_cannot_know_and_1_when_down(
        node, app):
    once = lambda: app.test_cli_runner().invoke(args=["watcher", "once", "--wait", "1"])  # noqa: E731
    assert once().exit_code == 0
    node.chain.mine(4)
    assert once().exit_code == 0
    node.fake.restart(reindex=True, warmup=(), mempool=False)
    waiting = once()
    assert waiting.exit_code == 2 and "initial block download" in json.loads(waiting.output)["waiting"]
    node.fake.stop()
    down = once()
    assert down.exit_code == 1 and "unreachable" in json.loads(down.output)["error"]


def test_a_zmq_notification_from_the_node_wakes_the_job_and_ends_its_back_off(node):
    import struct

    import zmq

    from chain.jobs import jobs
    from chain.runtime import watcher_for

    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    node.backend.zmq_endpoints = [f"tcp://127.0.0.1:{port}"]
    try:
        [job] = jobs(node.gateway)
        watcher = watcher_for(node.gateway)
        node.fake.stop()
        for _ in range(6):
            node.clock.advance(seconds=1)
            watcher.run_once()
        node.fake.start()
        deadline = time.monotonic() + 10
        seq = 0
        while not job.wake.is_set() and time.monotonic() < deadline:
            pub.send_multipart([b"hashblock", bytes(32), struct.pack("<I", seq)])
            seq += 1
            time.sleep(0.05)
        assert job.wake.is_set() and watcher._nudge.is_set()
        watcher._last_probe = time.monotonic()   # no probe due: only the notification counts
        assert watcher.run_once()["ok"] is True
    finally:
        notifier = node.gateway.extras.pop("chain_zmq", None)
        if notifier is not None:
            notifier.close()
        pub.close(0)
        context.term()
