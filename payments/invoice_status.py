"""The one decision over an invoice and its payments (pure: no Flask, no DB, no I/O).

The watcher and the API gather *facts* (the invoice's stored status, amounts, times
and policy; the payments the chain backend reported) and call :func:`decide`.  The
:class:`Decision` says what the invoice's Greenfield ``status`` / ``additionalStatus``
must be, which Greenfield status events the transition emits, and whether a human
must look at it (``incident``).  The caller stores the result and the events in one
transaction; deciding again over the same facts changes nothing.

Vocabulary
----------
* *counting* payment: ``state == SEEN`` (in mempool or in a block). REPLACED,
  DOUBLE_SPENT and ORPHANED payments count for nothing.
* *on time*: ``seen_at <= expires_at`` (seen exactly at expiry is on time);
  *late*: ``seen_at > expires_at``.
* *threshold* (:func:`full_threshold_sats`): the least amount that counts as paid in
  full: ``ceil(due * (100 - tolerance) / 100)``, computed exactly with ``Fraction``.
  Rounding rule: ROUND UP, so the tolerance never forgives more than ``tolerance`` %
  of the amount due.  When ``due > 0`` the threshold is at least 1 sat (a 100 %
  tolerance still needs a payment).  A *top-up* invoice (``due == 0``) is paid in
  full by any counting payment, never by nothing: :func:`decide` needs at least 1 sat,
  and never calls a top-up ``PaidOver`` (nothing was due, so nothing is over).
* *full on time*: the on-time counting value reaches the threshold.
* *confirmed*: a counting on-time payment with ``confirmations >=``
  :func:`confirmations_required`, or a *final* one (``PaymentFact.final``: a settled
  Lightning payment, which no confirmation makes safer and no reorg takes back; it
  counts as confirmed whatever its confirmations).  The invoice settles when the
  confirmed on-time value reaches the threshold (like BTCPay's "confirmed accounting is
  paid"): a small unconfirmed top-up does not hold back an already covered invoice.
  On-chain and Lightning payments add up alike: paid partly on-chain and the rest over
  Lightning is paid in full; paid in full both ways is ``PaidOver`` (the extra is owed
  back to the payer, as any overpayment).

Rules (brief + BTCPay semantics); order of precedence
-----------------------------------------------------
1. ``additional_status == Marked`` (a person marked it): the status the shop sees
   never changes again and no event is emitted, but the *chain status*
   (``Decision.chain_status``, from ``InvoiceFacts.chain_status``, New when unknown)
   keeps following these same rules over the payments and time: the money follows it,
   never the mark (see ``settlement.rules``).
2. ``Settled`` is final (status and additional status kept).  If the on-time
   counting value is now below the threshold (a reorg deeper than the settlement, a
   double spend after settlement) ``incident = "deep-reorg"``, or
   ``"zero-conf-loss"`` when the invoice's policy accepted 0 confirmations (the city's
   risk); it is reported on every decision while true (``changed`` stays False): the
   caller de-duplicates alerts.  ``Decision.settled_sats`` is the counting value at the
   moment the invoice settled (kept afterwards).
3. ``Invalid`` is final (status and additional status kept).
4. ``Expired`` is final as a status; its additional status follows the payments:
   ``PaidLate`` if all counting value reaches the threshold (only possible with late
   value), else ``PaidPartial`` if anything counting came (on time or late), else
   ``None``.  It may move between these (e.g. a late payment replaced); no event.
   A full on-time payment that the store only learns of after the invoice was
   already decided Expired stays Expired/PaidLate: the watcher must record payments
   and call decide in one transaction to avoid that race.
5. ``New`` / ``Processing``:

   * full on time, enough confirmed value -> ``Settled``;
   * full on time, ``now >= monitoring_expires_at`` -> ``Invalid`` (failed to confirm);
   * full on time otherwise -> ``Processing`` — also when ``now`` is past expiry,
     because the payment was seen in time;
   * not full on time, prior ``Processing`` and an on-time payment DOUBLE_SPENT ->
     ``Invalid``;
   * not full on time, ``now >= expires_at`` -> ``Expired`` (additional as in 4);
   * otherwise ``New`` (``PaidPartial`` if something counting came).  A Processing
     invoice whose payment was REPLACED/ORPHANED goes back to New *without an event*
     (Greenfield has no "back to New" event; the watcher's payment-level events and
     the invoice's changed status tell the story).

   ``PaidOver`` is set on Processing/Settled/Invalid when all counting value exceeds
   ``due_sats`` (late extra value counts too: it is owed back either way), else
   ``None``; an Invalid invoice left with some value below full gets ``PaidPartial``.

Events (Greenfield status webhooks), one per status transition, following the path
New -> Processing -> Settled/Invalid: a New invoice that settles at once (0-conf) or
turns Invalid at once (monitoring already over) emits ``InvoiceProcessing`` first.
Processing -> New emits nothing.  A change of ``additional_status`` alone emits no
status event (``changed`` is True).

Speed policy: HighSpeed 0, MediumSpeed 1, LowMediumSpeed 2, LowSpeed 6
confirmations; HighSpeed gives 0 only for an invoice with a known won amount at or
under the city's positive 0-conf limit, otherwise 1.  RBF signalling is ignored
(full-RBF is the node default).

``settled_confirmations_seen`` is accepted and ignored.  Amounts are integer sats;
no float is accepted anywhere (tolerance must be ``Decimal`` or ``int``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

__all__ = [
    "InvoiceStatus",
    "AdditionalStatus",
    "SpeedPolicy",
    "PaymentState",
    "PaymentFact",
    "InvoiceFacts",
    "Decision",
    "EVENT_PROCESSING",
    "EVENT_SETTLED",
    "EVENT_EXPIRED",
    "EVENT_INVALID",
    "EVENT_MONEY_FACTS",
    "INCIDENT_DEEP_REORG",
    "INCIDENT_ZERO_CONF_LOSS",
    "confirmations_required",
    "full_threshold_sats",
    "decide",
    "apply",
]


class InvoiceStatus(StrEnum):
    NEW = "New"
    PROCESSING = "Processing"
    SETTLED = "Settled"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class AdditionalStatus(StrEnum):
    NONE = "None"
    PAID_PARTIAL = "PaidPartial"
    PAID_OVER = "PaidOver"
    PAID_LATE = "PaidLate"
    MARKED = "Marked"


class SpeedPolicy(StrEnum):
    HIGH = "HighSpeed"
    MEDIUM = "MediumSpeed"
    LOW_MEDIUM = "LowMediumSpeed"
    LOW = "LowSpeed"


class PaymentState(StrEnum):
    SEEN = "seen"  # in mempool or in a block, valid
    REPLACED = "replaced"  # gone from mempool, not in chain, no confirmed conflict known
    DOUBLE_SPENT = "double_spent"  # a conflicting transaction confirmed
    ORPHANED = "orphaned"  # its block was reorganised away; not back in mempool/chain


EVENT_PROCESSING = "InvoiceProcessing"
EVENT_SETTLED = "InvoiceSettled"
EVENT_EXPIRED = "InvoiceExpired"
EVENT_INVALID = "InvoiceInvalid"
#: An outbox-only event: the invoice's money facts (paid sats, additional status, chain status,
#: settled sats) changed without a status event (a partial payment double-spent on an
#: expired invoice, a late payment, a marked invoice's chain moving). The ledger's posting
#: job re-reads the invoice on it; it is never sent to a webhook (webhooks/rules.py).
EVENT_MONEY_FACTS = "BusanPayMoneyFacts"
INCIDENT_DEEP_REORG = "deep-reorg"
#: A settled invoice the city accepted at 0 confirmations (under its limit) whose counted
#: value was then lost (double spend, replacement, reorg): the city's loss, not the
#: merchant's (see settlement.rules).
INCIDENT_ZERO_CONF_LOSS = "zero-conf-loss"

_CONFIRMATIONS = {
    SpeedPolicy.HIGH: 0,
    SpeedPolicy.MEDIUM: 1,
    SpeedPolicy.LOW_MEDIUM: 2,
    SpeedPolicy.LOW: 6,
}


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")


def _require_int(name: str, value: object, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def confirmations_required(
    policy: SpeedPolicy, amount_krw: int | None, zero_conf_limit_krw: int
) -> int:
    """Confirmations each payment needs before it counts as confirmed.

    HighSpeed is 0 only when the won amount is known and at or under a positive
    0-conf limit (a limit of 0 means never 0-conf); otherwise it is 1.
    """
    policy = SpeedPolicy(policy)
    _require_int("zero_conf_limit_krw", zero_conf_limit_krw)
    if amount_krw is not None:
        _require_int("amount_krw", amount_krw)
    required = _CONFIRMATIONS[policy]
    if required == 0:
        zero_conf_ok = (
            zero_conf_limit_krw > 0
            and amount_krw is not None
            and amount_krw <= zero_conf_limit_krw
        )
        return 0 if zero_conf_ok else 1
    return required


def _tolerance_fraction(tolerance: Decimal | int) -> Fraction:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (Decimal, int)):
        raise TypeError(
            f"payment_tolerance must be Decimal or int, got {type(tolerance).__name__}"
        )
    if isinstance(tolerance, Decimal) and not tolerance.is_finite():
        raise ValueError("payment_tolerance must be finite")
    tol = Fraction(tolerance)
    if tol < 0 or tol > 100:
        raise ValueError(f"payment_tolerance must be within 0..100, got {tolerance}")
    return tol


def full_threshold_sats(due_sats: int, payment_tolerance: Decimal | int) -> int:
    """Least amount (sats) that counts as paid in full.

    ``ceil(due * (100 - tolerance) / 100)``, exact (Fraction, no float), ROUND UP;
    at least 1 sat when anything is due.
    """
    _require_int("due_sats", due_sats)
    tol = _tolerance_fraction(payment_tolerance)
    threshold = math.ceil(Fraction(due_sats) * (100 - tol) / 100)
    if due_sats > 0:
        threshold = max(threshold, 1)
    return threshold


@dataclass(frozen=True)
class PaymentFact:
    txid: str
    vout: int
    value_sats: int
    confirmations: int
    state: PaymentState
    seen_at: datetime  # aware UTC, when the gateway first saw it (settled, for Lightning)
    # Final: confirmed whatever `confirmations` says (a settled Lightning payment).
    final: bool = False

    def is_confirmed(self, required: int) -> bool:
        return self.final or self.confirmations >= required

    def __post_init__(self) -> None:
        _require_int("vout", self.vout)
        _require_int("value_sats", self.value_sats)
        _require_int("confirmations", self.confirmations)
        object.__setattr__(self, "state", PaymentState(self.state))
        _require_aware("seen_at", self.seen_at)
        if not isinstance(self.final, bool):
            raise TypeError("final must be a bool")


@dataclass(frozen=True)
class InvoiceFacts:
    status: InvoiceStatus
    additional_status: AdditionalStatus
    due_sats: int
    amount_krw: int | None
    expires_at: datetime
    monitoring_expires_at: datetime
    speed_policy: SpeedPolicy
    zero_conf_limit_krw: int
    payment_tolerance: Decimal  # percent, 0..100 (Greenfield paymentTolerance)
    settled_confirmations_seen: int = 0  # accepted, not used
    # A marked invoice's status as the chain facts make it (None: not marked, or marked
    # before it was tracked: then New, and the payments and time decide it again).
    chain_status: InvoiceStatus | None = None
    settled_sats: int | None = None  # counted sats when the chain settled it

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", InvoiceStatus(self.status))
        object.__setattr__(
            self, "additional_status", AdditionalStatus(self.additional_status)
        )
        object.__setattr__(self, "speed_policy", SpeedPolicy(self.speed_policy))
        _require_int("due_sats", self.due_sats)
        if self.amount_krw is not None:
            _require_int("amount_krw", self.amount_krw)
        _require_int("zero_conf_limit_krw", self.zero_conf_limit_krw)
        if self.chain_status is not None:
            object.__setattr__(self, "chain_status", InvoiceStatus(self.chain_status))
        if self.settled_sats is not None:
            _require_int("settled_sats", self.settled_sats)
        _tolerance_fraction(self.payment_tolerance)
        _require_aware("expires_at", self.expires_at)
        _require_aware("monitoring_expires_at", self.monitoring_expires_at)
        if self.monitoring_expires_at < self.expires_at:
            raise ValueError("monitoring_expires_at must not be before expires_at")


@dataclass(frozen=True)
class Decision:
    status: InvoiceStatus
    additional_status: AdditionalStatus
    paid_sats: int  # counting payments (any time)
    paid_on_time_sats: int  # counting, seen at or before expires_at
    overpaid_sats: int  # paid beyond due (0 if not over)
    late_sats: int  # counting value seen after expiry (whatever the outcome)
    events: tuple[str, ...]  # Greenfield status events for the transition
    incident: str | None  # e.g. "deep-reorg"
    changed: bool  # status or additional_status differs from the facts
    # The chain's status of a marked invoice (None when not marked: `status` is the
    # chain's), and the counted sats when the chain settled the invoice (else None).
    chain_status: InvoiceStatus | None = None
    settled_sats: int | None = None


def _expired_additional(paid: int, threshold: int) -> AdditionalStatus:
    if paid > 0 and paid >= threshold:
        return AdditionalStatus.PAID_LATE
    if paid > 0:
        return AdditionalStatus.PAID_PARTIAL
    return AdditionalStatus.NONE


def _paid_additional(paid: int, due: int, threshold: int) -> AdditionalStatus:
    if paid > due and due > 0:  # a top-up (due 0) is never over-paid
        return AdditionalStatus.PAID_OVER
    if 0 < paid < threshold:
        return AdditionalStatus.PAID_PARTIAL
    return AdditionalStatus.NONE


def _events(before: InvoiceStatus, after: InvoiceStatus) -> tuple[str, ...]:
    if before == after:
        return ()
    if after == InvoiceStatus.PROCESSING:
        return (EVENT_PROCESSING,)
    if after == InvoiceStatus.EXPIRED:
        return (EVENT_EXPIRED,)
    final = EVENT_SETTLED if after == InvoiceStatus.SETTLED else EVENT_INVALID
    if after in (InvoiceStatus.SETTLED, InvoiceStatus.INVALID):
        if before == InvoiceStatus.NEW:
            return (EVENT_PROCESSING, final)
        return (final,)
    return ()  # Processing -> New: no Greenfield event


def decide(
    invoice: InvoiceFacts, payments: Sequence[PaymentFact], now: datetime
) -> Decision:
    """Decide the invoice's status from its facts, its payments and the time."""
    _require_aware("now", now)
    threshold = full_threshold_sats(invoice.due_sats, invoice.payment_tolerance)
    # Full payment needs some value: a top-up (nothing due, threshold 0) is not paid by nothing.
    needed = max(threshold, 1)

    counting = [p for p in payments if p.state == PaymentState.SEEN]
    on_time = [p for p in counting if p.seen_at <= invoice.expires_at]
    paid = sum(p.value_sats for p in counting)
    paid_on_time = sum(p.value_sats for p in on_time)
    late = paid - paid_on_time
    overpaid = max(0, paid - invoice.due_sats) if invoice.due_sats > 0 else 0
    full_on_time = paid_on_time >= needed

    before = invoice.status
    status = before
    additional = invoice.additional_status
    incident: str | None = None

    if invoice.additional_status == AdditionalStatus.MARKED:
        return _decide_marked(invoice, payments, now)
    if before == InvoiceStatus.SETTLED:
        if not full_on_time:
            zero_conf = confirmations_required(
                invoice.speed_policy, invoice.amount_krw, invoice.zero_conf_limit_krw) == 0
            incident = INCIDENT_ZERO_CONF_LOSS if zero_conf else INCIDENT_DEEP_REORG
    elif before == InvoiceStatus.INVALID:
        pass
    elif before == InvoiceStatus.EXPIRED:
        additional = _expired_additional(paid, threshold)
    elif full_on_time:
        required = confirmations_required(
            invoice.speed_policy, invoice.amount_krw, invoice.zero_conf_limit_krw
        )
        confirmed = sum(p.value_sats for p in on_time if p.is_confirmed(required))
        if confirmed >= needed:
            status = InvoiceStatus.SETTLED
        elif now >= invoice.monitoring_expires_at:
            status = InvoiceStatus.INVALID
        else:
            status = InvoiceStatus.PROCESSING
        additional = _paid_additional(paid, invoice.due_sats, threshold)
    else:
        double_spent_on_time = any(
            p.state == PaymentState.DOUBLE_SPENT and p.seen_at <= invoice.expires_at
            for p in payments
        )
        if before == InvoiceStatus.PROCESSING and double_spent_on_time:
            status = InvoiceStatus.INVALID
            additional = _paid_additional(paid, invoice.due_sats, threshold)
        elif now >= invoice.expires_at:
            status = InvoiceStatus.EXPIRED
            additional = _expired_additional(paid, threshold)
        else:
            status = InvoiceStatus.NEW
            additional = (
                AdditionalStatus.PAID_PARTIAL if paid > 0 else AdditionalStatus.NONE
            )

    changed = status != before or additional != invoice.additional_status
    settled_sats = invoice.settled_sats
    if status == InvoiceStatus.SETTLED and before != InvoiceStatus.SETTLED:
        settled_sats = paid
    return Decision(
        status=status,
        additional_status=additional,
        paid_sats=paid,
        paid_on_time_sats=paid_on_time,
        overpaid_sats=overpaid,
        late_sats=late,
        events=_events(before, status),
        incident=incident,
        changed=changed,
        settled_sats=settled_sats,
    )


def _decide_marked(
    invoice: InvoiceFacts, payments: Sequence[PaymentFact], now: datetime
) -> Decision:
    """A person's mark fixes the status the shop sees; the chain status (which the money
    follows) keeps being decided from the payments and the time, with no events."""
    chain = decide(
        dataclasses.replace(
            invoice,
            status=invoice.chain_status or InvoiceStatus.NEW,
            additional_status=AdditionalStatus.NONE,
            chain_status=None,
        ),
        payments,
        now,
    )
    return dataclasses.replace(
        chain,
        status=invoice.status,
        additional_status=invoice.additional_status,
        events=(),
        changed=False,
        chain_status=chain.status,
    )


def apply(invoice: InvoiceFacts, decision: Decision) -> InvoiceFacts:
    """The invoice facts after storing ``decision`` (status fields only)."""
    return dataclasses.replace(
        invoice, status=decision.status, additional_status=decision.additional_status
    )
