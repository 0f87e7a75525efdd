"""Refund pages: the payer's claim link and the treasury's queue, over HTTP, on SQLite and
PostgreSQL. Overpaid invoices are made with real demo-chain payments and the watcher."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlmodel import select

from accounts.models import AuditEntry
from accounts.service import create_user
from payments.checkout import approximate_amounts, parse_display_rates
from settlement.models import RefundClaim
from tests.integration.test_accounts_login import csrf_token
from tests.integration.test_payment_scenarios import DUE, World, demo_chain  # noqa: F401
from tests.integration.test_settlement_support import balance_of, post_all

REGTEST_ADDRESS = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
MAINNET_ADDRESS = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
TXID = "ab" * 32
EXTRA = 2_500
ADMIN = ("admin@busan.example", "city admin pass 1")
AUDITOR = ("auditor@busan.example", "city auditor pass 1")
TREASURY = ("treasury@busan.example", "treasury pass 1")


def with_refund_pages(app):
    """Register settlement and the refund pages on the test app (idempotent; before the
    first request, as Flask requires)."""
    from settlement.install import install
    from settlement.refund_pages import init_refund_pages

    install(app)
    init_refund_pages(app)
    return app


@pytest.fixture
def world(app, client, gateway, clock, demo_chain):  # noqa: F811
    with_refund_pages(app)
    from settlement.config import SettlementConfig

    gateway.extras["settlement_config"] = SettlementConfig(payout_rail="bankfile",
                                                           min_payout_krw=1000,
                                                           auto_settlement=False)
    w = World(app, client, gateway, clock, demo_chain)
    w.run()
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email=ADMIN[0], password=ADMIN[1], display_name="Admin")
        create_user(s, role="city_auditor", email=AUDITOR[0], password=AUDITOR[1])
        create_user(s, role="treasury", email=TREASURY[0], password=TREASURY[1],
                    display_name="Treasurer")
    return w


def overpaid(world) -> str:
    inv = world.invoice()
    world.pay(inv["id"], DUE + EXTRA)
    world.run()
    world.chain.mine()
    world.run()
    assert world.status(inv["id"]) == ("Settled", "PaidOver")
    post_all(world.gateway)
    return inv["id"]


def login(app, email, password):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    res = client.post("/login", data={"email": email, "password": password,
                                      "csrf_token": csrf_token(client, "/login")})
    assert res.status_code == 302
    return client


def payer(app):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def open_claim(client, invoice_id) -> str:
    token = csrf_token(client, f"/i/{invoice_id}")
    res = client.post(f"/i/{invoice_id}/refund", data={"csrf_token": token})
    assert res.status_code == 303, res.get_data(as_text=True)[:400]
    return res.headers["Location"].split("?")[0]


def claims(gateway) -> list[RefundClaim]:
    with gateway.db.read() as s:
        return list(s.exec(select(RefundClaim)))


def text(res) -> str:
    return re.sub(r"\s+", " ", res.get_data(as_text=True))


# -- the display rates (pure) ----------------------------------------------------------------

def test_display_rates_parse_as_decimals_and_nothing_set_means_nothing_shown():
    assert parse_display_rates("USD=1380.5, JPY=9.12,cny=190.1") == {
        "USD": Decimal("1380.5"), "JPY": Decimal("9.12"), "CNY": Decimal("190.1")}
    assert parse_display_rates(None) == {} and parse_display_rates("") == {}
    assert approximate_amounts(15_000, {}) == []


@pytest.mark.parametrize("bad", ["USD", "USD=abc", "USD=-1", "USD=0", "EUR=1500", "USD=NaN"])
def test_a_malformed_display_rate_is_refused(bad):
    with pytest.raises(ValueError):
        parse_display_rates(bad)


def test_15000_won_is_shown_as_about_10_87_dollars_1645_yen_and_78_9_yuan():
    rates = parse_display_rates("USD=1380.5,JPY=9.12,CNY=190.1")
    assert approximate_amounts(15_000, rates) == [
        ("USD", "≈ $10.87"), ("JPY", "≈ ¥1,645"), ("CNY", "≈ ¥78.9")]
    assert approximate_amounts(15_000, {"JPY": Decimal("9.12")}) == [("JPY", "≈ ¥1,645")]


def test_the_checkout_page_shows_the_approximate_amounts_only_when_rates_are_set(app, client,
                                                                                 merchant):
    from tests.integration.test_checkout_page import create_invoice

    invoice_id = create_invoice(client, *merchant)
    page = text(client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}))
    assert "≈ $" not in page and "for orientation" not in page
    app.config["BUSANPAY_DISPLAY_RATES"] = "USD=1380.5,JPY=9.12,CNY=190.1"
    page = text(client.get(f"/i/{invoice_id}", headers={"Accept-Language": "en"}))
    assert "Approximately, for orientation only:" in page
    assert "≈ $10.87" in page and "≈ ¥1,645" in page and "≈ ¥78.9" in page
    app.config["BUSANPAY_DISPLAY_RATES"] = "USD=oops"
    assert "≈ $" not in text(client.get(f"/i/{invoice_id}"))


# -- the payer -------------------------------------------------------------------------------

def test_a_payer_claims_an_overpayment_and_the_treasury_approves_and_records_it(app, world):
    gateway = world.gateway
    invoice_id = overpaid(world)
    assert balance_of(gateway, "refunds_owed:btc") == -EXTRA
    treasury_before = balance_of(gateway, "treasury:btc")
    tourist = payer(app)
    page = text(tourist.get(f"/i/{invoice_id}"))
    assert "Claim a refund" in page and "0.000025" in page

    link = open_claim(tourist, invoice_id)
    assert link.startswith("/refund/")
    (claim,) = claims(gateway)
    assert (claim.status, claim.amount_sats, claim.invoice_id) == ("open", EXTRA, invoice_id)
    page = text(tourist.get(link + "?new=1"))
    assert "0.000025 BTC" in page and "Keep this link" in page and "only way back" in page
    assert tourist.get(link).headers["Referrer-Policy"] == "no-referrer"

    res = tourist.post(link, data={"csrf_token": csrf_token(tourist, link),
                                   "address": REGTEST_ADDRESS})
    assert res.status_code == 303 and res.headers["Location"] == link
    page = text(tourist.get(link))
    assert "Address received, waiting for approval" in page and REGTEST_ADDRESS in page

    treasurer = login(app, *TREASURY)
    queue = text(treasurer.get("/city/refunds"))
    assert invoice_id in queue and REGTEST_ADDRESS in queue and "Approve" in queue
    token = csrf_token(treasurer, "/city/refunds")
    res = treasurer.post(f"/city/refunds/{claim.id}/approve", data={"csrf_token": token})
    assert res.status_code == 303
    assert claims(gateway)[0].status == "approved"
    assert "Approved, the refund will be sent soon" in text(tourist.get(link))

    res = treasurer.post(f"/city/refunds/{claim.id}/sent", data={"csrf_token": token,
                                                                "txid": "not-a-txid"})
    assert res.status_code == 303
    assert "a txid is 64 hex characters" in text(treasurer.get("/city/refunds"))
    assert claims(gateway)[0].status == "approved"
    assert balance_of(gateway, "refunds_owed:btc") == -EXTRA

    res = treasurer.post(f"/city/refunds/{claim.id}/sent", data={"csrf_token": token,
                                                                "txid": TXID.upper()})
    assert res.status_code == 303
    (claim,) = claims(gateway)
    assert (claim.status, claim.txid) == ("sent", TXID)
    assert balance_of(gateway, "refunds_owed:btc") == 0
    assert balance_of(gateway, "treasury:btc") == treasury_before - EXTRA
    page = text(tourist.get(link))
    assert "Refund sent" in page and TXID in page and 'name="address"' not in page
    page = text(tourist.get(f"/i/{invoice_id}"))
    assert "Your refund has been sent." in page and "Claim a refund" not in page

    with gateway.db.read() as s:
        entries = s.exec(select(AuditEntry).where(AuditEntry.target == claim.id)
                         .order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor_role) for e in entries] == [("refund.approve", "treasury"),
                                                           ("refund.sent", "treasury")]
    assert TXID in entries[1].details_json and invoice_id in entries[0].details_json


def test_a_second_click_in_the_same_browser_goes_back_to_its_own_claim(app, world):
    invoice_id = overpaid(world)
    tourist = payer(app)
    link = open_claim(tourist, invoice_id)
    page = text(tourist.get(f"/i/{invoice_id}"))
    assert "Claim a refund" in page and "is owed back to you" not in page
    res = tourist.post(f"/i/{invoice_id}/refund", data={"csrf_token": csrf_token(tourist, "/login")})
    assert res.status_code == 303 and res.headers["Location"] == link
    assert len(claims(world.gateway)) == 1


def test_a_claim_needs_the_csrf_token_and_an_invoice_that_owes_something(app, world):
    invoice_id = overpaid(world)
    tourist = payer(app)
    assert tourist.post(f"/i/{invoice_id}/refund").status_code == 400
    exact = world.invoice()
    world.pay(exact["id"], DUE)
    world.run()
    post_all(world.gateway)
    assert "Claim a refund" not in text(tourist.get(f"/i/{exact['id']}"))
    res = tourist.post(f"/i/{exact['id']}/refund",
                       data={"csrf_token": csrf_token(tourist, "/login")})
    assert res.status_code == 409 and "Nothing is owed back" in text(res)
    assert tourist.post("/i/nosuchinvoice/refund",
                        data={"csrf_token": csrf_token(tourist, "/login")}).status_code == 404
    assert claims(world.gateway) == []


@pytest.mark.parametrize("address, expected", [
    (MAINNET_ADDRESS, "This is not a valid Bitcoin regtest address"),
    ("hello, this is not an address", "This is not a valid Bitcoin regtest address"),
    ("", "Please enter your refund address."),
])
def test_a_bad_refund_address_gets_a_readable_error_and_changes_nothing(app, world, address,
                                                                         expected):
    invoice_id = overpaid(world)
    tourist = payer(app)
    link = open_claim(tourist, invoice_id)
    (before,) = claims(world.gateway)
    res = tourist.post(link, data={"csrf_token": csrf_token(tourist, link), "address": address})
    assert res.status_code == 422
    page = text(res)
    assert expected in page and 'role="alert"' in page and 'aria-invalid="true"' in page
    (after,) = claims(world.gateway)
    assert (after.status, after.address, after.updated_at) == ("open", None, before.updated_at)


def test_an_unknown_refund_link_is_a_404_page(app, world):
    tourist = payer(app)
    res = tourist.get("/refund/not-a-real-token")
    assert res.status_code == 404 and "Refund link not found" in text(res)
    res = tourist.post("/refund/not-a-real-token",
                       data={"csrf_token": csrf_token(tourist, "/login"), "address": REGTEST_ADDRESS})
    assert res.status_code == 404


# -- the treasury ----------------------------------------------------------------------------

def test_only_treasury_and_city_admin_may_act_the_auditor_reads_and_strangers_sign_in(app, world):
    invoice_id = overpaid(world)
    tourist = payer(app)
    link = open_claim(tourist, invoice_id)
    tourist.post(link, data={"csrf_token": csrf_token(tourist, link), "address": REGTEST_ADDRESS})
    (claim,) = claims(world.gateway)

    assert payer(app).get("/city/refunds").status_code == 302  # to the sign-in page
    auditor = login(app, *AUDITOR)
    page = text(auditor.get("/city/refunds"))
    assert invoice_id in page and "Approve" not in page and 'name="txid"' not in page
    token = csrf_token(auditor, "/login")
    for action in ("approve", "sent"):
        res = auditor.post(f"/city/refunds/{claim.id}/{action}",
                           data={"csrf_token": token, "txid": TXID})
        assert res.status_code == 403, action
    assert claims(world.gateway)[0].status == "submitted"

    admin = login(app, *ADMIN)
    token = csrf_token(admin, "/city/refunds")
    assert admin.post(f"/city/refunds/{claim.id}/approve",
                      data={"csrf_token": token}).status_code == 303
    assert claims(world.gateway)[0].status == "approved"
    page = text(admin.get("/city/refunds?status=approved"))
    assert 'name="txid"' in page and "Record as sent" in page
    with world.gateway.db.read() as s:
        (entry,) = s.exec(select(AuditEntry).where(AuditEntry.action == "refund.approve")).all()
    assert (entry.actor_role, entry.target, entry.store_id) == ("city_admin", claim.id,
                                                                claim.store_id)
