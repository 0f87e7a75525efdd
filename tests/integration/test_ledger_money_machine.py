"""State machine (Hypothesis): any sequence of what merchants, payers, the chain and the
operator do — invoices in KRW, BTC and SATS with any tolerance up to the city's maximum,
partial, full, over and late payments on the demo chain, merchants marking invoices
Settled or Invalid, reorgs, 0-conf double spends, refunds, the posting job and the daily
settlement — keeps `ledger check` passing after every step, and never credits a merchant
more won than the sats it received are worth at the locked rates (or, for a 0-conf
payment the city accepted and lost, what it settled with). Through the real API, the
watcher and the settlement code, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, rule,
                                 run_state_machine_as_test)
from sqlalchemy import func, select

from tests.conftest import auth, make_merchant
from tests.integration.test_payment_scenarios import demo_chain  # noqa: F401

RATE = Decimal("150000000")  # the test rate, won per BTC
PRICES = [("KRW", "15000", 10_000), ("KRW", "3000", 2_000), ("BTC", "0.0001", 10_000),
          ("SATS", "8000", 8_000), ("KRW", "40000", 26_667)]


def test_any_history_keeps_every_merchant_credit_backed(app, client, gateway, clock,
                                                         demo_chain):  # noqa: F811
    from chain.watcher import Watcher
    from settlement.daily import run_settlement
    from settlement.posting_job import run_once, sweep
    from settlement.reconcile import check_ledger
    from settlement.refunds import (RefundError, approve, open_claim, record_sent,
                                    submit_address)

    gateway.extras["chain_backend"] = demo_chain
    watcher = Watcher(gateway, demo_chain)
    watcher.run_once()
    max_tolerance = int(gateway.settings.max_payment_tolerance)
    counter = iter(range(10**6))

    class Money(RuleBasedStateMachine):
        invoices = Bundle("invoices")

        def __init__(self):
            super().__init__()
            speed = "HighSpeed" if next(counter) % 2 else "MediumSpeed"
            self.store, self.token = make_merchant(app, name="Machine Shop", speed_policy=speed,
                                                   zero_conf_limit_krw=50_000)
            self.mempool: list[str] = []
            self.invoice_ids: set[str] = set()

        def api(self, method, path, **kw):
            return getattr(client, method)(f"/api/v1/stores/{self.store}{path}",
                                           headers=auth(self.token), **kw)

        def watch(self):
            watcher.run_once()

        @initialize(target=invoices, price=st.sampled_from(PRICES),
                    tolerance=st.sampled_from([0, 1, max_tolerance, max_tolerance]))
        def first_invoice(self, price, tolerance):
            return self.create(price, tolerance)

        @rule(target=invoices, price=st.sampled_from(PRICES),
              tolerance=st.sampled_from([0, 1, max_tolerance, max_tolerance]))
        def another_invoice(self, price, tolerance):
            return self.create(price, tolerance)

        def create(self, price, tolerance):
            currency, amount, due = price
            res = self.api("post", "/invoices", json={
                "amount": amount, "currency": currency,
                "checkout": {"paymentTolerance": tolerance}})
            assert res.status_code == 200, res.get_json()
            self.invoice_ids.add(res.get_json()["id"])
            return res.get_json()["id"], due, tolerance

        @rule(invoice=invoices, how=st.sampled_from(["partial", "short", "short", "full", "over"]))
        def pay(self, invoice, how):
            """Partial (30 %), short but within the invoice's tolerance, full or over."""
            from payments.models import Invoice

            invoice_id, due, tolerance = invoice
            sats = {"partial": due * 30 // 100, "short": -(-due * (100 - tolerance) // 100),
                    "full": due, "over": due * 125 // 100}[how]
            with gateway.db.read() as session:
                address = session.get(Invoice, invoice_id).address
            self.mempool.append(demo_chain.pay(address, max(sats, 600)))
            self.watch()

        @rule()
        def mine(self):
            demo_chain.mine()
            self.mempool.clear()
            self.watch()

        @rule(minutes=st.sampled_from([5, 20, 60 * 25]))
        def time_passes(self, minutes):
            clock.advance(minutes=minutes)
            self.watch()

        @rule(invoice=invoices, status=st.sampled_from(["Settled", "Invalid"]))
        def mark(self, invoice, status):
            res = self.api("post", f"/invoices/{invoice[0]}/status", json={"status": status})
            assert res.status_code in (200, 422), res.get_json()

        @rule(drop=st.booleans())
        def reorg(self, drop):
            demo_chain.reorg(1, drop=drop)
            self.mempool.clear()
            self.watch()

        @rule(pick=st.integers(0, 7))
        def double_spend(self, pick):
            if not self.mempool:
                return
            txid = self.mempool.pop(pick % len(self.mempool))
            try:
                demo_chain.double_spend(txid)
            except ValueError:  # mined or replaced meanwhile
                return
            self.watch()

        @rule(invoice=invoices)
        def refund(self, invoice):
            now = clock()
            try:
                with gateway.db.write() as session:
                    claim, token = open_claim(session, invoice[0], now)
                    submit_address(session, token, demo_chain.payer_address,
                                   gateway.settings.network, now)
                    approve(session, claim.id, "treasury@busan.go.kr", now)
                    record_sent(session, claim.id, f"{next(counter):064x}",
                                now)
            except RefundError:  # nothing owed, or a claim already open
                pass

        @rule()
        def settle(self):
            clock.advance(minutes=1)
            run_settlement(gateway, (clock() + timedelta(hours=9)).date())

        @invariant()
        def ledger_holds(self):
            run_once(gateway)
            sweep(gateway)
            report = check_ledger(gateway)
            # this history's own problems (each history has its own store), and global ones
            mine = [p for p in report["problems"] + report["pending"]
                    if p.get("storeId", self.store) == self.store
                    and p.get("invoiceId", next(iter(self.invoice_ids))) in self.invoice_ids]
            assert not mine, mine
            self.credits_backed()

        def credits_backed(self):
            """Independently of `ledger check`: per store, the won credited (all entries but
            payouts) never exceeds the value of the sats its invoices received."""
            from payments.models import Invoice, Payment
            from settlement.models import JournalEntry, LedgerAccount, Posting
            from settlement.rules import received_krw

            with gateway.db.read() as session:
                credited = dict(session.execute(
                    select(LedgerAccount.store_id, -func.sum(Posting.amount))
                    .select_from(Posting).join(JournalEntry, JournalEntry.id == Posting.entry_id)
                    .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
                    .where(LedgerAccount.kind == "merchant_payable",
                           ~JournalEntry.kind.like("payout%"))
                    .group_by(LedgerAccount.store_id)).all())
                received = dict(session.execute(
                    select(Payment.invoice_id, func.sum(Payment.value_sats))
                    .where(Payment.state == "seen").group_by(Payment.invoice_id)).all())
                backing: dict[str, int] = {}
                for inv in session.execute(select(Invoice)).scalars():
                    sats = int(received.get(inv.id) or 0)
                    if inv.incident == "zero-conf-loss":
                        sats = max(sats, inv.settled_sats or 0)
                    value = received_krw(sats if inv.due_sats == 0 else min(sats, inv.due_sats),
                                         inv.rate)
                    if inv.amount_krw is not None:
                        value = min(value, inv.amount_krw)
                    backing[inv.store_id] = backing.get(inv.store_id, 0) + value
            won = int(credited.get(self.store) or 0)
            assert won <= backing.get(self.store, 0), (self.store, won, backing)

    run_state_machine_as_test(Money, settings=settings(
        max_examples=int(__import__("os").environ.get("MONEY_MACHINE_EXAMPLES", "10")),
        stateful_step_count=16, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_an_expired_invoices_partial_payment_double_spent_leaves_nothing_owed_to_the_payer(
        app, client, gateway, clock, demo_chain):  # noqa: F811
    """The case the machine found: the ledger follows the money facts even when no status
    event tells it (Expired/PaidPartial -> Expired/None), without waiting for the sweep."""
    from chain.watcher import Watcher
    from payments.models import Invoice, InvoiceEvent
    from settlement.posting_job import posted_position, run_once
    from settlement.reconcile import check_ledger

    gateway.extras["chain_backend"] = demo_chain
    watcher = Watcher(gateway, demo_chain)
    watcher.run_once()
    store, token = make_merchant(app, name="Partial Shop")
    res = client.post(f"/api/v1/stores/{store}/invoices", headers=auth(token),
                      json={"amount": "15000", "currency": "KRW"})
    invoice_id = res.get_json()["id"]
    with gateway.db.read() as session:
        address = session.get(Invoice, invoice_id).address
    txid = demo_chain.pay(address, 3000)
    watcher.run_once()
    clock.advance(minutes=60 * 25)
    watcher.run_once()
    run_once(gateway)
    with gateway.db.read() as session:
        inv = session.get(Invoice, invoice_id)
        assert (inv.status, inv.additional_status) == ("Expired", "PaidPartial")
        owed, _ = posted_position(session, invoice_id)
    assert owed[("refunds_owed:btc", "BTC")] == -3000

    demo_chain.double_spend(txid)
    watcher.run_once()
    run_once(gateway)  # the outbox alone (no sweep) brings the ledger back to nothing
    with gateway.db.read() as session:
        inv = session.get(Invoice, invoice_id)
        assert (inv.status, inv.additional_status, inv.paid_sats) == ("Expired", "None", 0)
        position, _ = posted_position(session, invoice_id)
        kinds = list(session.execute(select(InvoiceEvent.event_type).where(
            InvoiceEvent.invoice_id == invoice_id).order_by(InvoiceEvent.id)).scalars())
    assert position == {}
    assert kinds[-1] == "BusanPayMoneyFacts"
    report = check_ledger(gateway)
    assert not [p for p in report["problems"] if p.get("invoiceId") == invoice_id]
