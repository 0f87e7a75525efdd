"""Finding 9 (refund claims hijacked) and finding 12 (the claim's secret in the access log),
through HTTP on SQLite and PostgreSQL: an overpaid invoice made with real demo-chain payments
and the watcher, a payer's browser, an attacker who knows only the invoice id, the treasury."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from settlement.models import RefundClaim
from tests.integration.test_accounts_login import csrf_token
from tests.integration.test_payment_scenarios import DUE, demo_chain  # noqa: F401
from tests.integration.test_refund_pages import (AUDITOR, EXTRA, REGTEST_ADDRESS, TREASURY, TXID,
                                                 claims, login, payer, text, world)  # noqa: F401
from tests.integration.test_settlement_support import balance_of, post_all

ROOT = Path(__file__).resolve().parents[2]
ATTACKER_ADDRESS = "bcrt1q57n60fa857n60fa857n60fa857n60fa8u8j3k9"  # a valid regtest address


def overpaid_seen_by(world, browser) -> str:
    """An invoice whose payment request `browser` was shown while unpaid, then overpaid."""
    invoice = world.invoice()
    assert "payer_mark=" in browser.get(f"/i/{invoice['id']}").headers.get("Set-Cookie", "")
    world.pay(invoice["id"], DUE + EXTRA)
    world.run()
    world.chain.mine()
    world.run()
    post_all(world.gateway)
    assert balance_of(world.gateway, "refunds_owed:btc") == -EXTRA
    return invoice["id"]


def open_claim(client, invoice_id) -> str:
    res = client.post(f"/i/{invoice_id}/refund",
                      data={"csrf_token": csrf_token(client, f"/i/{invoice_id}")})
    assert res.status_code == 303, res.get_data(as_text=True)[:300]
    return res.headers["Location"].split("?")[0]


def give_address(client, link: str, address: str):
    return client.post(link, data={"csrf_token": csrf_token(client, "/login"), "address": address})


def claim_at(gateway, link: str) -> RefundClaim:
    claim_id = link.rsplit("/", 1)[1]
    return next(c for c in claims(gateway) if c.id == claim_id)


def key_of(client, link: str) -> str:
    cookie = client.get_cookie("refund_key", path=link)
    assert cookie is not None
    return cookie.value


def test_an_attacker_who_knows_the_invoice_id_and_claims_first_can_neither_take_nor_block_the_refund(
        app, world):
    tourist, attacker = payer(app), payer(app)
    invoice_id = overpaid_seen_by(world, tourist)

    # The attacker (a cashier, the merchant, anyone who saw the receipt) claims first.
    theirs = open_claim(attacker, invoice_id)
    assert give_address(attacker, theirs, ATTACKER_ADDRESS).status_code == 303
    # The payer is not blocked: their own claim stands beside the attacker's.
    page = text(tourist.get(f"/i/{invoice_id}"))
    assert "Claim a refund" in page and "already" not in page
    mine = open_claim(tourist, invoice_id)
    assert mine != theirs
    assert give_address(tourist, mine, REGTEST_ADDRESS).status_code == 303

    # The attacker cannot read or change the payer's claim: its id is no key.
    assert 'name="key"' in text(attacker.get(mine)) and REGTEST_ADDRESS not in text(attacker.get(mine))
    assert give_address(attacker, mine, ATTACKER_ADDRESS).status_code == 403
    res = attacker.post(f"{mine}/key", data={"csrf_token": csrf_token(attacker, "/login"),
                                             "key": key_of(attacker, theirs)})
    assert res.status_code == 403 and "This key does not open this refund" in text(res)
    assert claim_at(world.gateway, mine).address == REGTEST_ADDRESS

    # The treasury sees both claims, with the evidence, and chooses the payer's.
    treasurer = login(app, *TREASURY)
    queue = text(treasurer.get("/city/refunds"))
    assert "2 claims on this invoice: choose one" in queue
    row = lambda link: re.search(rf'id="claim-{link.rsplit("/", 1)[1]}".*?</tr>', queue).group(0)  # noqa: E731
    assert "Opened in the browser that showed the unpaid payment request" in row(mine)
    assert "Opened without the payment request having been shown" in row(theirs)
    token = csrf_token(treasurer, "/city/refunds")
    mine_id, theirs_id = claim_at(world.gateway, mine).id, claim_at(world.gateway, theirs).id
    assert treasurer.post(f"/city/refunds/{mine_id}/approve",
                          data={"csrf_token": token}).status_code == 303
    assert (claim_at(world.gateway, mine).status, claim_at(world.gateway, theirs).status) == \
        ("approved", "rejected")
    # The attacker's claim can no longer be approved, changed, or reopened.
    treasurer.post(f"/city/refunds/{theirs_id}/approve", data={"csrf_token": token})
    assert claim_at(world.gateway, theirs).status == "rejected"
    assert give_address(attacker, theirs, REGTEST_ADDRESS).status_code == 409
    assert "Not chosen" in text(attacker.get(theirs))
    latecomer = payer(app)
    res = latecomer.post(f"/i/{invoice_id}/refund",
                         data={"csrf_token": csrf_token(latecomer, "/login")})
    assert res.status_code == 409 and "already approved a refund claim" in text(res)
    assert len(claims(world.gateway)) == 2

    treasurer.post(f"/city/refunds/{mine_id}/sent", data={"csrf_token": token, "txid": TXID})
    assert (claim_at(world.gateway, mine).status, claim_at(world.gateway, mine).txid) == ("sent", TXID)
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    assert "Refund sent" in text(tourist.get(mine))


def test_a_payer_mark_that_is_forged_or_made_for_another_invoice_is_no_evidence(app, world):
    tourist = payer(app)
    invoice_id = overpaid_seen_by(world, tourist)
    other = world.invoice()["id"]
    stranger = payer(app)
    stranger.get(f"/i/{other}")  # a genuine mark, but for another invoice
    mark = stranger.get_cookie("payer_mark", path=f"/i/{other}").value
    stranger.set_cookie("payer_mark", mark, path=f"/i/{invoice_id}")
    forger = payer(app)
    forger.set_cookie("payer_mark", mark[:-4] + "AAAA", path=f"/i/{invoice_id}")
    for client in (stranger, forger):
        link = open_claim(client, invoice_id)
        assert claim_at(world.gateway, link).shown_unpaid_at is None
    assert claim_at(world.gateway, open_claim(tourist, invoice_id)).shown_unpaid_at is not None


def test_a_saved_link_opens_the_claim_in_another_browser_with_the_key_after_the_hash(app, world):
    tourist = payer(app)
    invoice_id = overpaid_seen_by(world, tourist)
    link = open_claim(tourist, invoice_id)
    page = text(tourist.get(link + "?new=1"))
    key = key_of(tourist, link)
    saved = re.search(r'<code class="link" translate="no">([^<]+)</code>', page).group(1)
    assert saved.endswith(f"{link}#key={key}")
    phone = payer(app)
    page = text(phone.get(link))  # what a server sees of the saved link: no key
    assert 'name="key"' in page and "refunds/key.js" in page and REGTEST_ADDRESS not in page
    res = phone.post(f"{link}/key", data={"csrf_token": csrf_token(phone, "/login"),
                                          "key": f"key={key}"})
    assert res.status_code == 303 and res.headers["Location"] == link
    assert "Keep this link" in text(phone.get(link))
    assert give_address(phone, link, REGTEST_ADDRESS).status_code == 303


def test_the_treasury_credits_an_overpayment_to_the_merchant_from_the_refund_page(app, world):
    tourist = payer(app)
    invoice_id = overpaid_seen_by(world, tourist)
    link = open_claim(tourist, invoice_id)
    auditor = login(app, *AUDITOR)
    assert "Credit to the merchant instead" not in text(auditor.get("/city/refunds"))
    assert auditor.post(f"/city/refunds/invoice/{invoice_id}/credit",
                        data={"csrf_token": csrf_token(auditor, "/login")}).status_code == 403
    treasurer = login(app, *TREASURY)
    assert "Credit to the merchant instead" in text(treasurer.get("/city/refunds"))
    token = csrf_token(treasurer, "/city/refunds")
    res = treasurer.post(f"/city/refunds/invoice/{invoice_id}/credit", data={"csrf_token": token})
    assert res.status_code == 303
    assert claim_at(world.gateway, link).status == "credited"
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    assert "Credited to the merchant" in text(tourist.get(link))
    res = treasurer.post(f"/city/refunds/invoice/{invoice_id}/credit", data={"csrf_token": token})
    assert res.status_code == 303  # nothing is owed any more: refused, nothing posted twice
    assert "credit at most what is owed" in text(treasurer.get("/city/refunds"))
    assert balance_of(world.gateway, "refunds_owed:btc") == 0
    from accounts.models import AuditEntry
    from sqlmodel import select

    with world.gateway.db.read() as s:
        [entry] = s.exec(select(AuditEntry).where(AuditEntry.action == "refund.credit")).all()
    assert (entry.target, entry.actor_role) == (invoice_id, "treasury")


# -- finding 12: the claim's key never reaches the access log ---------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(db_url, tmp_path):
    """The app served by gunicorn (as scripts/start serves it) with its access log in a file."""
    port, log = _free_port(), tmp_path / "access.log"
    env = {**os.environ, "DATABASE_URL": db_url, "BUSANPAY_INSTANCE": str(tmp_path / "instance"),
           "BUSANPAY_INPROCESS_WORKER": "0", "BUSANPAY_SECRET_KEY": "access-log-test-secret"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "4", "--worker-class", "gthread",
                             "--access-logfile", str(log),
                             # the full request line (gunicorn.conf.py's default prints no
                             # path): the point is that no URL of the flow carries the key
                             "--access-logformat", '%(h)s "%(r)s" %(s)s',
                             "app:create_app()"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                requests.get(base + "/login", timeout=30)
                break
            except requests.RequestException:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _csrf(session, url) -> str:
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"',
                     session.get(url).text).group(1)


def test_the_refund_flow_leaves_no_claim_key_in_gunicorns_access_log(app, world, gunicorn):
    tourist = payer(app)
    invoice_id = overpaid_seen_by(world, tourist)
    base, log = gunicorn
    browser, phone = requests.Session(), requests.Session()
    for session in (browser, phone):
        session.headers["Accept-Language"] = "en"
    res = browser.post(f"{base}/i/{invoice_id}/refund",
                       data={"csrf_token": _csrf(browser, f"{base}/i/{invoice_id}")})
    assert res.status_code == 200 and "/refund/" in res.url and "Keep this link" in res.text
    key = browser.cookies.get("refund_key")
    assert key and len(key) >= 40 and key in res.text  # shown to the payer, on the page only
    page = res.url.split("?")[0]
    res = browser.post(page, data={"csrf_token": _csrf(browser, page), "address": REGTEST_ADDRESS})
    assert res.status_code == 200 and "Address received" in res.text
    # the saved link opened in another browser: the key goes in a POST body
    res = phone.post(f"{page}/key", data={"csrf_token": _csrf(phone, page), "key": key})
    assert res.status_code == 200 and REGTEST_ADDRESS in res.text
    time.sleep(0.3)  # the access log is written after each response
    logged = log.read_text()
    claim_path = page.removeprefix(base)
    assert f"POST /i/{invoice_id}/refund" in logged and f"GET {claim_path}" in logged
    assert f"POST {claim_path}/key" in logged
    assert key not in logged
