"""Onboarding in a real browser: apply → the city approves → the owner's invitation →
password → a cashier → a ₩15,000 sale paid on the demo chain → settlement pays the approved
account. And: four eyes on payout accounts, and a suspended merchant's refused sale.

Screenshots go to tests/e2e/artifacts/onboarding-*.png (ignored by git).
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from accounts.service import Actor, create_user
from tests.e2e.conftest import BROWSER_TEST, axe_violations
from tests.e2e.test_pos_browser import (LANDSCAPE, PHONE, _demo_chain_missing, app, charge,  # noqa: F401
                                        new_page, server, wait_for_state)

pytestmark = BROWSER_TEST
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ADMIN_PW, TREASURY_PW, OWNER_PW = "city admin pass 1", "treasury pass 12", "gulls over the fish market"
DAY = date(2026, 11, 23)  # the fake clock's day in Seoul


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"onboarding-{name}.png"), full_page=True)


def unexpected(errors: list[str]) -> list[str]:
    """Console errors other than the refusals these tests provoke on purpose (422, 410)."""
    return [e for e in errors if "status of 422" not in e and "status of 410" not in e]


def accessible(page, what: str) -> None:
    bad = axe_violations(page)
    assert not bad, f"axe on {what}: " + json.dumps(bad, indent=1)


@pytest.fixture
def city(app):
    from settlement.config import SettlementConfig
    from settlement.install import install

    install(app)
    gateway = app.extensions["busanpay"]
    gateway.extras["settlement_config"] = SettlementConfig(payout_rail="bankfile", min_payout_krw=1000,
                                                           auto_settlement=False)
    gateway.extras.pop("payout_rails", None)
    with gateway.db.write() as s:
        create_user(s, role="city_admin", email="admin@busan.go.kr", password=ADMIN_PW)
        t1 = create_user(s, role="treasury", email="t1@busan.go.kr", password=TREASURY_PW)
        create_user(s, role="treasury", email="t2@busan.go.kr", password=TREASURY_PW)
        t1_id = t1.id
    return {"gateway": gateway, "t1": t1_id}


def sign_in(page, server, email, password):
    page.goto(f"{server}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def enter_account(page, server, bank, number, holder):
    page.goto(f"{server}/merchant/payout-account")
    page.fill("#bank_name", bank)
    page.fill("#bank_account", number)
    page.fill("#account_holder", holder)
    page.click("text=Send for city approval")


def pay_and_confirm(gateway, invoice_id):
    from chain import demo_ops
    from chain.runtime import demo_chain_for, watcher_for

    demo_ops.pay(gateway, invoice_id)
    assert watcher_for(gateway).run_once(force=True)["ok"]
    demo_chain_for(gateway).mine(1)
    assert watcher_for(gateway).run_once(force=True)["ok"]


def settle(gateway, clock, day):
    from settlement.daily import run_settlement

    clock.advance(days=1)
    return run_settlement(gateway, day)["created"]


def payout_destination(gateway, payout_id):
    from settlement.models import Payout

    with gateway.db.read() as s:
        return s.get(Payout, payout_id).destination


def test_apply_approve_invite_cashier_sale_and_settlement_to_the_approved_account(
        browser, server, app, city, clock):
    missing = _demo_chain_missing()
    if missing:
        pytest.skip(missing)
    gateway = city["gateway"]
    # 1. A business applies from a phone.
    context, page, errors = new_page(browser, PHONE)
    page.goto(f"{server}/apply")
    page.fill("#brn", "123-45-67890")  # a wrong check digit first
    for field, value in {"name_ko": "자갈치 횟집", "name_en": "Jagalchi Sashimi",
                         "address": "부산 중구 자갈치해안로 52", "contact_name": "김민수",
                         "email": "owner@jagalchi.kr", "phone": "051-245-1234",
                         "monthly_volume": "3000000"}.items():
        page.fill(f"#{field}", value)
    page.select_option("#district", "jung-gu")
    page.select_option("#category", "food")
    page.click("button[type=submit]")
    assert "check digit" in page.text_content("#brn-error")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    shot(page, "apply-error-360")
    page.fill("#brn", "123-45-67891")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/apply/received$"))
    accessible(page, "the confirmation")
    shot(page, "apply-received-360")
    assert not unexpected(errors), errors
    context.close()

    # 2. The city admin approves: the store and a one-time invitation link.
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "admin@busan.go.kr", ADMIN_PW)
    page.goto(f"{server}/city/applications")
    page.click("text=자갈치 횟집")
    accessible(page, "the application")
    shot(page, "application-detail")
    page.click("text=Approve: create the store and an owner invitation")
    link = page.text_content("#invitation-link").strip()
    shot(page, "invitation-issued")
    context.close()

    # 3. The owner opens the link, sets a password and lands in the back office.
    context, page, errors = new_page(browser, PHONE)
    page.goto(link)
    page.wait_for_url(re.compile(r".*/invite$"))  # the token left the address bar
    page.fill("#password", "short")
    page.fill("#password_again", "short")
    page.click("button[type=submit]")
    assert "stronger password" in page.text_content("#password-error")
    page.fill("#password", OWNER_PW)
    page.fill("#password_again", OWNER_PW)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/merchant/?$"))
    # ... adds a cashier and a payout account (pending until the treasury approves).
    page.goto(f"{server}/merchant/staff")
    page.fill("#name", "Minji")
    page.fill("#pin", "2580")
    page.fill("#pin_again", "2580")
    page.click("button:has-text('Add cashier')")
    enter_account(page, server, "BNK Busan Bank", "101-2020-3030", "Jagalchi Sashimi")
    assert "Pending city approval" in page.text_content("#latest-change")
    accessible(page, "the payout account page")
    shot(page, "payout-account-pending-360")
    assert not unexpected(errors), errors
    context.close()
    reused = browser.new_context()
    again = reused.new_page()
    again.goto(link)
    assert "already used" in again.text_content("main")
    reused.close()

    # 4. A treasury operator approves the account.
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "t1@busan.go.kr", TREASURY_PW)
    page.goto(f"{server}/city/payout-accounts")
    accessible(page, "the payout-account queue")
    shot(page, "payout-queue")
    page.click("button:text-is('Approve')")
    assert "next payout goes to this account" in page.text_content(".flashes")
    context.close()

    # 5. The cashier charges ₩15,000; the tourist pays on the demo chain.
    from merchants.models import Store

    with gateway.db.read() as s:
        store_id = s.execute(select(Store.id)).scalar_one()
    context, page, errors = new_page(browser, LANDSCAPE)
    page.goto(f"{server}/pos/login")
    page.fill("#store", store_id)
    page.fill("#pin", "2580")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-charge]")
    invoice_id = charge(page, "15000")
    pay_and_confirm(gateway, invoice_id)
    wait_for_state(page, "settled", within=5.0)
    shot(page, "pos-paid")
    context.close()

    # 6. Settlement pays the approved account.
    [payout] = settle(gateway, clock, DAY)
    assert payout["storeId"] == store_id and payout["amount"] == "14850"
    assert payout_destination(gateway, payout["payoutId"]) == "101-2020-3030"
    path = gateway.extras["payout_rails"]["bankfile"].path_for(DAY)
    [row] = list(csv.DictReader(io.StringIO(path.read_text())))
    assert (row["account_holder"], row["bank_account"]) == ("Jagalchi Sashimi", "101-2020-3030")


def test_an_owners_change_waits_for_a_different_treasury_operator(browser, server, app, city,
                                                                  clock):
    from onboarding.payout_accounts import approve_change, request_change
    from tests.conftest import make_merchant
    from tests.integration.test_settlement_support import settled_invoice

    gateway = city["gateway"]
    store_id, _ = make_merchant(app, name="Jagalchi Fish")
    with gateway.db.write() as s:
        create_user(s, role="owner", email="owner@fish.kr", password=OWNER_PW, store_id=store_id)
        first = request_change(s, Actor(city["t1"], "treasury"), store_id, bank_name="BNK Busan Bank",
                               bank_account="101-2020-3030", account_holder="Jagalchi Fish",
                               now=clock())
    with gateway.db.write() as s:
        from accounts.models import User

        t2_id = s.execute(select(User.id).where(User.email == "t2@busan.go.kr")).scalar_one()
        approve_change(s, Actor(t2_id, "treasury"), first.id, clock())

    # The owner changes the account in the browser: pending, and not paid.
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "owner@fish.kr", OWNER_PW)
    enter_account(page, server, "Other Bank", "999-8888-7777", "Somebody Else")
    assert "differs from your business name" in page.text_content("#explanation-error")
    page.fill("#explanation", "sole proprietor: the owner's own account")
    page.click("text=Send for city approval")
    assert "Pending city approval" in page.text_content("#latest-change")
    assert "101-2020-3030" in page.text_content("main")  # still the approved one
    context.close()
    settled_invoice(gateway, store_id, 15_000)
    [payout] = settle(gateway, clock, DAY)
    assert payout_destination(gateway, payout["payoutId"]) == "101-2020-3030"

    # t1 enters yet another account on the CLI, then tries to approve it: refused.
    res = app.test_cli_runner().invoke(args=[
        "settlement", "account", "--store", store_id, "--by", "t1@busan.go.kr",
        "--bank-name", "BNK Busan Bank", "--bank-account", "555-6666-7777",
        "--holder", "Jagalchi Fish"])
    assert res.exit_code == 0, res.output
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "t1@busan.go.kr", TREASURY_PW)
    page.goto(f"{server}/city/payout-accounts")
    assert "by you" in page.text_content("main")
    page.click("button:text-is('Approve')")
    assert "another treasury operator must approve" in page.text_content(".flashes")
    shot(page, "payout-same-person-refused")
    context.close()
    settled_invoice(gateway, store_id, 20_000)
    [payout] = settle(gateway, clock, date(2026, 11, 24))
    assert payout_destination(gateway, payout["payoutId"]) == "101-2020-3030"

    # t2 approves it: the next payout goes there.
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "t2@busan.go.kr", TREASURY_PW)
    page.goto(f"{server}/city/payout-accounts")
    page.click("button:text-is('Approve')")
    context.close()
    settled_invoice(gateway, store_id, 10_000)
    [payout] = settle(gateway, clock, date(2026, 11, 25))
    assert payout_destination(gateway, payout["payoutId"]) == "555-6666-7777"


def test_a_suspended_merchants_pos_refuses_the_sale_and_the_owner_sees_why(browser, server, app,
                                                                          city):
    from tests.conftest import make_merchant

    gateway = city["gateway"]
    store_id, _ = make_merchant(app, name="Haeundae Beach Café")
    with gateway.db.write() as s:
        create_user(s, role="cashier", store_id=store_id, pin="2468", display_name="Minji")
        create_user(s, role="owner", email="owner@cafe.kr", password=OWNER_PW, store_id=store_id)
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "admin@busan.go.kr", ADMIN_PW)
    page.goto(f"{server}/city/merchants/{store_id}/standing")
    page.fill("#reason", "business licence expired on 1 December")
    page.click("button:text-is('Suspend')")
    assert "Suspended" in page.text_content("#standing")
    accessible(page, "the standing page")
    shot(page, "merchant-suspended-city")
    context.close()

    context, page, errors = new_page(browser, LANDSCAPE)
    page.goto(f"{server}/pos/login")
    page.fill("#store", store_id)
    page.fill("#pin", "2468")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-charge]")
    for digit in "15000":
        page.click(f'.keys [data-key="{digit}"]')
    page.click("[data-charge]")
    page.wait_for_function("document.querySelector('[data-error]').textContent.includes('suspended')")
    shot(page, "pos-suspended-refusal")
    context.close()

    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "owner@cafe.kr", OWNER_PW)
    page.goto(f"{server}/merchant")
    assert "business licence expired" in page.text_content("#standing-notice")
    shot(page, "merchant-suspended-owner")
    context.close()


def test_closing_a_merchant_pays_its_balance_and_the_owner_sees_why_and_the_final_payout(
        browser, server, app, city):
    from tests.conftest import make_merchant
    from tests.integration.test_settlement_support import settled_invoice

    gateway = city["gateway"]
    store_id, _ = make_merchant(app, name="Songdo Kiosk")  # with an approved bank account
    with gateway.db.write() as s:
        create_user(s, role="owner", email="owner@kiosk.kr", password=OWNER_PW, store_id=store_id)
    settled_invoice(gateway, store_id, 15_000)
    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "admin@busan.go.kr", ADMIN_PW)
    page.goto(f"{server}/city/merchants/{store_id}/standing")
    page.fill("#reason", "the owner retired")
    page.click("button:text-is('Close the store')")
    assert "Closed" in page.text_content("#standing")
    final = page.text_content("#final-payout")
    assert "Final payout: ₩14,850" in final and "On its way" in final
    accessible(page, "the standing page of a closed store")
    shot(page, "merchant-closed-city")
    assert unexpected(errors) == []
    context.close()

    context, page, errors = new_page(browser, LANDSCAPE)
    sign_in(page, server, "owner@kiosk.kr", OWNER_PW)
    page.goto(f"{server}/merchant")
    notice = page.text_content("#standing-notice")
    assert "closed this store" in notice and "the owner retired" in notice
    assert "Final payout: ₩14,850" in page.text_content("#final-payout")
    accessible(page, "the closed merchant's overview")
    shot(page, "merchant-closed-owner")
    assert unexpected(errors) == []
    context.close()
