"""The watcher's pure rules: confirmations, reorg walk-back, matching, classification,
arrival times, back-off; and the decision for top-up invoices (nothing due)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from chain.backends import MEMPOOL_TX, UNKNOWN_TX, ChainTx, OutPoint, TxOutput, TxStatus
from chain.logic import (arrival_time, backoff_seconds, block_arrival_time, candidate_addresses,
                         classify, confirmations, conflicting_spends, find_fork, incident_facts,
                         outputs_paying, watch_done)
from chain.memchain import MemoryChain
from payments.invoice_status import (AdditionalStatus as A, InvoiceFacts, InvoiceStatus as S,
                                     PaymentFact, PaymentState as P, SpeedPolicy, decide)

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)


def tx(txid, outputs, inputs=()):
    return ChainTx(txid=txid, inputs=tuple(OutPoint(t, v) for t, v in inputs),
                   outputs=tuple(TxOutput(n, a, v) for n, (a, v) in enumerate(outputs)))


# -- confirmations -------------------------------------------------------------------------

@pytest.mark.parametrize("tip,height,expected", [
    (100, 100, 1),      # in the tip block: one confirmation
    (105, 100, 6),
    (100, None, 0),     # unconfirmed
    (99, 100, 0),       # a block above our processed tip (not yet counted)
    (None, 100, 0),
])
def test_confirmations_are_tip_minus_height_plus_one(tip, height, expected):
    assert confirmations(tip, height) == expected


def test_a_settled_payment_leaves_per_block_watch_six_blocks_past_its_threshold():
    assert not watch_done(6, 1)
    assert watch_done(7, 1)
    assert not watch_done(11, 6) and watch_done(12, 6)
    assert watch_done(7, 0)  # 0-conf invoices are still watched through 6 more blocks


# -- reorg walk-back -----------------------------------------------------------------------

def chain_of(prefix, n, start=0):
    return {h: f"{prefix}{h}" for h in range(start, start + n)}


def test_no_reorg_means_the_fork_is_our_own_tip():
    ours = chain_of("a", 10)
    stored = sorted(ours.items(), reverse=True)
    assert find_fork(stored, ours.get) == 9


def test_the_walk_back_stops_at_the_last_block_both_chains_share():
    ours = chain_of("a", 10)
    theirs = {**chain_of("a", 7), **chain_of("b", 5, start=7)}  # diverged above height 6
    stored = sorted(ours.items(), reverse=True)
    asked = []

    def hash_at(h):
        asked.append(h)
        return theirs.get(h)

    assert find_fork(stored, hash_at) == 6
    assert asked == [9, 8, 7, 6]  # it walks back one block at a time and stops


def test_a_backend_chain_shorter_than_ours_is_a_reorg_too():
    ours = chain_of("a", 10)
    theirs = chain_of("a", 8)  # the demo chain's reorg lowers the tip first
    assert find_fork(sorted(ours.items(), reverse=True), theirs.get) == 7


def test_a_reorg_below_everything_we_stored_has_no_fork():
    ours = chain_of("a", 5, start=100)
    theirs = chain_of("b", 200)
    assert find_fork(sorted(ours.items(), reverse=True), theirs.get) is None


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=29))
def test_the_fork_found_is_always_the_highest_common_block(length, diverge):
    diverge = min(diverge, length - 1)
    ours = chain_of("a", length)
    theirs = {**chain_of("a", diverge + 1), **chain_of("b", 40, start=diverge + 1)}
    assert find_fork(sorted(ours.items(), reverse=True), theirs.get) == diverge


# -- matching ------------------------------------------------------------------------------

def test_matching_finds_each_output_paying_a_watched_address_once_in_block_order():
    txs = [tx("t1", [("bcrt1qa", 5), ("bcrt1qz", 7), (None, 0)]),
           tx("t2", [("bcrt1qb", 3), ("bcrt1qa", 4)]),
           tx("t1", [("bcrt1qa", 5)])]  # a duplicate listing is counted once
    found = outputs_paying(txs, {"bcrt1qa", "bcrt1qb"})
    assert [(m.txid, m.vout, m.address, m.value_sats) for m in found] == [
        ("t1", 0, "bcrt1qa", 5), ("t2", 0, "bcrt1qb", 3), ("t2", 1, "bcrt1qa", 4)]


def test_matching_compares_bech32_in_lower_case_and_base58_exactly():
    txs = [tx("t1", [("BCRT1QABC", 1), ("mAbC", 2), ("mabc", 3)])]
    assert candidate_addresses(txs) == {"bcrt1qabc", "mAbC", "mabc"}
    found = outputs_paying(txs, {"bcrt1qabc", "mAbC"})
    assert [(m.vout, m.address) for m in found] == [(0, "bcrt1qabc"), (1, "mAbC")]


def test_a_confirmed_transaction_spending_a_pending_payments_input_conflicts_with_it():
    watched = {("coin", 0): {"pay1"}, ("coin", 1): {"pay2"}}
    block = [tx("other", [("x", 1)], inputs=[("coin", 0)]),
             tx("pay2", [("y", 1)], inputs=[("coin", 1)])]  # pay2 itself confirmed: no conflict
    assert conflicting_spends(block, watched) == {"pay1"}


# -- classification ------------------------------------------------------------------------

@pytest.mark.parametrize("status,lost_block,conflict,expected", [
    (MEMPOOL_TX, False, False, P.SEEN),
    (TxStatus(True, 5, "h", False), True, False, P.SEEN),
    (UNKNOWN_TX, False, False, P.REPLACED),
    (UNKNOWN_TX, True, False, P.ORPHANED),
    (UNKNOWN_TX, False, True, P.DOUBLE_SPENT),
    (UNKNOWN_TX, True, True, P.DOUBLE_SPENT),
    (MEMPOOL_TX, False, True, P.SEEN),  # back in the mempool after all
])
def test_a_payment_missing_from_the_mempool_answer_is_classified_by_its_status(
        status, lost_block, conflict, expected):
    assert classify(status, lost_block=lost_block, conflict_confirmed=conflict) == expected


def test_the_memory_chain_shows_replacement_then_double_spend():
    chain = MemoryChain()
    txid = chain.pay("bcrt1qa", 1000)
    assert chain.tx_status(txid) == MEMPOOL_TX
    spent = {(i.txid, i.vout): {txid} for i in chain.mempool[txid].inputs}
    other = chain.double_spend(txid)
    assert chain.tx_status(txid) == UNKNOWN_TX
    chain.mine()
    block = chain.block(chain.block_hash_at(1))
    assert other in {t.txid for t in block.txs}
    assert conflicting_spends(block.txs, spent) == {txid}


# -- time ----------------------------------------------------------------------------------

def test_a_payment_found_after_a_gap_is_dated_just_after_the_last_complete_scan():
    covered = T0
    now = T0 + timedelta(hours=1)
    assert arrival_time(now, covered) == T0 + timedelta(microseconds=1)
    assert arrival_time(now, None) == now
    assert arrival_time(T0, T0) == T0  # never in the future


def test_a_payment_first_seen_in_a_block_is_dated_by_its_median_time_past_after_a_gap():
    now = T0 + timedelta(hours=1)
    mtp = int((T0 + timedelta(minutes=40)).timestamp())
    assert block_arrival_time(now, T0, mtp) == T0 + timedelta(minutes=40)
    # Without a gap the last scan is the later bound; MTP never dates it after now.
    assert block_arrival_time(now, now - timedelta(seconds=1), mtp) == \
        now - timedelta(seconds=1) + timedelta(microseconds=1)
    assert block_arrival_time(now, T0, int((now + timedelta(hours=2)).timestamp())) == now
    assert block_arrival_time(now, T0, None) == T0 + timedelta(microseconds=1)


def test_back_off_doubles_up_to_a_cap_and_respects_retry_after():
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_seconds(30) == 300
    assert backoff_seconds(1, retry_after=60) == 60
    assert backoff_seconds(1, retry_after=10**6) == 3600


# -- decide() for top-up invoices (payments/invoice_status.py fix) -------------------------

EXP = T0 + timedelta(minutes=15)


def topup(status=S.NEW):
    return InvoiceFacts(status=status, additional_status=A.NONE, due_sats=0, amount_krw=None,
                        expires_at=EXP, monitoring_expires_at=EXP + timedelta(hours=24),
                        speed_policy=SpeedPolicy.MEDIUM, zero_conf_limit_krw=0,
                        payment_tolerance=Decimal("0"))


def pay(value, conf=0, state=P.SEEN):
    return PaymentFact(txid="ab" * 32, vout=0, value_sats=value, confirmations=conf,
                       state=state, seen_at=T0 + timedelta(minutes=1))


def test_a_top_up_invoice_with_nothing_paid_stays_new_and_does_not_settle():
    d = decide(topup(), [], T0 + timedelta(minutes=5))
    assert (d.status, d.additional_status, d.events) == (S.NEW, A.NONE, ())


def test_a_top_up_invoice_with_nothing_paid_expires_without_partial():
    d = decide(topup(), [], EXP)
    assert (d.status, d.additional_status) == (S.EXPIRED, A.NONE)


def test_any_payment_to_a_top_up_invoice_is_full_and_never_paid_over():
    d = decide(topup(), [pay(1)], T0 + timedelta(minutes=5))
    assert (d.status, d.additional_status, d.overpaid_sats) == (S.PROCESSING, A.NONE, 0)
    d = decide(topup(), [pay(50_000, conf=1)], T0 + timedelta(minutes=5))
    assert (d.status, d.additional_status) == (S.SETTLED, A.NONE)


def test_a_settled_top_up_whose_payment_vanished_is_a_deep_reorg_incident():
    d = decide(topup(S.SETTLED), [pay(5_000, state=P.ORPHANED)], T0 + timedelta(minutes=5))
    assert (d.status, d.incident) == (S.SETTLED, "deep-reorg")


# -- incidents (chain/logic.py incident_facts) ---------------------------------------------

class Row:
    def __init__(self, value, state=P.SEEN, seen=T0 + timedelta(minutes=1)):
        self.txid, self.vout, self.value_sats = "cd" * 32, 0, value
        self.state, self.seen_at = state.value, seen


def settled(additional=A.NONE):
    return InvoiceFacts(status=S.SETTLED, additional_status=additional, due_sats=10_000,
                        amount_krw=15_000, expires_at=EXP,
                        monitoring_expires_at=EXP + timedelta(hours=24),
                        speed_policy=SpeedPolicy.MEDIUM, zero_conf_limit_krw=0,
                        payment_tolerance=Decimal("0"))


def test_a_settled_invoice_whose_payment_lost_its_confirmation_is_a_deep_reorg_incident():
    kind, why = incident_facts(settled(), [pay(10_000, conf=0)], [Row(10_000)], None, True)
    assert kind == "deep-reorg" and "only 0 of the 10000 sats" in why


def test_the_incident_closes_when_the_payment_confirms_again_and_says_why():
    kind, why = incident_facts(settled(), [pay(10_000, conf=1)], [Row(10_000)], "deep-reorg",
                               True)
    assert kind is None and "confirmed again" in why


def test_incidents_open_and_close_only_when_judged_at_the_end_of_a_pass():
    assert incident_facts(settled(), [pay(10_000, conf=0)], [Row(10_000)], None, False)[0] is None
    assert incident_facts(settled(), [pay(10_000, conf=1)], [Row(10_000)], "deep-reorg",
                          False)[0] == "deep-reorg"


def test_a_persons_mark_does_not_hide_what_the_chain_says():
    # The money follows the chain status, never the mark, so incidents follow it too.
    chain_settled = dataclasses.replace(settled(A.MARKED), chain_status=S.SETTLED)
    assert incident_facts(chain_settled, [pay(10_000, conf=0)], [Row(10_000)], None,
                          True)[0] == "deep-reorg"
    assert incident_facts(chain_settled, [pay(10_000, conf=1)], [Row(10_000)], "deep-reorg",
                          True)[0] is None
    never_paid = dataclasses.replace(settled(A.MARKED), chain_status=S.NEW)
    assert incident_facts(never_paid, [], [], None, True)[0] is None


def test_a_0_conf_settlement_that_loses_its_payment_is_the_citys_loss():
    zero_conf = dataclasses.replace(settled(), speed_policy=SpeedPolicy.HIGH,
                                    zero_conf_limit_krw=50_000)
    gone = [pay(10_000, conf=0, state=P.DOUBLE_SPENT)]
    assert incident_facts(zero_conf, gone, [Row(10_000)], None, True)[0] == "zero-conf-loss"


def test_money_after_monitoring_is_an_incident_until_that_payment_stops_counting():
    late = EXP + timedelta(hours=25)
    expired = InvoiceFacts(status=S.EXPIRED, additional_status=A.NONE, due_sats=10_000,
                           amount_krw=15_000, expires_at=EXP,
                           monitoring_expires_at=EXP + timedelta(hours=24),
                           speed_policy=SpeedPolicy.MEDIUM, zero_conf_limit_krw=0,
                           payment_tolerance=Decimal("0"))
    assert incident_facts(expired, [], [Row(10_000, seen=late)], None, False)[0] == \
        "paid-after-monitoring"
    gone = [Row(10_000, state=P.REPLACED, seen=late)]
    assert incident_facts(expired, [], gone, "paid-after-monitoring", True)[0] is None
