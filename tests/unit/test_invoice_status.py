"""The invoice status decision: table tests for each transition, then properties."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from payments.invoice_status import (
    AdditionalStatus as A,
    Decision,
    InvoiceFacts,
    InvoiceStatus as S,
    PaymentFact,
    PaymentState as P,
    SpeedPolicy,
    apply,
    confirmations_required,
    decide,
    full_threshold_sats,
)

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)  # invoice created
EXP = T0 + timedelta(minutes=15)
MON = EXP + timedelta(hours=24)
DUE = 10_000


def inv(status=S.NEW, additional=A.NONE, due=DUE, amount_krw=15_000,
        policy=SpeedPolicy.MEDIUM, limit=0, tol=Decimal("0")):
    return InvoiceFacts(status=status, additional_status=additional, due_sats=due,
                        amount_krw=amount_krw, expires_at=EXP, monitoring_expires_at=MON,
                        speed_policy=policy, zero_conf_limit_krw=limit, payment_tolerance=tol)


_n = iter(range(10**9))


def pay(value, conf=0, state=P.SEEN, at=T0 + timedelta(minutes=1)):
    return PaymentFact(txid=f"{next(_n):064x}", vout=0, value_sats=value,
                       confirmations=conf, state=state, seen_at=at)


BEFORE = T0 + timedelta(minutes=5)
AFTER = EXP + timedelta(minutes=1)
LATE = EXP + timedelta(seconds=1)

# (name, invoice, payments, now, status, additional, events)
TABLE = [
    ("a new invoice with nothing paid stays new",
     inv(), [], BEFORE, S.NEW, A.NONE, ()),
    ("a payment below the full amount before expiry is new paid partial",
     inv(), [pay(4_000)], BEFORE, S.NEW, A.PAID_PARTIAL, ()),
    ("two partial payments adding up to the full amount make it processing",
     inv(), [pay(4_000), pay(6_000)], BEFORE, S.PROCESSING, A.NONE, ("InvoiceProcessing",)),
    ("an exact payment without confirmations is processing",
     inv(), [pay(DUE)], BEFORE, S.PROCESSING, A.NONE, ("InvoiceProcessing",)),
    ("an overpayment is processing paid over",
     inv(), [pay(DUE + 500)], BEFORE, S.PROCESSING, A.PAID_OVER, ("InvoiceProcessing",)),
    ("a processing invoice settles when its payment has the confirmations it needs",
     inv(S.PROCESSING), [pay(DUE, conf=1)], BEFORE, S.SETTLED, A.NONE, ("InvoiceSettled",)),
    ("a new invoice that is already confirmed emits processing then settled",
     inv(), [pay(DUE, conf=1)], BEFORE, S.SETTLED, A.NONE,
     ("InvoiceProcessing", "InvoiceSettled")),
    ("an overpaid invoice stays paid over when it settles",
     inv(S.PROCESSING, A.PAID_OVER), [pay(DUE + 1, conf=3)], BEFORE, S.SETTLED, A.PAID_OVER,
     ("InvoiceSettled",)),
    ("high speed under the zero conf limit settles at once with both events",
     inv(policy=SpeedPolicy.HIGH, limit=50_000), [pay(DUE)], BEFORE, S.SETTLED, A.NONE,
     ("InvoiceProcessing", "InvoiceSettled")),
    ("high speed exactly at the zero conf limit settles at once",
     inv(policy=SpeedPolicy.HIGH, limit=15_000), [pay(DUE)], BEFORE, S.SETTLED, A.NONE,
     ("InvoiceProcessing", "InvoiceSettled")),
    ("high speed over the zero conf limit needs one confirmation",
     inv(policy=SpeedPolicy.HIGH, limit=14_999), [pay(DUE)], BEFORE, S.PROCESSING, A.NONE,
     ("InvoiceProcessing",)),
    ("high speed over the limit settles with one confirmation",
     inv(S.PROCESSING, policy=SpeedPolicy.HIGH, limit=14_999), [pay(DUE, conf=1)], BEFORE,
     S.SETTLED, A.NONE, ("InvoiceSettled",)),
    ("low speed with five confirmations is still processing",
     inv(S.PROCESSING, policy=SpeedPolicy.LOW), [pay(DUE, conf=5)], BEFORE,
     S.PROCESSING, A.NONE, ()),
    ("low speed settles at six confirmations",
     inv(S.PROCESSING, policy=SpeedPolicy.LOW), [pay(DUE, conf=6)], BEFORE,
     S.SETTLED, A.NONE, ("InvoiceSettled",)),
    ("low medium speed settles at two confirmations",
     inv(S.PROCESSING, policy=SpeedPolicy.LOW_MEDIUM), [pay(DUE, conf=2)], BEFORE,
     S.SETTLED, A.NONE, ("InvoiceSettled",)),
    ("it settles only when every payment needed for the full amount is confirmed",
     inv(S.PROCESSING), [pay(4_000, conf=1), pay(6_000, conf=0)], BEFORE,
     S.PROCESSING, A.NONE, ()),
    ("an unconfirmed top up does not hold back an already covered invoice",
     inv(S.PROCESSING, A.PAID_OVER), [pay(DUE, conf=1), pay(100, conf=0)], BEFORE,
     S.SETTLED, A.PAID_OVER, ("InvoiceSettled",)),
    ("with nothing paid at exactly the expiry time it expires",
     inv(), [], EXP, S.EXPIRED, A.NONE, ("InvoiceExpired",)),
    ("one second before expiry it is still new",
     inv(), [], EXP - timedelta(seconds=1), S.NEW, A.NONE, ()),
    ("a partial payment at expiry expires paid partial",
     inv(S.NEW, A.PAID_PARTIAL), [pay(4_000)], AFTER, S.EXPIRED, A.PAID_PARTIAL,
     ("InvoiceExpired",)),
    ("a full payment seen exactly at expiry is on time",
     inv(), [pay(DUE, at=EXP)], EXP, S.PROCESSING, A.NONE, ("InvoiceProcessing",)),
    ("a full payment seen on time but decided after expiry is still processing",
     inv(), [pay(DUE, at=EXP - timedelta(seconds=1))], AFTER, S.PROCESSING, A.NONE,
     ("InvoiceProcessing",)),
    ("a full payment seen one second after expiry leaves it expired paid late",
     inv(), [pay(DUE, at=LATE)], AFTER, S.EXPIRED, A.PAID_LATE, ("InvoiceExpired",)),
    ("partial on time plus the rest late is expired paid late and never settles",
     inv(), [pay(4_000, conf=6), pay(6_000, conf=6, at=LATE)], AFTER,
     S.EXPIRED, A.PAID_LATE, ("InvoiceExpired",)),
    ("a late full payment to an expired invoice makes it paid late without an event",
     inv(S.EXPIRED, A.PAID_PARTIAL), [pay(4_000), pay(6_000, conf=9, at=LATE)], AFTER,
     S.EXPIRED, A.PAID_LATE, ()),
    ("a late partial payment to an expired invoice makes it paid partial",
     inv(S.EXPIRED), [pay(4_000, at=LATE)], AFTER, S.EXPIRED, A.PAID_PARTIAL, ()),
    ("an expired invoice stays expired even with a confirmed full on time payment",
     inv(S.EXPIRED), [pay(DUE, conf=6)], AFTER, S.EXPIRED, A.PAID_LATE, ()),
    ("processing without confirmations at the monitoring deadline becomes invalid",
     inv(S.PROCESSING), [pay(DUE)], MON, S.INVALID, A.NONE, ("InvoiceInvalid",)),
    ("processing one second before the monitoring deadline is still processing",
     inv(S.PROCESSING), [pay(DUE)], MON - timedelta(seconds=1), S.PROCESSING, A.NONE, ()),
    ("a confirmed payment at the monitoring deadline still settles",
     inv(S.PROCESSING), [pay(DUE, conf=1)], MON, S.SETTLED, A.NONE, ("InvoiceSettled",)),
    ("a new invoice found full but unconfirmed after monitoring emits processing then invalid",
     inv(), [pay(DUE)], MON, S.INVALID, A.NONE, ("InvoiceProcessing", "InvoiceInvalid")),
    ("a double spend that leaves a processing invoice below full makes it invalid",
     inv(S.PROCESSING), [pay(DUE, state=P.DOUBLE_SPENT)], BEFORE, S.INVALID, A.NONE,
     ("InvoiceInvalid",)),
    ("a double spend of one of two payments leaves it invalid paid partial",
     inv(S.PROCESSING), [pay(4_000), pay(6_000, state=P.DOUBLE_SPENT)], BEFORE,
     S.INVALID, A.PAID_PARTIAL, ("InvoiceInvalid",)),
    ("a double spend that still leaves the full amount keeps it processing",
     inv(S.PROCESSING, A.PAID_OVER), [pay(DUE), pay(500, state=P.DOUBLE_SPENT)], BEFORE,
     S.PROCESSING, A.NONE, ()),
    ("a double spent partial payment on a new invoice leaves it new",
     inv(S.NEW, A.PAID_PARTIAL), [pay(4_000, state=P.DOUBLE_SPENT)], BEFORE,
     S.NEW, A.NONE, ()),
    ("a replaced payment moves processing back to new without an event",
     inv(S.PROCESSING), [pay(DUE, state=P.REPLACED)], BEFORE, S.NEW, A.NONE, ()),
    ("an orphaned payment moves processing back to new paid partial",
     inv(S.PROCESSING), [pay(4_000), pay(6_000, state=P.ORPHANED)], BEFORE,
     S.NEW, A.PAID_PARTIAL, ()),
    ("a replaced payment after expiry moves processing to expired",
     inv(S.PROCESSING), [pay(DUE, state=P.REPLACED)], AFTER, S.EXPIRED, A.NONE,
     ("InvoiceExpired",)),
    ("a replacement that pays the same address keeps it processing",
     inv(S.PROCESSING), [pay(DUE, state=P.REPLACED), pay(DUE)], BEFORE,
     S.PROCESSING, A.NONE, ()),
    ("an invalid invoice stays invalid even if the payment confirms",
     inv(S.INVALID), [pay(DUE, conf=10)], MON + timedelta(days=1), S.INVALID, A.NONE, ()),
    ("an invoice marked settled stays as marked whatever the payments",
     inv(S.SETTLED, A.MARKED), [pay(DUE, state=P.DOUBLE_SPENT)], AFTER,
     S.SETTLED, A.MARKED, ()),
    ("an invoice marked invalid stays as marked whatever the payments",
     inv(S.INVALID, A.MARKED), [pay(DUE, conf=6)], BEFORE, S.INVALID, A.MARKED, ()),
]


@pytest.mark.parametrize("name,invoice,payments,now,status,additional,events", TABLE,
                         ids=[row[0] for row in TABLE])
def test_each_transition_follows_the_table(name, invoice, payments, now, status,
                                          additional, events):
    d = decide(invoice, payments, now)
    assert (d.status, d.additional_status, d.events) == (status, additional, events)
    assert d.changed == (status != invoice.status or additional != invoice.additional_status)
    assert d.incident is None
    again = decide(apply(invoice, d), payments, now)
    assert not again.changed and again.events == ()


# ---- tolerance -------------------------------------------------------------------

def test_with_two_percent_tolerance_the_threshold_is_ninety_eight_percent_rounded_up():
    assert full_threshold_sats(10_000, Decimal("2")) == 9_800
    assert full_threshold_sats(10_001, Decimal("2")) == 9_801  # 9800.98 -> up
    assert full_threshold_sats(10_000, Decimal("0")) == 10_000
    assert full_threshold_sats(10_000, Decimal("100")) == 1  # something must come
    assert full_threshold_sats(0, Decimal("0")) == 0


@pytest.mark.parametrize("paid,status,additional", [
    (9_799, S.NEW, A.PAID_PARTIAL),
    (9_800, S.PROCESSING, A.NONE),
    (9_801, S.PROCESSING, A.NONE),
])
def test_the_tolerance_boundary_is_exact_to_one_sat(paid, status, additional):
    d = decide(inv(tol=Decimal("2")), [pay(paid)], BEFORE)
    assert (d.status, d.additional_status) == (status, additional)


@pytest.mark.parametrize("paid,status,additional", [
    (9_999, S.NEW, A.PAID_PARTIAL),
    (10_000, S.PROCESSING, A.NONE),
    (10_001, S.PROCESSING, A.PAID_OVER),
])
def test_without_tolerance_one_sat_short_is_partial_and_one_sat_over_is_paid_over(
        paid, status, additional):
    d = decide(inv(), [pay(paid)], BEFORE)
    assert (d.status, d.additional_status) == (status, additional)


def test_a_fractional_tolerance_is_computed_exactly_in_sats():
    # 0.5 % of 12_345 = 61.725 -> threshold ceil(12_283.275) = 12_284
    assert full_threshold_sats(12_345, Decimal("0.5")) == 12_284
    assert decide(inv(due=12_345, tol=Decimal("0.5")), [pay(12_283)], BEFORE).status == S.NEW
    assert decide(inv(due=12_345, tol=Decimal("0.5")), [pay(12_284)], BEFORE).status \
        == S.PROCESSING


def test_a_float_tolerance_or_one_outside_zero_to_a_hundred_is_refused():
    with pytest.raises(TypeError):
        full_threshold_sats(10_000, 2.0)
    with pytest.raises(ValueError):
        full_threshold_sats(10_000, Decimal("100.01"))
    with pytest.raises(ValueError):
        inv(tol=Decimal("-1"))


# ---- amounts ---------------------------------------------------------------------

def test_the_overpaid_amount_is_what_was_paid_beyond_due():
    d = decide(inv(), [pay(6_000), pay(4_750)], BEFORE)
    assert (d.paid_sats, d.paid_on_time_sats, d.overpaid_sats, d.late_sats) == \
        (10_750, 10_750, 750, 0)
    assert d.additional_status == A.PAID_OVER


def test_late_value_is_reported_whatever_the_outcome():
    d = decide(inv(S.PROCESSING), [pay(DUE, conf=1), pay(300, at=LATE)], AFTER)
    assert (d.status, d.late_sats, d.paid_on_time_sats, d.overpaid_sats) == \
        (S.SETTLED, 300, DUE, 300)


def test_only_seen_payments_count():
    ps = [pay(1_000), pay(2_000, state=P.REPLACED), pay(3_000, state=P.DOUBLE_SPENT),
          pay(4_000, state=P.ORPHANED)]
    assert decide(inv(), ps, BEFORE).paid_sats == 1_000


# ---- settled is final; deep reorg -------------------------------------------------

def test_a_settled_invoice_whose_payment_is_reorganised_away_stays_settled_with_an_incident():
    d = decide(inv(S.SETTLED), [pay(DUE, state=P.ORPHANED)], AFTER)
    assert (d.status, d.additional_status, d.incident, d.changed, d.events) == \
        (S.SETTLED, A.NONE, "deep-reorg", False, ())


def test_a_settled_invoice_double_spent_after_settlement_is_a_deep_reorg_incident():
    d = decide(inv(S.SETTLED), [pay(DUE, state=P.DOUBLE_SPENT)], BEFORE)
    assert (d.status, d.incident) == (S.SETTLED, "deep-reorg")


def test_a_settled_invoice_whose_payment_is_back_in_the_mempool_is_no_incident():
    d = decide(inv(S.SETTLED), [pay(DUE, conf=0)], AFTER)
    assert (d.status, d.incident, d.changed) == (S.SETTLED, None, False)


# ---- speed policy ----------------------------------------------------------------

@pytest.mark.parametrize("policy,amount,limit,expected", [
    (SpeedPolicy.HIGH, 15_000, 50_000, 0),
    (SpeedPolicy.HIGH, 50_000, 50_000, 0),
    (SpeedPolicy.HIGH, 50_001, 50_000, 1),
    (SpeedPolicy.HIGH, 0, 0, 1),
    (SpeedPolicy.HIGH, None, 50_000, 1),
    (SpeedPolicy.MEDIUM, 1, 50_000, 1),
    (SpeedPolicy.LOW_MEDIUM, 1, 50_000, 2),
    (SpeedPolicy.LOW, 1, 50_000, 6),
    ("LowSpeed", 1, 0, 6),
])
def test_speed_policy_gives_the_confirmations_greenfield_documents(policy, amount, limit,
                                                                   expected):
    assert confirmations_required(policy, amount, limit) == expected


def test_enum_values_are_the_greenfield_strings():
    assert [s.value for s in S] == ["New", "Processing", "Settled", "Expired", "Invalid"]
    assert [a.value for a in A] == ["None", "PaidPartial", "PaidOver", "PaidLate", "Marked"]
    assert [p.value for p in SpeedPolicy] == ["HighSpeed", "MediumSpeed", "LowMediumSpeed",
                                              "LowSpeed"]


def test_naive_times_and_negative_amounts_are_refused():
    with pytest.raises(ValueError):
        decide(inv(), [], datetime(2025, 5, 1, 12, 0))
    with pytest.raises(ValueError):
        pay(DUE, at=datetime(2025, 5, 1, 12, 0))
    with pytest.raises(ValueError):
        pay(-1)
    with pytest.raises(TypeError):
        pay(1.5)


# ---- properties ------------------------------------------------------------------

CONSISTENT_PRIORS = [
    (S.NEW, A.NONE), (S.NEW, A.PAID_PARTIAL),
    (S.PROCESSING, A.NONE), (S.PROCESSING, A.PAID_OVER),
    (S.SETTLED, A.NONE), (S.SETTLED, A.PAID_OVER), (S.SETTLED, A.MARKED),
    (S.EXPIRED, A.NONE), (S.EXPIRED, A.PAID_PARTIAL), (S.EXPIRED, A.PAID_LATE),
    (S.INVALID, A.NONE), (S.INVALID, A.PAID_PARTIAL), (S.INVALID, A.PAID_OVER),
    (S.INVALID, A.MARKED),
]
offsets = st.integers(min_value=-20 * 60, max_value=26 * 3600).map(
    lambda s: EXP + timedelta(seconds=s))
payments_st = st.lists(st.builds(
    PaymentFact,
    txid=st.text("0123456789abcdef", min_size=64, max_size=64),
    vout=st.integers(0, 3),
    value_sats=st.integers(0, 15_000),
    confirmations=st.integers(0, 8),
    state=st.sampled_from(list(P)),
    seen_at=st.one_of(offsets, st.sampled_from([EXP, EXP + timedelta(seconds=1)])),
), max_size=5)
invoices_st = st.builds(
    lambda prior, due, amount, policy, limit, tol: inv(
        prior[0], prior[1], due=due, amount_krw=amount, policy=policy, limit=limit, tol=tol),
    st.sampled_from(CONSISTENT_PRIORS),
    st.integers(1, 20_000),
    st.one_of(st.none(), st.integers(0, 100_000)),
    st.sampled_from(list(SpeedPolicy)),
    st.sampled_from([0, 15_000, 100_000]),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False),
)
nows = st.one_of(offsets, st.sampled_from([EXP, MON, MON - timedelta(seconds=1)]))


@given(invoices_st, payments_st, nows)
@settings(max_examples=500)
def test_deciding_twice_over_the_same_facts_changes_nothing_the_second_time(invoice, ps, now):
    first = decide(invoice, ps, now)
    second = decide(apply(invoice, first), ps, now)
    assert (second.changed, second.events) == (False, ())
    assert (second.status, second.additional_status) == (first.status, first.additional_status)


@given(invoices_st, payments_st, nows)
@settings(max_examples=500)
def test_settled_invalid_and_marked_invoices_never_change_status(invoice, ps, now):
    d = decide(invoice, ps, now)
    if invoice.status in (S.SETTLED, S.INVALID) or invoice.additional_status == A.MARKED:
        assert (d.status, d.additional_status, d.changed, d.events) == \
            (invoice.status, invoice.additional_status, False, ())


@given(invoices_st, payments_st, nows)
@settings(max_examples=500)
def test_paid_late_only_ever_goes_with_expired(invoice, ps, now):
    d = decide(invoice, ps, now)
    if d.additional_status == A.PAID_LATE:
        assert d.status == S.EXPIRED


@given(invoices_st, payments_st, nows)
@settings(max_examples=500)
def test_paid_sats_is_the_sum_of_seen_payments_and_splits_into_on_time_and_late(
        invoice, ps, now):
    d = decide(invoice, ps, now)
    assert d.paid_sats == sum(p.value_sats for p in ps if p.state == P.SEEN)
    assert d.paid_sats == d.paid_on_time_sats + d.late_sats
    assert d.overpaid_sats == max(0, d.paid_sats - invoice.due_sats)
    assert all(type(v) is int for v in (d.paid_sats, d.paid_on_time_sats, d.overpaid_sats,
                                          d.late_sats))


@given(invoices_st, payments_st, nows)
@settings(max_examples=500)
def test_an_invoice_only_becomes_settled_when_paid_in_full_on_time(invoice, ps, now):
    d = decide(invoice, ps, now)
    if d.status == S.SETTLED and invoice.status != S.SETTLED:
        assert d.paid_on_time_sats >= full_threshold_sats(invoice.due_sats,
                                                          invoice.payment_tolerance)


ALLOWED = {
    S.NEW: {S.NEW, S.PROCESSING, S.SETTLED, S.EXPIRED, S.INVALID},
    S.PROCESSING: {S.PROCESSING, S.NEW, S.SETTLED, S.EXPIRED, S.INVALID},
    S.SETTLED: {S.SETTLED}, S.INVALID: {S.INVALID}, S.EXPIRED: {S.EXPIRED},
}
EVENT_OF = {S.PROCESSING: "InvoiceProcessing", S.SETTLED: "InvoiceSettled",
            S.EXPIRED: "InvoiceExpired", S.INVALID: "InvoiceInvalid"}


@given(invoices_st.map(lambda i: replace(i, status=S.NEW, additional_status=A.NONE)),
       st.lists(st.tuples(payments_st, nows), min_size=1, max_size=8))
@settings(max_examples=300)
def test_a_life_of_decisions_emits_exactly_one_event_per_status_reached(invoice, steps):
    """Feed a sequence of snapshots (time moving forward) and apply each decision."""
    steps = sorted(steps, key=lambda s: s[1])
    emitted: list[str] = []
    for ps, now in steps:
        d: Decision = decide(invoice, ps, now)
        assert d.status in ALLOWED[invoice.status]
        if d.status != invoice.status and d.status != S.NEW:
            assert d.events[-1] == EVENT_OF[d.status]
        if d.status == invoice.status:
            assert d.events == ()
        emitted.extend(d.events)
        invoice = apply(invoice, d)
    for final in ("InvoiceSettled", "InvoiceExpired", "InvoiceInvalid"):
        assert emitted.count(final) <= 1
    assert sum(emitted.count(e) for e in ("InvoiceSettled", "InvoiceExpired",
                                          "InvoiceInvalid")) <= 1


# -- a person's mark and the chain status (the money follows the chain) -------------------

def _marked(status, chain_status, **kw):
    base = dict(status=status, additional_status="Marked", due_sats=10_000, amount_krw=15_000,
                expires_at=T0 + timedelta(minutes=15),
                monitoring_expires_at=T0 + timedelta(minutes=15, hours=24),
                speed_policy="MediumSpeed", zero_conf_limit_krw=0,
                payment_tolerance=Decimal(0), chain_status=chain_status)
    base.update(kw)
    return InvoiceFacts(**base)


def test_a_marked_invoice_keeps_its_shop_status_while_the_chain_status_follows_the_payments():
    paid = [PaymentFact("a" * 64, 0, 10_000, 1, P.SEEN, T0 + timedelta(minutes=1))]
    d = decide(_marked("Invalid", "New"), paid, T0 + timedelta(minutes=2))
    assert (d.status, d.additional_status) == ("Invalid", "Marked")
    assert d.chain_status == "Settled" and d.settled_sats == 10_000
    assert d.events == () and not d.changed


def test_an_unpaid_invoice_marked_settled_expires_on_the_chain():
    d = decide(_marked("Settled", "New"), [], T0 + timedelta(minutes=16))
    assert d.status == "Settled" and d.chain_status == "Expired"


def test_a_lost_zero_conf_payment_is_the_citys_incident_a_lost_confirmed_one_a_deep_reorg():
    facts = dict(status="Settled", additional_status="None", due_sats=10_000, amount_krw=15_000,
                 expires_at=T0 + timedelta(minutes=15),
                 monitoring_expires_at=T0 + timedelta(minutes=15, hours=24),
                 zero_conf_limit_krw=50_000, payment_tolerance=Decimal(0), settled_sats=10_000)
    gone = [PaymentFact("a" * 64, 0, 10_000, 0, P.DOUBLE_SPENT, T0)]
    fast = decide(InvoiceFacts(speed_policy="HighSpeed", **facts), gone, T0)
    assert fast.incident == "zero-conf-loss" and fast.settled_sats == 10_000
    slow = decide(InvoiceFacts(speed_policy="MediumSpeed", **facts), gone, T0)
    assert slow.incident == "deep-reorg"
