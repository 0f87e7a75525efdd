"""The demo chain's CLI and page, and `watcher once`, through Flask's CLI runner."""
from __future__ import annotations

import json
import re

import pytest

from chain import cli as chain_cli
from chain import demo_pages
from payments.models import Invoice, Payment
from tests.conftest import auth, make_merchant


@pytest.fixture
def chain_app(app):
    chain_cli.register(app)
    chain_cli.register(app)  # twice is harmless
    demo_pages.register(app)
    yield app
    backend = app.extensions["busanpay"].extras.get("chain_backend")
    if backend is not None:
        backend.close()


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
    return result


def create_invoice(app, amount=15000):
    store_id, token = make_merchant(app)
    res = app.test_client().post(f"/api/v1/stores/{store_id}/invoices", json={"amount": amount},
                                 headers=auth(token))
    assert res.status_code == 200
    return res.get_json()["id"]


def status(app, invoice_id):
    with app.extensions["busanpay"].db.read() as s:
        row = s.get(Invoice, invoice_id)
        return row.status, row.additional_status


def test_demo_pay_mine_and_watcher_once_take_an_invoice_to_settled(chain_app):
    invoice_id = create_invoice(chain_app)
    first = cli(chain_app, "watcher", "once")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["ok"] is True
    paid = cli(chain_app, "demo", "pay", invoice_id)
    assert paid.exit_code == 0, paid.output
    txid = paid.output.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", txid)
    summary = json.loads(cli(chain_app, "watcher", "once").output)
    assert summary["payments"] == 1 and summary["ok"] is True
    assert status(chain_app, invoice_id) == ("Processing", "None")
    with chain_app.extensions["busanpay"].db.read() as s:
        payment = s.query(Payment).one()
        assert (payment.txid, payment.value_sats) == (txid, 10_000)
    mined = cli(chain_app, "demo", "mine", "2")
    assert mined.exit_code == 0 and len(mined.output.split()) == 2
    assert json.loads(cli(chain_app, "watcher", "once").output)["blocks"] == 2
    assert status(chain_app, invoice_id) == ("Settled", "None")
    health = json.loads(cli(chain_app, "watcher", "status").output)
    assert health["status"] == "ok" and health["backend"] == "demo"


def test_demo_pay_defaults_to_what_is_still_due_and_takes_sats(chain_app):
    invoice_id = create_invoice(chain_app)
    cli(chain_app, "watcher", "once")
    assert cli(chain_app, "demo", "pay", invoice_id, "--sats", "4000").exit_code == 0
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("New", "PaidPartial")
    assert cli(chain_app, "demo", "pay", invoice_id).exit_code == 0
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("Processing", "None")
    with chain_app.extensions["busanpay"].db.read() as s:
        assert sorted(p.value_sats for p in s.query(Payment)) == [4000, 6000]
    again = cli(chain_app, "demo", "pay", invoice_id)
    assert again.exit_code != 0 and "nothing is due" in again.output
    unknown = cli(chain_app, "demo", "pay", "nope")
    assert unknown.exit_code != 0 and "no invoice" in unknown.output


def test_demo_double_spend_and_reorg_drop_reach_the_watcher(chain_app):
    invoice_id = create_invoice(chain_app)
    cli(chain_app, "watcher", "once")
    txid = cli(chain_app, "demo", "pay", invoice_id).output.strip()
    cli(chain_app, "watcher", "once")
    replacement = cli(chain_app, "demo", "double-spend", txid)
    assert replacement.exit_code == 0 and replacement.output.strip() != txid
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("New", "None")
    second = cli(chain_app, "demo", "pay", invoice_id).output.strip()
    cli(chain_app, "demo", "mine")
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("Settled", "None")
    orphaned = cli(chain_app, "demo", "reorg", "1", "--drop")
    assert orphaned.exit_code == 0 and len(orphaned.output.split()) == 1
    summary = json.loads(cli(chain_app, "watcher", "once").output)
    assert summary["reorgs"][0]["payments"] >= 1
    with chain_app.extensions["busanpay"].db.read() as s:
        row = s.get(Invoice, invoice_id)
        assert (row.status, row.incident) == ("Settled", "deep-reorg")
        assert s.query(Payment).filter(Payment.txid == second).one().state == "orphaned"
    bad = cli(chain_app, "demo", "double-spend", "00" * 32)
    assert bad.exit_code != 0 and "not in the mempool" in bad.output


@pytest.fixture
def app_config(app_config, request):
    if "not_demo" in request.keywords:
        app_config["chain"] = "esplora:http://127.0.0.1:9"
    return app_config


@pytest.mark.not_demo
def test_demo_commands_and_page_refuse_clearly_off_the_demo_chain(chain_app):
    invoice_id = create_invoice(chain_app)
    for args in (("demo", "pay", invoice_id), ("demo", "mine"), ("demo", "reorg", "1"),
                 ("demo", "double-spend", "00" * 32)):
        result = cli(chain_app, *args)
        assert result.exit_code != 0
        assert "BUSANPAY_CHAIN=demo" in result.output
    assert chain_app.test_client().get(f"/i/{invoice_id}/demo").status_code == 404


def test_the_demo_page_pays_half_pays_the_rest_and_mines_with_a_csrf_token(chain_app):
    invoice_id = create_invoice(chain_app)
    client = chain_app.test_client()
    cli(chain_app, "watcher", "once")
    page = client.get(f"/i/{invoice_id}/demo")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Pay this invoice" in html and "Pay half" in html and "Mine a block" in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    refused = client.post(f"/i/{invoice_id}/demo/pay", data={"part": "half"})
    assert refused.status_code == 400  # no CSRF token
    half = client.post(f"/i/{invoice_id}/demo/pay", data={"part": "half", "csrf_token": token})
    assert half.status_code == 303
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("New", "PaidPartial")
    rest = client.post(f"/i/{invoice_id}/demo/pay", data={"part": "all", "csrf_token": token})
    assert rest.status_code == 303
    assert client.post(f"/i/{invoice_id}/demo/mine", data={"csrf_token": token}).status_code == 303
    cli(chain_app, "watcher", "once")
    assert status(chain_app, invoice_id) == ("Settled", "None")
    assert client.get("/i/nope/demo").status_code == 404
