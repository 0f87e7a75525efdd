"""The Lightning core on real node clients: an invoice's BOLT11 comes from LND REST or
clnrest (fakes speaking their wire formats over HTTP on 127.0.0.1), the listener follows
their streams, and the same decision and ledger follow; on SQLite and PostgreSQL."""
from __future__ import annotations

import bolt11
import pytest

from lightning.cln import ClnRestBackend
from lightning.invoices import current_lightning
from lightning.listener import Listener
from lightning.lnd import LndRestBackend
from payments.models import Invoice
from settlement.posting_job import run_once as post_ledger
from settlement.reconcile import check_ledger
from tests.conftest import auth, make_merchant
from tests.fakes.cln_server import FakeCln
from tests.fakes.lnd_server import FakeLnd

MACAROON = "0201036c6e6402f801" + "ab" * 32
RUNE = "busan-test-rune"


@pytest.fixture(params=["lnd", "cln"])
def node(request):
    fake = FakeLnd(macaroon_hex=MACAROON) if request.param == "lnd" else FakeCln(rune=RUNE)
    with fake:
        yield request.param, fake


@pytest.fixture
def app_config(app_config, node):
    kind, fake = node
    credentials = {"lnd_macaroon": MACAROON} if kind == "lnd" else {"cln_rune": RUNE}
    return {**app_config, "lightning": f"{kind}:{fake.url}", **credentials}


def create(app, client) -> dict:
    store_id, token = make_merchant(app)
    res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 5000},
                      headers=auth(token))
    assert res.status_code == 200, res.get_json()
    return res.get_json()


def row(gateway, invoice_id) -> Invoice:
    with gateway.db.read() as s:
        return s.get(Invoice, invoice_id)


def test_the_configured_node_client_is_the_gateway_s_lightning(gateway, node):
    kind, _ = node
    assert isinstance(gateway.lightning, LndRestBackend if kind == "lnd" else ClnRestBackend)


def test_an_invoice_paid_on_the_node_is_settled_through_its_stream_and_posted(
        app, client, gateway, node):
    _, fake = node
    invoice = create(app, client)
    offer = current_lightning(gateway, invoice["id"])
    assert offer.available, offer
    due = row(gateway, invoice["id"]).due_sats
    decoded = bolt11.decode(offer.bolt11)
    assert (decoded.amount_msat, decoded.payment_hash) == (due * 1000, offer.payment_hash)
    assert decoded.description == "Haeundae Coffee ₩5,000"
    assert decoded.expiry <= 15 * 60
    fake.settle(offer.payment_hash)
    listener = Listener(gateway, gateway.lightning, sleep=lambda _s: None)
    summary = listener.run_once(1.0)
    assert summary["recorded"] == 1, summary
    assert row(gateway, invoice["id"]).status == "Settled"
    assert listener.run_once(0.5)["recorded"] == 0  # the stream resumes after its index
    post_ledger(gateway)
    result = check_ledger(gateway)
    assert result["ok"], result["problems"]
    balances = {r["account"]: int(r["balance"]) for r in result["trialBalance"]}
    assert balances["treasury_ln:btc"] == due


def test_a_node_that_is_down_leaves_new_invoices_on_chain_only_and_says_why(
        app, client, gateway, node):
    _, fake = node
    fake.go_down()
    invoice = create(app, client)
    assert row(gateway, invoice["id"]).status == "New"
    offer = current_lightning(gateway, invoice["id"])
    assert offer.bolt11 is None and offer.unavailable == "unreachable"
    summary = Listener(gateway, gateway.lightning, sleep=lambda _s: None).run_once(0.5)
    assert summary["ok"] is False and summary["error"]
    assert MACAROON not in summary["error"] and RUNE not in summary["error"]
