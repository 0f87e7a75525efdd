"""The daily settlement run, the bank file rail and the settlement/ledger CLI, on both databases."""
from __future__ import annotations

import csv
import io
import json
from datetime import date

from sqlalchemy import select, text

from settlement.models import Payout
from tests.integration.test_settlement_support import (balance_of, new_store, post_all,
                                                       settled_invoice, sgateway)  # noqa: F401

DAY = date(2026, 11, 23)  # the fake clock starts at 12:00 in Seoul on this day


def run(gateway, day=DAY):
    from settlement.daily import run_settlement

    return run_settlement(gateway, day)


def payout_rows(gateway):
    with gateway.db.read() as session:
        return list(session.execute(select(Payout).order_by(Payout.day, Payout.store_id)).scalars())


def check(gateway) -> dict:
    from settlement.reconcile import check_ledger

    return check_ledger(gateway)


def test_a_settlement_run_creates_one_payout_per_merchant_once(app, sgateway, clock):
    a, b, small = new_store(app, name="A"), new_store(app, name="B"), new_store(app, name="Small")
    settled_invoice(sgateway, a, 15_000)
    settled_invoice(sgateway, a, 30_000)
    settled_invoice(sgateway, b, 2_000)
    settled_invoice(sgateway, small, 1_000)  # ₩990 is under the ₩1,000 minimum
    clock.advance(days=1)
    first = run(sgateway)
    assert first["date"] == "2026-11-23"
    got = {c["storeId"]: (c["amount"], c["rail"], c["status"]) for c in first["created"]}
    assert got == {a: ("44550", "bankfile", "sent"), b: ("1980", "bankfile", "sent")}
    assert first["total"] == {"count": 2, "amount": "46530", "currency": "KRW"}
    assert run(sgateway)["created"] == []
    assert len(payout_rows(sgateway)) == 2
    assert balance_of(sgateway, f"merchant_payable:{a}") == 0
    assert balance_of(sgateway, f"merchant_payable:{small}") == -990
    assert check(sgateway)["ok"]


def test_the_cut_off_is_midnight_in_seoul(app, sgateway, clock):
    store = new_store(app)
    settled_invoice(sgateway, store, 10_000)          # 12:00 KST on the 23rd
    clock.advance(hours=11, minutes=59)               # 23:59 KST
    settled_invoice(sgateway, store, 20_000)
    clock.advance(minutes=2)                          # 00:01 KST on the 24th
    settled_invoice(sgateway, store, 40_000)
    [payout] = run(sgateway)["created"]
    assert payout["amount"] == str(9_900 + 19_800)
    clock.advance(days=1)
    [next_day] = run(sgateway, date(2026, 11, 24))["created"]
    assert next_day["amount"] == "39600"


def test_settling_an_earlier_day_after_a_later_one_never_pays_twice(app, sgateway, clock):
    store = new_store(app)
    settled_invoice(sgateway, store, 10_000)
    clock.advance(days=2)
    [later] = run(sgateway, date(2026, 11, 24))["created"]
    assert later["amount"] == "9900"
    assert run(sgateway, DAY)["created"] == []
    assert sum(p.amount_krw for p in payout_rows(sgateway)) == 9_900


def test_a_btc_direct_store_is_never_paid_won(app, sgateway, clock):
    from merchants.models import Store

    store = new_store(app)
    with sgateway.db.write() as session:
        row = session.get(Store, store)
        row.settlement_mode = "btc"
        session.add(row)
    settled_invoice(sgateway, store, 15_000)
    clock.advance(days=1)
    assert run(sgateway)["created"] == []
    assert balance_of(sgateway, f"fee_receivable:{store}") == 150
    assert check(sgateway)["ok"]


def test_the_bank_file_lists_the_days_payouts_and_a_person_confirms_them(app, sgateway, clock):
    from settlement.payouts import mark_paid, set_payout_account

    store = new_store(app)
    with sgateway.db.write() as session:
        set_payout_account(session, store, bank_name="BNK Busan Bank", bank_account="101-2020-3030",
                           account_holder="Jagalchi Fish")
    settled_invoice(sgateway, store, 15_000)
    clock.advance(days=1)
    [created] = run(sgateway)["created"]
    path = sgateway.extras["payout_rails"]["bankfile"].path_for(DAY)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows == [{"payout_id": created["payoutId"], "store_id": store,
                     "account_holder": "Jagalchi Fish", "bank_name": "BNK Busan Bank",
                     "bank_account": "101-2020-3030", "amount_krw": "14850", "currency": "KRW",
                     "business_day": "2026-11-23", "memo": f"Busan Pay 2026-11-23 {created['payoutId']}"}]
    before = path.read_text()
    run(sgateway)
    assert path.read_text() == before  # a rerun writes the same file
    with sgateway.db.write() as session:
        mark_paid(session, created["payoutId"], clock())
        mark_paid(session, created["payoutId"], clock())  # twice: once
    assert payout_rows(sgateway)[0].status == "paid"
    assert balance_of(sgateway, "payouts_in_transit:krw") == 0
    assert balance_of(sgateway, "treasury:krw") == -14_850
    assert check(sgateway)["ok"]


def test_the_cli_runs_settlement_and_prints_whole_won_as_strings(app, sgateway, clock):
    store = new_store(app)
    settled_invoice(sgateway, store, 15_000)
    clock.advance(days=1)
    runner = app.test_cli_runner()
    res = runner.invoke(args=["settlement", "run", "--date", "2026-11-23"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert body["date"] == "2026-11-23"
    [created] = body["created"]
    assert set(created) >= {"payoutId", "storeId", "amount", "currency", "rail", "status"}
    assert created["amount"] == "14850" and created["currency"] == "KRW"
    again = json.loads(runner.invoke(args=["settlement", "run", "--date", "2026-11-23"]).output)
    assert again["created"] == []
    confirm = runner.invoke(args=["settlement", "confirm", created["payoutId"]])
    assert confirm.exit_code == 0 and json.loads(confirm.output)[0]["status"] == "paid"


def test_ledger_check_exits_zero_when_the_books_agree_and_nonzero_when_not(app, sgateway, clock,
                                                                          db_url):
    store = new_store(app)
    settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    runner = app.test_cli_runner()
    res = runner.invoke(args=["ledger", "check"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] and report["totals"] == {"BTC": "0", "KRW": "0"}
    balances = {r["account"]: r["balance"] for r in report["trialBalance"]}
    assert balances[f"merchant_payable:{store}"] == "-14850" and balances["city_fees:krw"] == "-150"
    # someone edits a posting behind the ledger's back
    clock.advance(minutes=10)
    with sgateway.db.write() as session:
        session.execute(text("UPDATE posting SET amount = amount - 1 WHERE amount = -150"))
    res = runner.invoke(args=["ledger", "check"])
    assert res.exit_code == 1
    problems = {p["problem"] for p in json.loads(res.output)["problems"]}
    assert "unbalanced entry" in problems and "invoice position differs" in problems


def test_ledger_check_fails_when_chain_payments_disagree_with_the_credit(app, sgateway, clock):
    from payments.models import Invoice, Payment

    store = new_store(app)
    invoice_id = settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    with sgateway.db.write() as session:
        invoice = session.get(Invoice, invoice_id)
        session.add(Payment(invoice_id=invoice_id, txid="ab" * 32, vout=0, address=invoice.address,
                            value_sats=9_000, state="seen", seen_at=clock()))
    report = check(sgateway)
    assert not report["ok"]
    assert report["problems"][0]["problem"] == "chain payments differ from credited sats"


def test_an_unposted_settled_invoice_is_pending_then_a_problem(app, sgateway, clock):
    store = new_store(app)
    settled_invoice(sgateway, store)
    report = check(sgateway)
    assert report["ok"] and report["pendingCount"] == 1
    clock.advance(minutes=10)
    assert not check(sgateway)["ok"]
    post_all(sgateway)
    assert check(sgateway)["ok"]


def test_the_statement_lists_the_days_credits_and_payouts(app, sgateway, clock):
    store = new_store(app)
    first = settled_invoice(sgateway, store, 15_000)
    settled_invoice(sgateway, store, 2_550)
    clock.advance(hours=10)  # 22:00 KST
    run(sgateway)            # a payout during the day
    res = app.test_cli_runner().invoke(args=["ledger", "statement", "--store", store,
                                             "--date", "2026-11-23"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.output)))
    assert rows[0]["entry"] == "opening" and rows[0]["balance_krw"] == "0"
    assert rows[1]["invoice_id"] == first and rows[1]["time_kst"] == "2026-11-23 12:00:00"
    assert (rows[1]["gross_krw"], rows[1]["fee_krw"], rows[1]["net_krw"]) == ("15000", "150", "14850")
    assert (rows[2]["gross_krw"], rows[2]["fee_krw"], rows[2]["net_krw"]) == ("2550", "26", "2524")
    assert rows[3]["kind"] == "payout_initiated" and rows[3]["net_krw"] == "-17374"
    assert rows[-1]["entry"] == "closing" and rows[-1]["balance_krw"] == "0"


def test_a_failed_bank_transfer_returns_the_money_for_the_next_run(app, sgateway, clock):
    store = new_store(app)
    settled_invoice(sgateway, store, 15_000)
    clock.advance(days=1)
    [created] = run(sgateway)["created"]
    res = app.test_cli_runner().invoke(args=["settlement", "confirm", created["payoutId"], "--failed",
                                             "--reason", "account closed"])
    assert res.exit_code == 0, res.output
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    clock.advance(days=1)
    [again] = run(sgateway, date(2026, 11, 24))["created"]
    assert again["amount"] == "14850"
    assert check(sgateway)["ok"]
