"""Property: any sequence of settlements, late payments, reorgs, refunds and payouts keeps the
ledger balanced and in agreement with its sources, and never pays a merchant more than its
settled invoices less fees (Hypothesis, on SQLite and PostgreSQL)."""
from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from settlement.models import Payout
from settlement.rules import city_fee
from tests.integration.test_settlement_support import (balance_of, create_invoice, new_store,
                                                       post_all, set_invoice, sgateway)  # noqa: F401

ops = st.one_of(
    st.tuples(st.just("settle"), st.integers(0, 2), st.integers(1_000, 300_000),
              st.sampled_from([0, 0, 0, 1, 777, 5_000])),
    st.tuples(st.just("late"), st.integers(0, 2), st.integers(1, 50_000)),
    st.tuples(st.just("reorg"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 20)),
    st.tuples(st.just("credit"), st.integers(0, 20)),
    st.tuples(st.just("run"),),
    st.tuples(st.just("bankfail"), st.integers(0, 20)),
    st.tuples(st.just("bankpaid"), st.integers(0, 20)),
)

TXID = "cd" * 32


@settings(max_examples=int(__import__("os").environ.get("LEDGER_EXAMPLES", "25")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(steps=st.lists(ops, min_size=1, max_size=14))
def test_random_histories_keep_the_ledger_balanced_and_never_overpay(app, sgateway, clock, steps):
    from settlement.daily import business_day, run_settlement
    from settlement.payouts import mark_paid, mark_returned
    from settlement.reconcile import check_ledger
    from settlement.refunds import (approve, credit_to_merchant, open_claim, owed_sats,
                                    record_sent, submit_address)

    gw = sgateway
    stores = [new_store(app, name=f"P{i}") for i in range(3)]
    earned = defaultdict(int)      # Σ (price − fee) of every invoice ever credited, per store
    settled: list[tuple[str, str]] = []
    owing: list[str] = []
    for step in steps:
        kind = step[0]
        if kind == "settle":
            _, s, amount, over = step
            invoice = create_invoice(gw, stores[s], amount)
            from payments.models import Invoice

            with gw.db.read() as session:
                due = session.get(Invoice, invoice).due_sats
            set_invoice(gw, invoice, paid_sats=due + over, additional="PaidOver" if over else "None")
            earned[stores[s]] += amount - city_fee(amount, gw.settings.fee_bps)
            settled.append((invoice, stores[s]))
            if over:
                owing.append(invoice)
        elif kind == "late":
            _, s, sats = step
            invoice = create_invoice(gw, stores[s], 10_000)
            set_invoice(gw, invoice, status="Expired", additional="PaidLate", paid_sats=sats)
            owing.append(invoice)
        elif kind == "reorg" and settled:
            invoice, _ = settled.pop(step[1] % len(settled))
            set_invoice(gw, invoice, status="Settled", paid_sats=0, incident="deep-reorg", event="")
            from settlement.posting_job import sweep

            post_all(gw)
            sweep(gw)
        elif kind in ("refund", "credit") and owing:
            post_all(gw)
            invoice = owing.pop(step[1] % len(owing))
            with gw.db.write() as session:
                owed = owed_sats(session, invoice)
                if owed <= 0:
                    continue
                if kind == "credit":
                    credit_to_merchant(session, invoice, owed, "ops", clock(), gw.settings.fee_bps)
                    from payments.models import Invoice

                    inv = session.get(Invoice, invoice)
                    value = int((owed * inv.rate / 100_000_000).to_integral_value(rounding="ROUND_FLOOR"))
                    earned[inv.store_id] += value - city_fee(value, gw.settings.fee_bps)
                    continue
                claim, token = open_claim(session, invoice, clock())
                submit_address(session, token, "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk",
                               "regtest", clock())
                approve(session, claim.id, "treasurer", clock())
                record_sent(session, claim.id, TXID, clock())
        elif kind == "run":
            clock.advance(days=1)
            result = run_settlement(gw, business_day(clock()) - __import__("datetime").timedelta(days=1))
            for created in result["created"]:
                # a payout never takes more than the merchant's payable
                assert balance_of(gw, f"merchant_payable:{created['storeId']}") <= 0
        elif kind in ("bankfail", "bankpaid"):
            with gw.db.write() as session:
                sent = list(session.execute(select(Payout).where(
                    Payout.store_id.in_(stores), Payout.status == "sent").order_by(Payout.id)).scalars())
                if sent:
                    payout = sent[step[1] % len(sent)]
                    if kind == "bankfail":
                        mark_returned(session, payout.id, clock(), reason="refused")
                    else:
                        mark_paid(session, payout.id, clock())
    post_all(gw)
    clock.advance(minutes=10)
    report = check_ledger(gw)
    assert report["ok"], report["problems"]
    assert report["totals"] in ({"BTC": "0", "KRW": "0"}, {"KRW": "0"}, {"BTC": "0"}, {})
    with gw.db.read() as session:
        for store in stores:
            out = sum(p.amount_krw for p in session.execute(select(Payout).where(
                Payout.store_id == store, Payout.status.in_(("created", "sent", "paid")))).scalars())
            assert out <= earned[store], (store, out, earned[store])
