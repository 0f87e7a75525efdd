"""Payment scenarios end to end: invoices through the public API, payments on the demo
chain, the watcher in between; on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlmodel import select

from chain.backends import BackendUnavailable
from chain.backends.demo import DemoChain
from chain.watcher import Watcher, health
from payments.models import Invoice, InvoiceEvent, Payment
from tests.conftest import auth, make_merchant


class Flaky:
    """A backend proxy that can be switched off like an unreachable server."""

    def __init__(self, inner):
        self.inner = inner
        self.down = False
        self.name = inner.name

    def __getattr__(self, item):
        attr = getattr(self.inner, item)
        if item in ("tip", "block_hash_at", "block", "mempool_txs", "tx_status") and self.down:
            def refuse(*_a, **_k):
                raise BackendUnavailable("connection refused", retry_after=30)
            return refuse
        return attr


class World:
    def __init__(self, app, client, gateway, clock, chain, speed="MediumSpeed", limit=0,
                 tolerance=0):
        from decimal import Decimal

        self.app, self.client, self.gateway, self.clock = app, client, gateway, clock
        self.chain = chain
        self.store_id, self.token = make_merchant(app, speed_policy=speed,
                                                  zero_conf_limit_krw=limit,
                                                  payment_tolerance=Decimal(tolerance))
        gateway.extras["chain_backend"] = chain
        self.watcher = Watcher(gateway, chain)
        self.summaries = []

    def invoice(self, amount=15000, **checkout) -> dict:
        body = {"amount": amount}
        if checkout:
            body["checkout"] = checkout
        res = self.client.post(f"/api/v1/stores/{self.store_id}/invoices", json=body,
                               headers=auth(self.token))
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def topup(self) -> dict:
        res = self.client.post(f"/api/v1/stores/{self.store_id}/invoices", json={},
                               headers=auth(self.token))
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def row(self, invoice_id) -> Invoice:
        with self.gateway.db.read() as s:
            return s.get(Invoice, invoice_id)

    def status(self, invoice_id) -> tuple[str, str]:
        body = self.client.get(f"/api/v1/invoices/{invoice_id}", headers=auth(self.token)).get_json()
        return body["status"], body["additionalStatus"]

    def address(self, invoice_id) -> str:
        return self.row(invoice_id).address

    def pay(self, invoice_id, sats) -> str:
        return self.chain.pay(self.address(invoice_id), sats)

    def run(self, **kw) -> dict:
        summary = self.watcher.run_once(**kw)
        self.summaries.append(summary)
        return summary

    def events(self, invoice_id) -> list[str]:
        with self.gateway.db.read() as s:
            rows = s.exec(select(InvoiceEvent).where(InvoiceEvent.invoice_id == invoice_id)
                          .order_by(InvoiceEvent.id)).all()
        return [r.event_type for r in rows]

    def event_bodies(self, invoice_id, event_type) -> list[dict]:
        with self.gateway.db.read() as s:
            rows = s.exec(select(InvoiceEvent).where(InvoiceEvent.invoice_id == invoice_id,
                                                     InvoiceEvent.event_type == event_type)).all()
        return [json.loads(r.payload_json) for r in rows]

    def payments(self, invoice_id) -> list[Payment]:
        with self.gateway.db.read() as s:
            return list(s.exec(select(Payment).where(Payment.invoice_id == invoice_id)
                               .order_by(Payment.id)))


@pytest.fixture
def demo_chain(tmp_path):
    chain = DemoChain(str(tmp_path / "demochain.sqlite3"))
    yield chain
    chain.close()


@pytest.fixture
def world(app, client, gateway, clock, demo_chain):
    w = World(app, client, gateway, clock, demo_chain)
    w.run()  # the watcher starts before the first payment (first pass covers "now")
    return w


def make_world(app, client, gateway, clock, chain, **kw):
    w = World(app, client, gateway, clock, chain, **kw)
    w.run()
    return w


DUE = 10_000  # 15,000 won at the test rate of 150,000,000 won/BTC


def test_an_exact_payment_goes_new_processing_settled_after_one_confirmation(world):
    inv = world.invoice()
    assert world.status(inv["id"]) == ("New", "None")
    txid = world.pay(inv["id"], DUE)
    world.run()
    assert world.status(inv["id"]) == ("Processing", "None")
    (payment,) = world.payments(inv["id"])
    assert (payment.txid, payment.value_sats, payment.state, payment.block_height) == \
        (txid, DUE, "seen", None)
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    assert world.events(inv["id"]) == ["InvoiceCreated", "InvoiceReceivedPayment",
                                       "InvoiceProcessing", "InvoicePaymentSettled",
                                       "InvoiceSettled"]
    (received,) = world.event_bodies(inv["id"], "InvoiceReceivedPayment")
    assert received["payment"]["value"] == "0.0001" and received["afterExpiration"] is False
    assert received["payment"]["id"] == f"{txid}-{payment.vout}"
    assert received["paymentMethodId"] == "BTC-CHAIN"
    assert world.row(inv["id"]).paid_sats == DUE


def test_two_partial_payments_that_add_up_make_it_processing_then_settled(world):
    inv = world.invoice()
    world.pay(inv["id"], 4_000)
    world.run()
    assert world.status(inv["id"]) == ("New", "PaidPartial")
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("New", "PaidPartial")
    world.pay(inv["id"], 6_000)
    world.run()
    assert world.status(inv["id"]) == ("Processing", "None")
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    assert world.events(inv["id"]).count("InvoicePaymentSettled") == 2
    assert world.events(inv["id"]).count("InvoiceReceivedPayment") == 2


def test_an_overpayment_settles_paid_over(world):
    inv = world.invoice()
    world.pay(inv["id"], DUE + 2_500)
    world.run()
    assert world.status(inv["id"]) == ("Processing", "PaidOver")
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "PaidOver")
    (settled,) = world.event_bodies(inv["id"], "InvoiceSettled")
    assert settled["overPaid"] is True and settled["manuallyMarked"] is False


def test_an_underpayment_within_tolerance_settles(app, client, gateway, clock, demo_chain):
    w = make_world(app, client, gateway, clock, demo_chain, tolerance=2)
    inv = w.invoice()
    w.pay(inv["id"], 9_800)  # 2 % short
    w.run()
    assert w.status(inv["id"]) == ("Processing", "None")
    w.chain.mine()
    w.run()
    assert w.status(inv["id"]) == ("Settled", "None")


def test_an_underpayment_outside_tolerance_stays_partial_and_expires_partial(
        app, client, gateway, clock, demo_chain):
    w = make_world(app, client, gateway, clock, demo_chain, tolerance=2)
    inv = w.invoice()
    w.pay(inv["id"], 9_799)
    w.run()
    w.chain.mine()
    w.run()
    assert w.status(inv["id"]) == ("New", "PaidPartial")
    clock.advance(minutes=15)
    w.run()
    assert w.status(inv["id"]) == ("Expired", "PaidPartial")
    (expired,) = w.event_bodies(inv["id"], "InvoiceExpired")
    assert expired["partiallyPaid"] is True


def test_a_late_payment_leaves_it_expired_paid_late_and_never_settles(world, clock):
    inv = world.invoice()
    clock.advance(minutes=15, seconds=1)
    world.run()
    assert world.status(inv["id"]) == ("Expired", "None")
    world.pay(inv["id"], DUE)
    world.run()
    assert world.status(inv["id"]) == ("Expired", "PaidLate")
    world.chain.mine(6)
    world.run()
    assert world.status(inv["id"]) == ("Expired", "PaidLate")
    (payment,) = world.payments(inv["id"])
    assert payment.late is True
    (received,) = world.event_bodies(inv["id"], "InvoiceReceivedPayment")
    assert received["afterExpiration"] is True
    assert "InvoiceSettled" not in world.events(inv["id"])


def test_a_payment_after_monitoring_ended_is_recorded_and_flagged_but_not_credited(world, clock):
    inv = world.invoice()
    clock.advance(minutes=15, seconds=1)
    world.run()
    clock.advance(hours=24)
    world.run()
    assert world.status(inv["id"]) == ("Expired", "None")
    version = world.row(inv["id"]).version
    world.pay(inv["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    (payment,) = world.payments(inv["id"])
    assert payment.late is True and payment.block_height is not None
    row = world.row(inv["id"])
    assert (row.status, row.additional_status, row.paid_sats) == ("Expired", "None", 0)
    assert row.incident == "paid-after-monitoring" and row.version > version
    assert world.events(inv["id"]) == ["InvoiceCreated", "InvoiceExpired", "BusanPayInvoiceIncident"]


def test_a_replacement_before_confirmation_sends_processing_back_to_new(world):
    inv = world.invoice()
    txid = world.pay(inv["id"], DUE)
    world.run()
    assert world.status(inv["id"]) == ("Processing", "None")
    world.chain.double_spend(txid)
    world.run()
    assert world.status(inv["id"]) == ("New", "None")
    assert world.payments(inv["id"])[0].state == "replaced"
    world.chain.mine()
    world.run()
    assert world.payments(inv["id"])[0].state == "double_spent"
    assert world.status(inv["id"]) == ("New", "None")
    # Paying again works and is counted once.
    world.pay(inv["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    assert world.row(inv["id"]).paid_sats == DUE
    # One transition New -> Processing, one webhook: paid again is not a second transition.
    assert world.events(inv["id"]).count("InvoiceProcessing") == 1


def test_a_reorg_of_a_confirmed_payment_is_followed_and_counted_once(world):
    inv = world.invoice(speedPolicy="LowMediumSpeed")  # 2 confirmations
    world.pay(inv["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Processing", "None")
    assert world.payments(inv["id"])[0].block_height is not None
    world.chain.reorg(1)
    summary = world.run()
    assert summary["reorgs"] and summary["reorgs"][0]["payments"] == 1
    (payment,) = world.payments(inv["id"])
    assert (payment.state, payment.block_height) == ("seen", None)
    assert world.status(inv["id"]) == ("Processing", "None")
    world.chain.mine(2)
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    assert world.row(inv["id"]).paid_sats == DUE and world.row(inv["id"]).incident is None
    events = world.events(inv["id"])
    for name in ("InvoiceReceivedPayment", "InvoiceProcessing", "InvoicePaymentSettled",
                 "InvoiceSettled"):
        assert events.count(name) == 1, events


@pytest.mark.parametrize("drop", [False, True])
def test_a_reorg_deeper_than_the_settlement_keeps_it_settled_flags_an_incident_until_it_confirms_again(
        world, drop):
    inv = world.invoice()
    world.pay(inv["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    world.chain.reorg(1, drop=drop)
    world.run()
    row = world.row(inv["id"])
    assert (row.status, row.incident) == ("Settled", "deep-reorg")
    world.chain.mine(2)  # the payment, back in the mempool unless dropped, confirms again
    world.run()
    row = world.row(inv["id"])
    assert (row.status, row.incident) == ("Settled", "deep-reorg" if drop else None)
    assert row.paid_sats == (0 if drop else DUE)
    assert len(world.payments(inv["id"])) == 1
    assert world.events(inv["id"]).count("InvoiceSettled") == 1
    assert world.events(inv["id"]).count("InvoicePaymentSettled") == 1


def test_a_backend_down_for_an_hour_expires_nothing_wrongly_and_catches_up_when_back(
        app, client, gateway, clock, demo_chain):
    flaky = Flaky(demo_chain)
    w = make_world(app, client, gateway, clock, flaky)
    paid = w.invoice()
    unpaid = w.invoice()
    flaky.down = True
    w.pay(paid["id"], DUE)  # the tourist pays while the gateway cannot see the chain
    for _ in range(6):
        clock.advance(minutes=10)
        summary = w.run()
        assert summary["ok"] is False
        assert w.status(paid["id"]) == ("New", "None")
        assert w.status(unpaid["id"]) == ("New", "None")
    h = health(gateway)
    assert h["status"] == "down" and "connection refused" in h["lastError"]
    assert h["failures"] >= 1 and h["backoffUntil"] is not None
    assert w.run()["skipped"] == "backoff"
    flaky.down = False
    clock.advance(minutes=1)
    summary = w.run()
    assert summary["ok"] is True, summary
    assert w.status(paid["id"]) == ("Processing", "None")  # it may have come in time
    assert w.status(unpaid["id"]) == ("Expired", "None")   # nothing came: now it may expire
    assert w.payments(paid["id"])[0].late is False
    demo_chain.mine()
    w.run()
    assert w.status(paid["id"]) == ("Settled", "None")
    assert health(gateway)["status"] == "ok"


def test_high_speed_settles_at_zero_confirmations_under_the_won_limit_only(
        app, client, gateway, clock, demo_chain):
    w = make_world(app, client, gateway, clock, demo_chain, speed="HighSpeed", limit=20_000)
    small = w.invoice(15_000)
    big = w.invoice(30_000)
    w.pay(small["id"], DUE)
    w.pay(big["id"], 2 * DUE)
    w.run()
    assert w.status(small["id"]) == ("Settled", "None")
    assert w.status(big["id"]) == ("Processing", "None")
    assert w.events(small["id"]) == ["InvoiceCreated", "InvoiceReceivedPayment",
                                     "InvoicePaymentSettled", "InvoiceProcessing",
                                     "InvoiceSettled"]
    demo_chain.mine()
    w.run()
    assert w.status(big["id"]) == ("Settled", "None")


def test_a_top_up_invoice_waits_for_a_payment_and_any_amount_is_full(world, clock):
    inv = world.topup()
    world.run()
    assert world.status(inv["id"]) == ("New", "None")
    world.pay(inv["id"], 1_234)
    world.run()
    assert world.status(inv["id"]) == ("Processing", "None")
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")


def test_repeated_passes_write_every_event_exactly_once(world):
    a, b = world.invoice(), world.invoice()
    world.pay(a["id"], DUE)
    world.pay(b["id"], 3_000)
    for _ in range(3):
        world.run()
    world.chain.mine()
    for _ in range(3):
        world.run()
    world.chain.mine(8)
    for _ in range(3):
        world.run()
    assert world.events(a["id"]) == ["InvoiceCreated", "InvoiceReceivedPayment",
                                     "InvoiceProcessing", "InvoicePaymentSettled",
                                     "InvoiceSettled"]
    assert world.events(b["id"]) == ["InvoiceCreated", "InvoiceReceivedPayment",
                                     "InvoicePaymentSettled"]
    with world.gateway.db.read() as s:
        keys = [e.dedupe_key for e in s.exec(select(InvoiceEvent))]
    assert len(keys) == len(set(keys))


def test_the_version_changes_with_each_visible_change_only(world):
    inv = world.invoice()
    v0 = world.row(inv["id"]).version
    world.run()
    assert world.row(inv["id"]).version == v0
    world.pay(inv["id"], DUE)
    world.run()
    v1 = world.row(inv["id"]).version
    assert v1 > v0
    world.run()
    assert world.row(inv["id"]).version == v1


def test_a_settled_payment_re_mined_on_the_winning_branch_is_no_incident_and_counted_once(world):
    inv = world.invoice()
    txid = world.pay(inv["id"], DUE)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "None")
    old_height = world.payments(inv["id"])[0].block_height
    world.chain.reorg(1)
    world.chain.mine(2)  # the competing branch includes the same payment
    summary = world.run()
    assert summary["reorgs"] and summary["blocks"] == 2
    (payment,) = world.payments(inv["id"])
    assert (payment.txid, payment.state, payment.block_height) == (txid, "seen", old_height)
    row = world.row(inv["id"])
    assert (row.status, row.incident, row.paid_sats) == ("Settled", None, DUE)
    assert world.events(inv["id"]).count("InvoicePaymentSettled") == 1


def test_a_double_spend_confirmed_unseen_makes_it_invalid_also_when_found_by_index_probes(
        world, monkeypatch):
    import chain.watcher

    monkeypatch.setattr(chain.watcher, "PENDING_INPUTS_READ_WHOLE", 0)
    inv = world.invoice()
    txid = world.pay(inv["id"], DUE)
    world.run()
    world.chain.double_spend(txid)
    world.chain.mine()  # the conflicting transaction confirms before the watcher looks
    world.run()
    assert world.payments(inv["id"])[0].state == "double_spent"
    # Seen Processing, then its payment double-spent: Invalid (the brief's rule).
    assert world.status(inv["id"]) == ("Invalid", "None")
    assert world.events(inv["id"])[-1] == "InvoiceInvalid"
