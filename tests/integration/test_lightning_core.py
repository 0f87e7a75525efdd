"""Lightning as one more way to pay the same invoice: the demo node's BOLT11s, the listener,
the same decision and the same ledger; on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import threading

import bolt11
import pytest
from sqlmodel import select

from chain.watcher import Watcher
from lightning.backend import LightningUnavailable
from lightning.demo_node import DemoLightningNode, DemoRefused
from lightning.invoices import LightningOffers, current_lightning, offers
from lightning.listener import Listener, health
from lightning.models import InvoiceLightning, LightningListenerState
from payments.models import Invoice, InvoiceEvent, Payment
from settlement.posting_job import run_once as post_ledger
from settlement.reconcile import check_ledger
from settlement.rules import TREASURY_BTC, TREASURY_LN, city_fee, received_krw
from tests.conftest import auth, make_merchant
from tests.integration.test_payment_scenarios import demo_chain  # noqa: F401


@pytest.fixture
def app_config(app_config):
    return {**app_config, "lightning": "demo"}


class World:
    def __init__(self, app, client, gateway, clock, chain):
        self.app, self.client, self.gateway, self.clock = app, client, gateway, clock
        self.chain = chain
        self.store_id, self.token = make_merchant(app)
        gateway.extras["chain_backend"] = chain
        self.watcher = Watcher(gateway, chain)
        self.node: DemoLightningNode = gateway.lightning
        self.listener = Listener(gateway, self.node, sleep=lambda _s: None)

    def invoice(self, amount=5000, **checkout) -> dict:
        body = {"amount": amount, **({"checkout": checkout} if checkout else {})}
        res = self.client.post(f"/api/v1/stores/{self.store_id}/invoices", json=body,
                               headers=auth(self.token))
        assert res.status_code == 200, res.get_json()
        return res.get_json()

    def row(self, invoice_id) -> Invoice:
        with self.gateway.db.read() as s:
            return s.get(Invoice, invoice_id)

    def offer(self, invoice_id):
        return current_lightning(self.gateway, invoice_id)

    def listen(self):
        return self.listener.run_once(0)

    def payments(self, invoice_id) -> list[Payment]:
        with self.gateway.db.read() as s:
            return list(s.exec(select(Payment).where(Payment.invoice_id == invoice_id)))

    def events(self, invoice_id) -> list[InvoiceEvent]:
        with self.gateway.db.read() as s:
            return list(s.exec(select(InvoiceEvent).where(InvoiceEvent.invoice_id == invoice_id)
                               .order_by(InvoiceEvent.id)))

    def ledger_balance(self, account: str) -> int:
        result = check_ledger(self.gateway)
        return next((int(r["balance"]) for r in result["trialBalance"]
                     if r["account"] == account), 0)


@pytest.fixture
def world(app, client, gateway, clock, demo_chain):
    w = World(app, client, gateway, clock, demo_chain)
    w.watcher.run_once()
    return w


# -- the BOLT11 -------------------------------------------------------------------------

def test_a_new_invoice_gets_a_signed_regtest_bolt11_for_its_sats_expiring_with_it(world):
    invoice = world.invoice(5000)
    row = world.row(invoice["id"])
    offer = world.offer(invoice["id"])
    assert offer.available and offer.bolt11.startswith("lnbcrt")
    decoded = bolt11.decode(offer.bolt11)
    assert decoded.amount_msat == row.due_sats * 1000
    assert decoded.payment_hash == offer.payment_hash
    assert decoded.description == "Haeundae Coffee ₩5,000"
    assert decoded.date + decoded.expiry <= int(row.expires_at.timestamp())
    assert decoded.date + decoded.expiry >= int(row.expires_at.timestamp()) - 1
    assert decoded.signature is not None and decoded.payee  # signed: the payee key is recovered
    assert offer.uri == f"lightning:{offer.bolt11}"


def test_the_demo_node_refuses_an_expired_bolt11_so_no_lightning_payment_comes_after_expiry(
        world, clock):
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    clock.advance(minutes=15)
    with pytest.raises(DemoRefused, match="expired"):
        world.node.settle(offer.bolt11)
    assert world.listen()["settlements"] == 0
    assert world.payments(invoice["id"]) == []
    assert world.offer(invoice["id"]).bolt11 is None  # and none is offered any more


def test_the_demo_node_refuses_to_pay_a_bolt11_twice(world):
    offer = world.offer(world.invoice(5000)["id"])
    world.node.settle(offer.payment_hash)
    with pytest.raises(DemoRefused, match="already paid"):
        world.node.settle(offer.bolt11)


# -- the listener and the decision -------------------------------------------------------

def test_a_lightning_payment_settles_the_invoice_at_once_with_its_method_on_the_events(world):
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    world.node.settle(offer.bolt11)
    summary = world.listen()
    assert summary["recorded"] == 1
    row = world.row(invoice["id"])
    assert (row.status, row.additional_status, row.paid_sats) == ("Settled", "None", row.due_sats)
    [payment] = world.payments(invoice["id"])
    assert (payment.method, payment.txid, payment.vout, payment.address, payment.value_sats) == (
        "BTC-LN", offer.payment_hash, 0, "lightning", row.due_sats)
    assert payment.block_height is None  # no confirmation, yet final
    kinds = [e.event_type for e in world.events(invoice["id"])]
    assert kinds == ["InvoiceCreated", "InvoiceReceivedPayment", "InvoicePaymentSettled",
                     "InvoiceProcessing", "InvoiceSettled"]
    received = json.loads(world.events(invoice["id"])[1].payload_json)
    assert received["paymentMethodId"] == "BTC-LN"
    assert received["payment"]["id"] == offer.payment_hash
    api = world.client.get(f"/api/v1/invoices/{invoice['id']}", headers=auth(world.token))
    assert api.get_json()["status"] == "Settled"


def test_a_settlement_notified_twice_is_recorded_once(world):
    invoice = world.invoice(5000)
    settlement = world.node.settle(world.offer(invoice["id"]).bolt11)
    assert world.listener.handle(settlement) is True
    assert world.listener.handle(settlement) is False
    assert len(world.payments(invoice["id"])) == 1
    assert world.row(invoice["id"]).paid_sats == world.row(invoice["id"]).due_sats
    assert sum(e.event_type == "InvoiceReceivedPayment" for e in world.events(invoice["id"])) == 1


def test_a_settlement_made_while_the_listener_was_down_is_picked_up_from_the_stored_index(world):
    first, second = world.invoice(5000), world.invoice(7000)
    world.node.settle(world.offer(first["id"]).bolt11)
    assert world.listen()["index"] == 1
    # The listener is stopped; the node settles another; a new listener starts.
    world.node.settle(world.offer(second["id"]).bolt11)
    restarted = Listener(world.gateway, world.node, sleep=lambda _s: None)
    assert restarted.stored_index() == 1
    summary = restarted.run_once(0)
    assert (summary["settlements"], summary["recorded"], summary["index"]) == (1, 1, 2)
    assert world.row(second["id"]).status == "Settled"
    assert len(world.payments(first["id"])) == 1  # resumed after 1: nothing counted twice


class FlakyNode:
    """The demo node behind a switch, like a node that stops answering."""

    def __init__(self, inner):
        self.inner, self.down, self.name = inner, False, inner.name

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def settlements(self, after_index, *, timeout):
        if self.down:
            raise LightningUnavailable("connection refused")
        return self.inner.settlements(after_index, timeout=timeout)

    def create_invoice(self, *args, **kwargs):
        if self.down:
            raise LightningUnavailable("connection refused")
        return self.inner.create_invoice(*args, **kwargs)

    def node_info(self):
        from lightning.backend import NodeInfo

        return NodeInfo(backend="demo", reachable=False) if self.down else self.inner.node_info()


def test_a_node_that_is_down_is_retried_with_a_back_off_and_its_failure_is_stored(world):
    invoice = world.invoice(5000)
    flaky = FlakyNode(world.node)
    listener = Listener(world.gateway, flaky, sleep=lambda _s: None)
    world.node.settle(world.offer(invoice["id"]).bolt11)
    flaky.down = True
    failed = listener.run_once(0)
    assert failed["ok"] is False and "connection refused" in failed["error"]
    assert listener.run_once(0)["skipped"] == "backoff"  # no crash loop
    assert health(world.gateway)["status"] == "down"
    assert world.row(invoice["id"]).status == "New"
    flaky.down = False
    listener._retry_at = 0.0  # the back-off has passed
    assert listener.run_once(0)["recorded"] == 1
    assert world.row(invoice["id"]).status == "Settled"
    assert health(world.gateway)["status"] == "ok"


def test_two_listeners_racing_over_the_same_stream_count_each_settlement_once(world):
    invoices = [world.invoice(5000 + i) for i in range(4)]
    for invoice in invoices:
        world.node.settle(world.offer(invoice["id"]).bolt11)
    listeners = [Listener(world.gateway, world.node, sleep=lambda _s: None) for _ in range(2)]
    errors = []

    def run(listener):
        try:
            listener.run_once(0)
        except Exception as err:  # noqa: BLE001 - the assertion below reports it
            errors.append(err)

    threads = [threading.Thread(target=run, args=(listener,)) for listener in listeners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    for invoice in invoices:
        assert len(world.payments(invoice["id"])) == 1
        assert world.row(invoice["id"]).status == "Settled"
    with world.gateway.db.read() as s:
        state = s.get(LightningListenerState, 1)
    assert (state.last_index, state.settlements) == (4, 4)


# -- on-chain and Lightning together -----------------------------------------------------

def test_after_a_partial_on_chain_payment_the_remainder_gets_a_new_bolt11(world):
    invoice = world.invoice(5000)
    first = world.offer(invoice["id"])
    due = world.row(invoice["id"]).due_sats
    world.chain.pay(world.row(invoice["id"]).address, 1000)
    world.watcher.run_once()
    assert world.row(invoice["id"]).additional_status == "PaidPartial"
    remainder = world.offer(invoice["id"])
    assert remainder.payment_hash != first.payment_hash
    assert bolt11.decode(remainder.bolt11).amount_msat == (due - 1000) * 1000
    assert world.offer(invoice["id"]) == remainder  # asked again: the same one
    history = offers(world.gateway.db, invoice["id"])
    assert [o.active for o in history] == [False, True]
    world.node.settle(remainder.bolt11)
    world.listen()
    row = world.row(invoice["id"])
    # The chain payment has no confirmation yet: the invoice waits for it (MediumSpeed).
    assert (row.status, row.paid_sats) == ("Processing", due)
    world.chain.mine(1)
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "Settled"


def test_money_that_arrives_both_ways_is_paid_over_and_owed_back(world):
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    due = world.row(invoice["id"]).due_sats
    world.chain.pay(world.row(invoice["id"]).address, due)
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "Processing"
    assert world.offer(invoice["id"]).bolt11 is None  # nothing more is offered
    world.node.settle(offer.bolt11)  # the old full-amount BOLT11, paid anyway
    world.listen()
    row = world.row(invoice["id"])
    assert (row.status, row.additional_status, row.paid_sats) == ("Settled", "PaidOver", 2 * due)
    post_ledger(world.gateway)
    result = check_ledger(world.gateway)
    assert result["ok"], result["problems"]
    balances = {r["account"]: int(r["balance"]) for r in result["trialBalance"]}
    assert balances["treasury:btc"] == due and balances["treasury_ln:btc"] == due
    assert balances["refunds_owed:btc"] == -due


# -- the ledger ----------------------------------------------------------------------------

def test_a_lightning_payment_posts_to_the_lightning_treasury_and_credits_the_on_chain_formula(
        world):
    invoice = world.invoice(5000)
    world.node.settle(world.offer(invoice["id"]).bolt11)
    world.listen()
    post_ledger(world.gateway)
    row = world.row(invoice["id"])
    result = check_ledger(world.gateway)
    assert result["ok"], result["problems"]
    balances = {r["account"]: int(r["balance"]) for r in result["trialBalance"]}
    assert balances[TREASURY_LN] == row.due_sats
    assert balances.get(TREASURY_BTC, 0) == 0
    value = min(5000, received_krw(row.due_sats, row.rate))
    assert balances[f"merchant_payable:{world.store_id}"] == -(value - city_fee(value, 100))


def test_msat_fractions_are_never_credited(world):
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    world.node.settle(offer.bolt11, amount_paid_msat=offer.amount_msat + 999)
    world.listen()
    assert world.payments(invoice["id"])[0].value_sats == offer.amount_msat // 1000


# -- when Lightning cannot be offered ------------------------------------------------------

def test_a_node_without_inbound_liquidity_leaves_the_invoice_on_chain_only_with_the_reason(
        world, gateway):
    gateway.invoices.lightning = LightningOffers(
        gateway.db, DemoLightningNode(gateway.db, clock=gateway.clock, inbound_sats=1000),
        gateway.clock)
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    assert offer.bolt11 is None and offer.unavailable == "no-inbound-liquidity"
    assert "inbound liquidity" in offer.reason_text
    with gateway.db.read() as s:
        [row] = s.exec(select(InvoiceLightning).where(InvoiceLightning.invoice_id == invoice["id"]))
    assert (row.bolt11, row.unavailable, row.active) == (None, "no-inbound-liquidity", True)


class DeadNode:
    name = "lnd"

    def __init__(self):
        self.calls = 0

    def create_invoice(self, *a, **k):
        self.calls += 1
        raise LightningUnavailable("connection refused")

    def node_info(self):
        from lightning.backend import NodeInfo

        return NodeInfo(backend="lnd", reachable=False, error="ConnectionError")


def test_an_unreachable_node_leaves_the_invoice_on_chain_only_and_creation_stops_waiting_for_it(
        world, gateway):
    dead = DeadNode()
    gateway.invoices.lightning = LightningOffers(gateway.db, dead, gateway.clock)
    first, second = world.invoice(5000), world.invoice(6000)
    assert world.row(first["id"]).status == "New"  # the invoice itself stands
    assert world.offer(first["id"]).unavailable == "unreachable"
    assert world.offer(second["id"]).unavailable == "unreachable"
    assert dead.calls == 1  # the second creation did not wait for a node that just failed


def test_a_store_paid_directly_in_btc_is_not_offered_lightning(app, world, gateway):
    from payments.addresses import DEMO_TREASURY_KEY
    from payments.service import register_key

    with gateway.db.write() as s:
        key_id = register_key(s, DEMO_TREASURY_KEY, "regtest", "store").id
    store_id, token = make_merchant(app, name="Direct", settlement_mode="btc", key_id=key_id)
    res = world.client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 5000},
                            headers=auth(token))
    assert world.offer(res.get_json()["id"]).unavailable == "btc-direct"


# -- the CLI -------------------------------------------------------------------------------

def test_demo_pay_lightning_pays_the_current_bolt11_and_prints_its_payment_hash(app, world):
    invoice = world.invoice(5000)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "pay-lightning", invoice["id"]])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == world.offer(invoice["id"]).payment_hash
    listened = runner.invoke(args=["lightning", "listen"])
    assert listened.exit_code == 0, listened.output
    assert world.row(invoice["id"]).status == "Settled"
    again = runner.invoke(args=["demo", "pay-lightning", invoice["id"]])
    assert again.exit_code != 0 and "no Lightning invoice to pay" in again.output


def test_demo_pay_lightning_refuses_an_expired_invoice_and_an_unknown_one(app, world, clock):
    invoice = world.invoice(5000)
    clock.advance(minutes=16)
    runner = app.test_cli_runner()
    expired = runner.invoke(args=["demo", "pay-lightning", invoice["id"]])
    assert expired.exit_code != 0 and "expired" in expired.output
    unknown = runner.invoke(args=["demo", "pay-lightning", "nope"])
    assert unknown.exit_code != 0 and "no invoice nope" in unknown.output


def test_lightning_status_prints_the_node_s_reachability_balance_and_inbound_liquidity(app, world):
    world.node.settle(world.offer(world.invoice(5000)["id"]).bolt11)
    result = app.test_cli_runner().invoke(args=["lightning", "status"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["backend"] == "demo" and status["reachable"] is True
    assert int(status["channelBalanceSats"]) > 0
    assert int(status["inboundLiquiditySats"]) == 100_000_000 - int(status["channelBalanceSats"])


# -- the chain side never takes a Lightning payment for a chain one ---------------------------

def test_the_watcher_never_tracks_orphans_or_confirms_a_lightning_payment(world):
    from chain.models import ChainPaymentTrack

    invoice = world.invoice(5000)
    world.node.settle(world.offer(invoice["id"]).bolt11)
    world.listen()
    for _ in range(3):
        world.chain.mine(1)
        world.watcher.run_once()
    world.chain.reorg(2)
    world.watcher.run_once()
    [payment] = world.payments(invoice["id"])
    assert (payment.state, payment.block_height, payment.method) == ("seen", None, "BTC-LN")
    with world.gateway.db.read() as s:
        assert s.exec(select(ChainPaymentTrack)).all() == []
    row = world.row(invoice["id"])
    assert (row.status, row.incident) == ("Settled", None)


def test_a_lightning_payment_is_no_zero_conf_exposure_and_no_used_address(app, world, gateway):
    from dashboard.queries import exposure
    from payments.zero_conf import committed_krw

    store_id, token = make_merchant(app, name="Beach Stand", speed_policy="HighSpeed",
                                    zero_conf_limit_krw=50_000)
    res = world.client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 5000},
                            headers=auth(token))
    invoice_id = res.get_json()["id"]
    with gateway.db.read() as s:
        assert committed_krw(s, gateway.clock()) == 5000  # New and 0-conf eligible
    world.node.settle(world.offer(invoice_id).bolt11)
    world.listen()
    assert world.row(invoice_id).status == "Settled"
    with gateway.db.read() as s:
        assert committed_krw(s, gateway.clock()) == 0
        assert exposure(s, 50_000, gateway.clock()).rows == []
    [treasury] = [k for k in gateway.invoices.key_usage() if k["owner"] == "treasury"]
    assert treasury["highestIndexPaid"] is None


# -- in process, as on the embedded default ---------------------------------------------------

def test_the_in_process_listener_changes_status_json_within_a_second_of_the_node_settling(
        app, client, gateway, world):
    import time

    from background import Scheduler, jobs_for
    from chain.memchain import MemoryChain
    from tests.integration.test_worker import wait_for

    gateway.extras["chain_backend"] = MemoryChain()
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    scheduler = Scheduler(jobs_for(gateway))
    assert "lightning" in [job.name for job in scheduler.jobs]
    scheduler.start()
    try:
        etag = client.get(f"/i/{invoice['id']}/status.json").headers["ETag"]
        time.sleep(0.3)  # the listener is following the stream
        started = time.monotonic()
        world.node.settle(offer.bolt11)
        assert wait_for(lambda: client.get(f"/i/{invoice['id']}/status.json",
                                           headers={"If-None-Match": etag}).status_code == 200,
                        timeout=5, step=0.02)
        assert time.monotonic() - started < 1.0
        assert client.get(f"/i/{invoice['id']}/status.json").get_json()["status"] == "Settled"
    finally:
        scheduler.stop()


def test_server_info_names_btc_ln_when_a_node_is_configured(client, merchant):
    _, token = merchant
    body = client.get("/api/v1/server/info", headers=auth(token)).get_json()
    assert body["supportedPaymentMethods"] == ["BTC-CHAIN", "BTC-LN"]


def test_two_pages_asking_at_once_for_an_invoice_s_first_offer_get_the_same_one(world, gateway):
    desk = gateway.invoices.lightning
    gateway.invoices.lightning = None  # created while Lightning was off: no offer yet
    invoice = world.invoice(5000)
    gateway.invoices.lightning = desk
    got, errors = [], []

    def ask():
        try:
            got.append(world.offer(invoice["id"]))
        except Exception as err:  # noqa: BLE001 - the assertion below reports it
            errors.append(err)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len({o.payment_hash for o in got}) == 1 and got[0].available
    assert [o.active for o in offers(gateway.db, invoice["id"])] == [True]


def test_an_invoice_left_on_chain_only_by_a_dead_node_is_offered_lightning_when_it_is_back(
        world, gateway, clock):
    flaky = FlakyNode(world.node)
    flaky.down = True
    desk = LightningOffers(gateway.db, flaky, gateway.clock)
    gateway.invoices.lightning = desk
    invoice = world.invoice(5000)
    assert world.offer(invoice["id"]).unavailable == "unreachable"
    flaky.down = False
    assert world.offer(invoice["id"]).unavailable == "unreachable"  # pages do not retry at once
    clock.advance(seconds=31)
    desk._down_until = 0.0  # the breaker's seconds have passed
    offer = world.offer(invoice["id"])
    assert offer.available and bolt11.decode(offer.bolt11).amount_msat == offer.amount_msat
    assert [o.unavailable for o in offers(gateway.db, invoice["id"])] == ["unreachable", None]


def test_a_sale_takes_the_lightning_node_s_sats_first_and_the_books_still_agree(world, gateway):
    from decimal import Decimal

    from settlement.conversion import UpbitClient, convert
    from tests.fakes.exchange_private import ExchangeFake

    paid_ln = world.invoice(5000)
    world.node.settle(world.offer(paid_ln["id"]).bolt11)
    world.listen()
    paid_chain = world.invoice(7000)
    world.chain.pay(world.row(paid_chain["id"]).address, world.row(paid_chain["id"]).due_sats)
    world.chain.mine(1)
    world.watcher.run_once()
    assert world.row(paid_chain["id"]).status == "Settled"
    post_ledger(gateway)
    ln_sats = world.row(paid_ln["id"]).due_sats
    chain_sats = world.row(paid_chain["id"]).due_sats
    half = ln_sats // 2
    with ExchangeFake(price=Decimal("150400000")) as fake:
        client = UpbitClient(fake.url, fake.access_key, fake.secret_key, poll_seconds=0.01)
        assert convert(gateway, client, min_sats=1, limit=lambda _s, _sats: half)["sats"] == half
        assert world.ledger_balance(TREASURY_LN) == ln_sats - half  # the node's sats went first
        assert world.ledger_balance(TREASURY_BTC) == chain_sats
        assert convert(gateway, client, min_sats=1)["sats"] == ln_sats + chain_sats - half
    result = check_ledger(gateway)
    assert result["ok"], result["problems"]
    balances = {r["account"]: int(r["balance"]) for r in result["trialBalance"]}
    assert balances.get(TREASURY_LN, 0) == 0 and balances.get(TREASURY_BTC, 0) == 0
