"""A tourist pays the BOLT11 in time, but the gateway hears of it late (the listener was
slow, restarting, or backing off from a node hiccup) while the watcher's clock passes the
invoice's expiry: the invoice must not be decided Expired before the listener has covered
its expiry, so the on-time payment settles it (the merchant is credited, nothing is owed
back). Through the demo node, the listener and the watcher; on SQLite and PostgreSQL."""
from __future__ import annotations

from lightning.models import COVER_GRACE
from settlement.posting_job import run_once as post_ledger
from settlement.reconcile import check_ledger
from tests.integration.test_lightning_core import app_config, demo_chain, world  # noqa: F401


def test_a_bolt11_paid_in_time_but_heard_of_after_expiry_settles_the_invoice(world, clock):
    invoice = world.invoice(5000)
    offer = world.offer(invoice["id"])
    world.listen()  # the listener is up ...
    clock.advance(minutes=14, seconds=50)
    world.node.settle(offer.bolt11)  # ... the tourist pays at 14:50 of 15:00 ...
    clock.advance(minutes=1)
    world.watcher.run_once()  # ... and the watcher passes the expiry before the listener runs
    assert world.row(invoice["id"]).status == "New"  # not decided before the listener covers it
    world.listen()
    row = world.row(invoice["id"])
    assert (row.status, row.additional_status, row.paid_sats) == ("Settled", "None", row.due_sats)
    post_ledger(world.gateway)
    result = check_ledger(world.gateway)
    assert result["ok"], result["problems"]
    balances = {r["account"]: int(r["balance"]) for r in result["trialBalance"]}
    assert balances.get("refunds_owed:btc", 0) == 0
    assert balances[f"merchant_payable:{world.store_id}"] < 0  # credited


def test_an_unpaid_invoice_with_a_bolt11_expires_once_the_listener_has_covered_its_expiry(
        world, clock):
    invoice = world.invoice(5000)
    world.listen()
    clock.advance(minutes=15, seconds=1)
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "New"  # the listener has not looked since
    world.listen()
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "Expired"


def test_a_listener_silent_past_the_grace_holds_no_invoice_open(world, clock):
    invoice = world.invoice(5000)
    world.listen()  # then the node goes silent
    clock.advance(minutes=15)
    clock.advance(seconds=COVER_GRACE.total_seconds() + 1)
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "Expired"


def test_without_a_listener_ever_running_expiry_waits_for_nothing(world, clock):
    invoice = world.invoice(5000)
    clock.advance(minutes=15, seconds=1)
    world.watcher.run_once()
    assert world.row(invoice["id"]).status == "Expired"
