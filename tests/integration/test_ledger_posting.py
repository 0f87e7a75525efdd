"""Posting invoices to the ledger from the outbox, on SQLite and PostgreSQL."""
from __future__ import annotations




import pytest
from sqlalchemy import func, select

from settlement.ledger import Entry, Line, UnbalancedEntry, post, trial_balance
from settlement.models import JournalEntry
from tests.integration.test_settlement_support import (balance_of, create_invoice, new_store,
                                                       post_all, set_invoice, settled_invoice,
                                                       sgateway)  # noqa: F401

pytestmark = pytest.mark.usefixtures("sgateway")


def test_a_settled_invoice_credits_the_merchant_payable_the_exact_won(app, sgateway):
    store = new_store(app)
    settled_invoice(sgateway, store, 15_000)
    assert post_all(sgateway)["entries"] == 1
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    assert balance_of(sgateway, "city_fees:krw") == -150
    assert balance_of(sgateway, "treasury:btc") == 10_000
    assert balance_of(sgateway, "conversion:btc") == -10_000
    assert balance_of(sgateway, "conversion:krw") == 15_000


def test_posting_the_outbox_twice_posts_each_invoice_once(app, sgateway):
    store = new_store(app)
    for amount in (15_000, 2_550, 99_999):
        settled_invoice(sgateway, store, amount)
    post_all(sgateway)
    again = post_all(sgateway)
    assert again["entries"] == 0
    with sgateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(JournalEntry)).scalar_one() == 3
    # 15,000-150 + 2,550-26 (25.5 rounds up) + 99,999-1,000
    assert balance_of(sgateway, f"merchant_payable:{store}") == -(14_850 + 2_524 + 98_999)


def test_a_category_fee_rule_overrides_the_default_fee(app, sgateway):
    from settlement.posting_job import set_fee_rule

    store = new_store(app, category="food")
    with sgateway.db.write() as session:
        set_fee_rule(session, "food", 50)
    settled_invoice(sgateway, store, 15_000)
    post_all(sgateway)
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_925


def test_an_unbalanced_entry_never_reaches_the_database(sgateway):
    with pytest.raises(UnbalancedEntry):
        with sgateway.db.write() as session:
            post(session, Entry("bad", "test", [Line("a:krw", "KRW", 1), Line("b:krw", "KRW", -1)]
                                + [Line("c:krw", "KRW", 1)]))
    with sgateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(JournalEntry)).scalar_one() == 0


def test_a_late_payment_on_an_expired_invoice_is_owed_to_the_payer(app, sgateway):
    store = new_store(app)
    invoice = create_invoice(sgateway, store)
    set_invoice(sgateway, invoice, status="Expired", additional="PaidPartial", paid_sats=4_000)
    post_all(sgateway)
    assert balance_of(sgateway, "refunds_owed:btc") == -4_000
    # the rest arrives late: no status event, the sweep finds it
    set_invoice(sgateway, invoice, status="Expired", additional="PaidLate", paid_sats=10_000,
                event="")
    from settlement.posting_job import sweep

    assert sweep(sgateway) == 1 and sweep(sgateway) == 0
    assert balance_of(sgateway, "refunds_owed:btc") == -10_000
    assert balance_of(sgateway, f"merchant_payable:{store}") == 0


def test_a_deep_reorg_after_settlement_reverses_the_credit_in_a_flagged_entry(app, sgateway):
    store = new_store(app)
    invoice = settled_invoice(sgateway, store)
    post_all(sgateway)
    set_invoice(sgateway, invoice, status="Settled", paid_sats=0, incident="deep-reorg", event="")
    from settlement.posting_job import sweep

    sweep(sgateway)
    assert balance_of(sgateway, f"merchant_payable:{store}") == 0
    assert balance_of(sgateway, "treasury:btc") == 0
    with sgateway.db.read() as session:
        kinds = session.execute(select(JournalEntry.kind, JournalEntry.flags)
                                .order_by(JournalEntry.id)).all()
    assert kinds == [("invoice_settled", ""), ("invoice_reversal", "incident")]


def test_events_in_any_order_reach_the_same_position(app, sgateway):
    """A merchant marks a settled invoice Invalid, then Settled again: the marks change its
    shop's status, never the money, whatever order the events are posted in."""
    store = new_store(app)
    invoice = settled_invoice(sgateway, store)
    set_invoice(sgateway, invoice, status="Invalid", additional="Marked", chain_status="Settled",
                dedupe="InvoiceInvalid:m1")
    post_all(sgateway)  # both events in one pass: only the final facts count
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    assert balance_of(sgateway, "refunds_owed:btc") == 0
    set_invoice(sgateway, invoice, status="Settled", additional="Marked", chain_status="Settled",
                dedupe="InvoiceSettled:m2")
    post_all(sgateway)
    assert balance_of(sgateway, f"merchant_payable:{store}") == -14_850
    with sgateway.db.read() as session:
        assert session.execute(select(func.count()).select_from(JournalEntry)).scalar_one() == 1
        assert all(row["balance"] is not None for row in trial_balance(session))


def test_the_watermark_only_passes_events_that_are_handled_and_old_enough(app, sgateway, clock):
    from payments.models import InvoiceEvent
    from settlement.posting_job import COMMIT_LAG, advance_watermark, pending_events

    store = new_store(app)
    first = settled_invoice(sgateway, store)
    post_all(sgateway)
    assert advance_watermark(sgateway) == 0  # too recent: a lower id may still commit
    clock.advance(seconds=COMMIT_LAG.total_seconds() + 1)
    second = settled_invoice(sgateway, store)
    wm = advance_watermark(sgateway)
    with sgateway.db.read() as session:
        ids = dict(session.execute(select(InvoiceEvent.invoice_id, func.max(InvoiceEvent.id))
                                   .group_by(InvoiceEvent.invoice_id)).all())
        assert wm == ids[first]
        assert [e[1] for e in pending_events(session, 100)] == [second]
    post_all(sgateway)
    assert balance_of(sgateway, f"merchant_payable:{store}") == -2 * 14_850


def test_a_refund_is_claimed_approved_and_sent_with_ledger_entries(app, sgateway, clock):
    from settlement.refunds import (RefundError, approve, claim_by_token, open_claim, record_sent,
                                    submit_address)

    store = new_store(app)
    invoice = create_invoice(sgateway, store)
    set_invoice(sgateway, invoice, status="Expired", additional="PaidLate", paid_sats=10_000)
    post_all(sgateway)
    with sgateway.db.write() as session:
        claim, token = open_claim(session, invoice, clock())
        rival, _ = open_claim(session, invoice, clock())  # claims stand side by side
    with pytest.raises(RefundError):
        with sgateway.db.write() as session:
            submit_address(session, token, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "regtest", clock())
    with sgateway.db.write() as session:
        assert claim_by_token(session, token).id == claim.id and claim.amount_sats == 10_000
        submit_address(session, token, "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk", "regtest", clock())
        approve(session, claim.id, "treasurer", clock())
        assert session.get(type(rival), rival.id).status == "rejected"
        with pytest.raises(RefundError):  # one approved claim per invoice
            open_claim(session, invoice, clock())
        record_sent(session, claim.id, "ef" * 32, clock())
        record_sent(session, claim.id, "ef" * 32, clock())  # repeated: once
    assert balance_of(sgateway, "refunds_owed:btc") == 0
    assert balance_of(sgateway, "treasury:btc") == 0
    from settlement.reconcile import check_ledger

    assert check_ledger(sgateway)["ok"]


def test_a_person_can_credit_an_overpayment_to_the_merchant(app, sgateway, clock):
    from settlement.refunds import credit_to_merchant

    store = new_store(app)
    invoice = settled_invoice(sgateway, store, paid_sats=12_500, additional="PaidOver")
    post_all(sgateway)
    res = app.test_cli_runner().invoke(args=["refund", "credit", "--invoice", invoice, "--sats",
                                             "2500", "--by", "ops"])
    assert res.exit_code == 0, res.output
    assert balance_of(sgateway, f"merchant_payable:{store}") == -(14_850 + 3_712)
    assert balance_of(sgateway, "refunds_owed:btc") == 0
    with pytest.raises(Exception):
        with sgateway.db.write() as session:
            credit_to_merchant(session, invoice, 1, "ops", clock(), 100)


def test_settlement_jobs_join_the_background_scheduler(app, sgateway):
    from background import jobs_for

    names = [job.name for job in jobs_for(sgateway)]
    assert {"ledger-posting", "ledger-sweep"} <= set(names)
    assert "conversion" not in names  # no exchange configured
