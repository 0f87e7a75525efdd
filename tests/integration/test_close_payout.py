"""Closing a merchant pays its whole balance once (a final payout through the daily rails),
and daily settlement never pays a store without an approved payout account: it skips and
flags it, and pays the whole balance once an account is approved. Both databases."""
from __future__ import annotations

import threading
from datetime import date

from sqlalchemy import select

from accounts.models import AuditEntry
from onboarding import payout_accounts as pa
from onboarding.lifecycle import set_standing
from settlement.daily import run_settlement
from settlement.models import Payout
from tests.integration.test_onboarding_lifecycle import shop  # noqa: F401
from tests.integration.test_pos import ADMIN_PW, OWNER_PW, form_token, sign_in_with_email
from tests.integration.test_settlement_support import (balance_of, new_store,  # noqa: F401
                                                       settled_invoice, sgateway)

DAY = date(2026, 11, 23)  # the fake clock starts at 12:00 in Seoul on this day


def payouts(gateway, store):
    with gateway.db.read() as s:
        return list(s.execute(select(Payout).where(Payout.store_id == store)
                              .order_by(Payout.created_at)).scalars())


def ledger_ok(gateway) -> bool:
    from settlement.reconcile import check_ledger

    return check_ledger(gateway)["ok"]


def close_on_the_web(client, store, reason="business closed"):
    sign_in_with_email(client, "admin@busan.go.kr", ADMIN_PW)
    url = f"/city/merchants/{store}/standing"
    res = client.post(url, data={"csrf_token": form_token(client, url), "standing": "closed",
                                 "reason": reason})
    assert res.status_code == 303
    return client.get(url).get_data(as_text=True)


def close(gateway, shop):  # noqa: F811 - the fixture's value
    with gateway.db.write() as s:
        return set_standing(s, shop["admin"], shop["store"], "closed", reason="business closed",
                            now=gateway.clock()).final_payout


def treasury(app):
    from accounts.service import Actor, create_user

    with app.extensions["busanpay"].db.write() as s:
        people = [create_user(s, role="treasury", email=f"t{i}@busan.go.kr", password=ADMIN_PW)
                  for i in (1, 2)]
        return [Actor(p.id, p.role) for p in people]


def test_closing_pays_the_whole_balance_once_even_under_the_minimum_to_the_approved_account(
        app, client, sgateway, shop):  # noqa: F811
    store = shop["store"]
    settled_invoice(sgateway, store, 1_000)  # ₩990 is under the ₩1,000 minimum
    page = close_on_the_web(client, store)
    [final] = payouts(sgateway, store)
    assert (final.kind, final.amount_krw, final.status) == ("final", 990, "sent")
    assert final.destination == "101-2020-0001"  # the approved account of make_merchant
    assert "Final payout: ₩990" in page and "On its way" in page, page[page.find("<main"):]
    assert balance_of(sgateway, f"merchant_payable:{store}") == 0
    assert ledger_ok(sgateway)
    with sgateway.db.read() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "merchant.closed")).scalar_one()
    assert '"final_payout": "created"' in entry.details_json and final.id in entry.details_json
    assert run_settlement(sgateway, DAY)["created"] == []
    assert len(payouts(sgateway, store)) == 1
    # the merchant's owner sees why and what was paid
    client.post("/logout", data={"csrf_token": form_token(client, "/city")})
    sign_in_with_email(client, "owner@cafe.kr", OWNER_PW)
    owner_page = client.get("/merchant").get_data(as_text=True)
    assert "closed this store" in owner_page and "business closed" in owner_page
    assert "Final payout: ₩990" in owner_page


def test_a_daily_run_racing_the_close_never_pays_the_same_won_twice(app, sgateway, shop, clock):  # noqa: F811
    store = shop["store"]
    settled_invoice(sgateway, store, 15_000)
    clock.advance(days=1)
    settled_invoice(sgateway, store, 20_000)  # on the 24th: not in the 23rd's run
    from settlement.posting_job import run_once

    run_once(sgateway)
    start, errors = threading.Barrier(2), []

    def run(job):
        try:
            start.wait(5)
            job()
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(lambda: close(sgateway, shop),)),
               threading.Thread(target=run, args=(lambda: run_settlement(sgateway, DAY,
                                                                          post_first=False),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    paid = payouts(sgateway, store)
    assert sum(p.amount_krw for p in paid) == 14_850 + 19_800
    assert [p.kind for p in paid].count("final") == 1
    assert balance_of(sgateway, f"merchant_payable:{store}") == 0
    assert ledger_ok(sgateway)


def test_a_final_payout_left_unsent_by_a_crash_is_sent_once_by_the_next_run(app, sgateway, shop):  # noqa: F811
    store = shop["store"]
    settled_invoice(sgateway, store, 15_000)
    from settlement.posting_job import run_once

    run_once(sgateway)
    final = close(sgateway, shop)  # committed, then the process died before sending
    assert final.outcome == "created" and payouts(sgateway, store)[0].status == "created"
    summary = run_settlement(sgateway, DAY)
    assert summary["created"] == [] and [r["payoutId"] for r in summary["retried"]] == [final.payout_id]
    run_settlement(sgateway, DAY)
    [payout] = payouts(sgateway, store)
    assert (payout.status, payout.attempts, payout.amount_krw) == ("sent", 1, 14_850)
    rows = sgateway.extras["payout_rails"]["bankfile"].path_for(DAY).read_text()
    assert rows.count(final.payout_id) == 2  # its row, and the memo on the same row
    assert ledger_ok(sgateway)


def test_won_settling_after_the_close_is_paid_by_a_later_daily_run_with_no_minimum(
        app, client, sgateway, shop, clock):  # noqa: F811
    from payments.models import Invoice
    from tests.integration.test_settlement_support import create_invoice, set_invoice

    store = shop["store"]
    settled_invoice(sgateway, store, 15_000)
    still_open = create_invoice(sgateway, store, 500)  # watched after the close
    close_on_the_web(client, store)
    set_invoice(sgateway, still_open)  # it settles later the same day: ₩495
    clock.advance(days=1)
    assert run_settlement(sgateway, DAY)["created"] == []  # the day already has the final payout
    clock.advance(days=1)
    [later] = run_settlement(sgateway, date(2026, 11, 24))["created"]
    assert later["amount"] == "495"  # under the minimum: a closed store is paid to 0
    assert balance_of(sgateway, f"merchant_payable:{store}") == 0
    assert [p.kind for p in payouts(sgateway, store)] == ["final", "daily"]
    assert ledger_ok(sgateway)
    with sgateway.db.read() as s:
        assert s.get(Invoice, still_open).status == "Settled"


def test_a_store_without_an_approved_account_is_skipped_flagged_and_paid_once_approved(
        app, client, sgateway, clock):
    from accounts.service import Actor, create_user

    store = new_store(sgateway_app := app, name="Gwangalli Beach Stand", payout_account=False)
    paid_store = new_store(sgateway_app, name="Jagalchi Fish")
    with sgateway.db.write() as s:
        owner = create_user(s, role="owner", email="o@beach.kr", password=OWNER_PW, store_id=store)
        owner = Actor(owner.id, owner.role)
    t1, t2 = treasury(app)
    settled_invoice(sgateway, store, 15_000)
    settled_invoice(sgateway, paid_store, 15_000)
    clock.advance(days=1)
    summary = run_settlement(sgateway, DAY)
    assert [c["storeId"] for c in summary["created"]] == [paid_store]
    assert summary["skipped"] == [{"storeId": store, "amount": "14850", "currency": "KRW",
                                   "reason": "no approved payout account"}]
    assert payouts(sgateway, store) == []
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    assert ledger_ok(sgateway)
    sign_in_with_email(client, "t1@busan.go.kr", ADMIN_PW)
    for page in ("/city/exceptions", "/city/payout-accounts"):
        html = client.get(page).get_data(as_text=True)
        assert f'id="unpaid-{store}"' in html and "₩14,850" in html, page
        assert f'id="unpaid-{paid_store}"' not in html
    # a pending (unapproved) entry is never paid
    with sgateway.db.write() as s:
        change = pa.request_change(s, owner, store, bank_name="BNK Busan Bank",
                                   bank_account="101-3030-4040",
                                   account_holder="Gwangalli Beach Stand", now=clock()).id
    clock.advance(days=1)
    assert run_settlement(sgateway, date(2026, 11, 24))["skipped"][0]["storeId"] == store
    with sgateway.db.write() as s:
        pa.approve_change(s, t2, change, clock())
    clock.advance(days=1)
    [paid] = run_settlement(sgateway, date(2026, 11, 25))["created"]
    assert (paid["storeId"], paid["amount"]) == (store, "14850")
    assert payouts(sgateway, store)[0].destination == "101-3030-4040"
    assert f'id="unpaid-{store}"' not in client.get("/city/exceptions").get_data(as_text=True)
    assert ledger_ok(sgateway)


def test_closing_a_store_without_an_approved_account_pays_nothing_and_flags_it(
        app, client, sgateway, shop):  # noqa: F811
    from settlement.models import MerchantPayoutAccount

    store = shop["store"]
    with sgateway.db.write() as s:
        s.delete(s.get(MerchantPayoutAccount, store))
    settled_invoice(sgateway, store, 15_000)
    page = close_on_the_web(client, store)
    assert payouts(sgateway, store) == []
    assert "₩14,850 is not paid out: the store has no approved payout account" in page
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    with sgateway.db.read() as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "merchant.closed")).scalar_one()
    assert '"final_payout": "no-account"' in entry.details_json
    assert f'id="unpaid-{store}"' in client.get("/city/exceptions").get_data(as_text=True)
    assert ledger_ok(sgateway)
