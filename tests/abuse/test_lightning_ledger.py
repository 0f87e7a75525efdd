"""`ledger check` with Lightning in the mix: entries that credit a merchant beyond the sats
the node received for the invoice, or book its sats in the wrong treasury, fail the check
naming the invoice (written straight into the ledger, as a bug or a hand edit would); on
SQLite and PostgreSQL."""
from __future__ import annotations

import json

from settlement.ledger import Entry, Line, post
from settlement.posting_job import run_once as post_ledger
from tests.integration.test_lightning_core import app_config, demo_chain, world  # noqa: F401


def check(app, world) -> tuple[int, dict]:
    world.clock.advance(minutes=30)  # past the grace a just-changed invoice gets
    res = app.test_cli_runner().invoke(args=["ledger", "check"])
    return res.exit_code, json.loads(res.output)


def paid_over_lightning(world) -> str:
    invoice = world.invoice(5000)
    world.node.settle(world.offer(invoice["id"]).bolt11)
    world.listen()
    post_ledger(world.gateway)
    return invoice["id"]


def forge(world, invoice_id, key, *lines) -> None:
    with world.gateway.db.write() as session:
        assert post(session, Entry(key, "invoice_adjustment", lines, store_id=world.store_id,
                                   invoice_id=invoice_id))


def invoice_problems(report, invoice_id) -> set[str]:
    return {p["problem"] for p in report["problems"] if p.get("invoiceId") == invoice_id}


def test_sats_the_node_never_received_credited_to_the_merchant_fail_the_check(app, world):
    invoice_id = paid_over_lightning(world)
    assert check(app, world)[0] == 0
    forge(world, invoice_id, "forged:ln:1",
          Line("treasury_ln:btc", "BTC", 10_000), Line("conversion:btc", "BTC", -10_000),
          Line("conversion:krw", "KRW", 15_000),
          Line(f"merchant_payable:{world.store_id}", "KRW", -15_000))
    code, report = check(app, world)
    assert code == 1 and invoice_problems(report, invoice_id), report["problems"]


def test_lightning_sats_booked_in_the_on_chain_wallet_fail_the_check(app, world):
    invoice_id = paid_over_lightning(world)
    due = world.row(invoice_id).due_sats
    forge(world, invoice_id, "forged:ln:2",
          Line("treasury:btc", "BTC", due), Line("treasury_ln:btc", "BTC", -due))
    code, report = check(app, world)
    assert code == 1 and "invoice position differs" in invoice_problems(report, invoice_id)
