"""Posting rules (pure): business facts → balanced ledger entries.

Accounts and their directions (debit > 0, credit < 0; every entry balances per currency)
---------------------------------------------------------------------------------------
=============================  ====  =========================================================
account                        cur.  normal balance and meaning
=============================  ====  =========================================================
``treasury:btc``               BTC   debit (asset): satoshis the treasury wallet received
``treasury_ln:btc``            BTC   debit (asset): satoshis the city's Lightning node received
``conversion:btc``             BTC   credit: satoshis recognised at a locked rate, not yet sold
``conversion:krw``             KRW   debit: the won value locked for those satoshis
``merchant_payable:<store>``   KRW   credit (liability): won owed to the merchant
``city_fees:krw``              KRW   credit (income): the city's fee
``fee_receivable:<store>``     KRW   debit (asset): fee a BTC-direct store owes the city
``payouts_in_transit:krw``     KRW   credit (liability): payouts sent, not yet confirmed
``treasury:krw``               KRW   debit (asset): the city's won (goes down as payouts land)
``venue_btc:<venue>``          BTC   debit (asset): satoshis deposited at a conversion venue
                                     for a sale, not sold yet (the venue holds them)
``exchange:krw``               KRW   debit (asset): won from BTC sales held at the venue
``refunds_owed:btc``           BTC   credit (liability): satoshis owed back to payers
``fx:krw``                     KRW   credit = FX gain, debit = FX loss (executed vs locked)
``city_loss:krw``              KRW   debit (expense): 0-conf payments the city accepted, then lost
``city_offchain:krw``          KRW   debit: won the city received off-chain and credited by an
                                     approved treasury action (two people)
=============================  ====  =========================================================

``conversion:btc``/``conversion:krw`` are the two legs of a currency trading account: an
entry that takes in BTC and owes won balances in each currency through them. Together
they hold "N sats worth ₩V at the locked rates"; selling the sats empties both and the
difference between the executed won and V is FX gain or loss.

Worked example: a ₩15,000 invoice at 150,000,000 KRW/BTC is 10,000 sats; the city fee
at 100 bps is 15,000 × 100 / 10,000 = ₩150 (rounded half up), the merchant gets ₩14,850.

  invoice:<id>:settled     BTC  treasury:btc            +10,000
                           BTC  conversion:btc          −10,000
                           KRW  conversion:krw          +15,000
                           KRW  merchant_payable:<s>    −14,850
                           KRW  city_fees:krw              −150
  venue_deposit:<id>       BTC  venue_btc:<venue>       +10,000   (sent to the venue for
                           BTC  treasury:btc            −10,000    the sale <id>)
  conversion:<id>          BTC  conversion:btc          +10,000   (sold at 150,400,000:
                           BTC  venue_btc:<venue>       −10,000    ₩15,040 executed)
                           KRW  exchange:krw            +15,040
                           KRW  conversion:krw          −15,000
                           KRW  fx:krw                      −40   (a gain)
  payout:<id>:initiated    KRW  merchant_payable:<s>    +14,850
                           KRW  payouts_in_transit:krw  −14,850
  payout:<id>:paid         KRW  payouts_in_transit:krw  +14,850
                           KRW  treasury:krw            −14,850
  (payout:<id>:returned instead: in transit +14,850, merchant payable −14,850.)

The money boundary (the invariant ``ledger check`` proves)
-------------------------------------------------------
For a KRW-settling store, the won the ledger credits a merchant for an invoice is never
more than the value received for it at the locked rate::

    credited value V = min(price, floor(counted sats × locked rate))      (priced invoice)
    credited value V = floor(counted sats × locked rate)                  (top-up)
    merchant credit  = V − fee(V)

where *counted sats* are the payments the status decision counts (``paid_sats``), at
most the sats due (anything beyond is owed to the payer). The fee is charged on what is
credited: ``fee(V) = V × bps / 10,000`` rounded HALF UP (so a reduced credit pays a
reduced fee). Floor, not half up, so the credit never exceeds the value received by
even half a won.

- The payment tolerance forgives the *status* (an invoice paid 97 % with a 5 % tolerance
  is Settled for the shop), never the won: the merchant is credited the 97 % received.
- A merchant's mark (Greenfield ``POST …/status`` Settled/Invalid) changes the status its
  shop sees, never the money. Money follows the *chain status* (``chain_status``: what
  the status decision says from the payments, kept next to the marked status): an
  unpaid invoice marked Settled credits ₩0; a chain-settled invoice marked Invalid stays
  credited; money received on a marked invoice stays where the chain facts put it (an
  expired partly paid invoice marked Settled: still owed to the payer; the treasury
  refunds it, or credits it to the merchant by a person's decision). Why: a merchant's API
  key must never be able to move a payer's money to itself.
- Nothing else credits a merchant, except three explicit, audited, backed decisions:
  (1) a payment the city accepted at 0 confirmations under its own limit
  (``confirmations_required == 0``) that is then double-spent, replaced or reorganised
  away stays credited at what it was settled with (``settled_sats``): the shortfall is
  posted to ``city_loss:krw`` (incident ``zero-conf-loss``), the city's risk, not taken
  back from the merchant; (2) sats owed to a payer credited to the merchant by a person
  (:func:`overpayment_credit_entry`: backed by received sats, floor value); (3) won the
  city received off-chain, credited by a treasury action proposed by one person and
  approved by another (:func:`offchain_credit_entry`, ``city_offchain:krw``).
- Every other loss of a settled invoice's value (a deep reorg of a payment that needed
  confirmations) reverses the credit in an entry flagged ``incident``.

Invoices are posted by *position*: :func:`invoice_position` says what an invoice should
have contributed to the ledger given its current facts, and :func:`invoice_entry` posts
the difference from what its earlier entries contributed. So the order in which the
outbox events arrive does not matter, and a repeated event changes nothing.

- Settled by the chain (KRW store): as above. Paid over: the sats beyond ``due_sats`` go to
  ``refunds_owed:btc`` until refunded or, by a person's decision, credited to the merchant
  (:func:`overpayment_credit_entry`). Paid under (within the tolerance): the merchant is
  credited the value received, ``conversion:krw`` holds exactly that value.
- Expired by the chain with money (PaidPartial, PaidLate): every sat received is owed to
  the payer (``treasury:btc`` / ``refunds_owed:btc``); nothing to the merchant. Invalid
  (never confirmed, double spent before settling): nothing (the money never arrived).
- Deep-reorg incident on a settled invoice: the merchant credit and fee are reversed in a
  new entry flagged ``incident``; sats still counted are held as owed to the payer until
  a person decides. Zero-conf loss: see above (``city_loss:krw``).
- Lightning: sats received over Lightning (``paid_ln_sats``, part of ``paid_sats``) are
  debited to ``treasury_ln:btc`` instead of ``treasury:btc``: they sit in the node's
  channels, not in the on-chain wallet, and the treasury must see (and reconcile) each
  balance on its own. Nothing else differs: the merchant is credited the same V − fee for
  the counted sats however they came, and overpaid or owed sats are owed back alike
  (refunds are sent on-chain: ``refund_sent`` debits ``treasury:btc`` either way).
- BTC-direct store (``settlement_mode == "btc"``): the sats went to the store's own
  wallet; nothing is converted; the fee on the received value is a receivable from the
  store (``fee_receivable:<s>`` / ``city_fees:krw``) and the memo records the sats.

Rounding (named rules, once, at the edge): credited value FLOOR, fee HALF UP on the
credited value. The won price is the invoice's `amount_krw` (the invoice core fixes it at
creation, flooring a BTC-priced invoice's value).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Mapping

from payments import invoice_status
from settlement.ledger import Entry, entry_from_amounts

SATS_PER_BTC = 100_000_000

TREASURY_BTC = "treasury:btc"
TREASURY_LN = "treasury_ln:btc"
TREASURY_KRW = "treasury:krw"
CONVERSION_BTC = "conversion:btc"
CONVERSION_KRW = "conversion:krw"
CITY_FEES = "city_fees:krw"
IN_TRANSIT = "payouts_in_transit:krw"
REFUNDS_OWED = "refunds_owed:btc"
EXCHANGE_KRW = "exchange:krw"
VENUE_BTC = "venue_btc"  # venue_btc:<venue>
FX = "fx:krw"
CITY_LOSS = "city_loss:krw"
CITY_OFFCHAIN = "city_offchain:krw"

#: The incident of a settled invoice the city accepted at 0 confirmations whose payment
#: was then lost (set by `payments.invoice_status.decide`).
INCIDENT_ZERO_CONF_LOSS = invoice_status.INCIDENT_ZERO_CONF_LOSS

#: Entry kinds that make up an invoice's position (others, e.g. refunds, are separate).
INVOICE_KINDS = ("invoice_settled", "invoice_payer_owed", "invoice_adjustment",
                 "invoice_reversal")
#: Entry kinds that credit a merchant for an invoice outside its position, each backed by
#: a person's decision (sats owed to the payer, or an approved off-chain credit).
DECISION_KINDS = ("overpayment_credited", "offchain_credited")


def payable(store_id: str) -> str:
    return f"merchant_payable:{store_id}"


def fee_receivable(store_id: str) -> str:
    return f"fee_receivable:{store_id}"


def half_up(value: Decimal) -> int:
    """Round a non-negative or negative Decimal to an int, halves away from zero."""
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def city_fee(price_krw: int, fee_bps: int) -> int:
    """The city's fee in whole won: price × bps / 10,000, rounded half up."""
    if not isinstance(price_krw, int) or price_krw < 0:
        raise ValueError("price_krw is a non-negative int")
    if not isinstance(fee_bps, int) or not 0 <= fee_bps <= 10_000:
        raise ValueError("fee_bps is an int from 0 to 10,000")
    whole, rest = divmod(price_krw * fee_bps, 10_000)
    return whole + (1 if rest * 2 >= 10_000 else 0)


def krw_for_sats(sats: int, rate: Decimal) -> int:
    """Won value of satoshis at a KRW/BTC rate, rounded half up."""
    with localcontext() as ctx:
        ctx.prec = 60
        return half_up(Decimal(sats) * rate / SATS_PER_BTC)


def received_krw(sats: int, rate: Decimal) -> int:
    """Won value of received satoshis at a KRW/BTC rate, rounded DOWN: what a merchant can
    be credited for them (never more than was received). Exact integer arithmetic on the
    rate's fraction (`ledger check` runs this for every invoice)."""
    if sats <= 0:
        return 0
    numerator, denominator = _ratio(rate)
    return sats * numerator // (denominator * SATS_PER_BTC)


@lru_cache(maxsize=4096)
def _ratio(rate: Decimal) -> tuple[int, int]:
    return rate.as_integer_ratio()


@dataclass(frozen=True)
class InvoiceFacts:
    invoice_id: str
    store_id: str
    settlement_mode: str  # krw | btc
    status: str
    additional_status: str
    incident: str | None
    amount_krw: int | None
    due_sats: int
    paid_sats: int
    rate: Decimal
    fee_bps: int
    # What the chain facts say when a person marked the invoice (None: not marked, the
    # status is the chain's), and the counted sats when the chain settled it.
    chain_status: str | None = None
    settled_sats: int | None = None
    # Of paid_sats, those received over Lightning (in the node, not the on-chain wallet).
    paid_ln_sats: int = 0

    @property
    def is_top_up(self) -> bool:
        return self.amount_krw is None and self.due_sats == 0

    @property
    def money_status(self) -> str:
        """The status the money follows: the chain's, never a person's mark."""
        if self.additional_status == "Marked":
            return self.chain_status or "New"
        return self.status

    @property
    def price_krw(self) -> int | None:
        """The won price, None for a top-up (worth what was received)."""
        if self.amount_krw is not None:
            return self.amount_krw
        if self.is_top_up:
            return None
        return krw_for_sats(self.due_sats, self.rate)

    def counted(self, sats: int) -> int:
        """Of `sats` received, the sats that pay the invoice (beyond due: the payer's)."""
        sats = max(sats, 0)
        return sats if self.is_top_up else min(sats, self.due_sats)

    def value_of(self, sats: int) -> int:
        """The credited value V of `sats` received: min(price, floor(counted × rate))."""
        value = received_krw(self.counted(sats), self.rate)
        price = self.price_krw
        return value if price is None else min(price, value)

    @property
    def credited_krw(self) -> int:
        """V: the won the invoice is worth to the merchant before the fee."""
        return self.value_of(self.paid_sats)

    @property
    def fee_krw(self) -> int:
        return city_fee(self.credited_krw, self.fee_bps)

    @property
    def city_loss(self) -> bool:
        """A 0-conf payment the city accepted, then lost: the city carries it."""
        return (self.money_status == "Settled" and self.incident == INCIDENT_ZERO_CONF_LOSS
                and self.settlement_mode != "btc")

    @property
    def credited(self) -> bool:
        """Does the merchant get credited (settled by the chain, and no loss incident
        other than the city's own 0-conf risk)?"""
        return self.money_status == "Settled" and (not self.incident or self.city_loss)


Position = dict[tuple[str, str], int]


def invoice_position(f: InvoiceFacts) -> Position:
    """What this invoice should have contributed to the ledger, given its facts now."""
    pos: Position = {}

    def add(account, currency, amount):
        if amount:
            pos[(account, currency)] = pos.get((account, currency), 0) + amount

    paid = max(f.paid_sats, 0)
    paid_ln = min(max(f.paid_ln_sats, 0), paid)

    def received():  # the sats received, in the treasury account they sit in
        add(TREASURY_BTC, "BTC", paid - paid_ln)
        add(TREASURY_LN, "BTC", paid_ln)

    if f.settlement_mode == "btc":
        if f.credited:
            fee = f.fee_krw
            add(fee_receivable(f.store_id), "KRW", fee)
            add(CITY_FEES, "KRW", -fee)
        return pos
    if f.credited:
        counted = f.counted(paid)
        received()
        add(CONVERSION_BTC, "BTC", -counted)
        add(REFUNDS_OWED, "BTC", -(paid - counted))
        value = f.credited_krw
        if f.city_loss:  # credited at what it settled with; the lost part is the city's
            credit = max(f.value_of(f.paid_sats if f.settled_sats is None else f.settled_sats),
                         value)
            add(CITY_LOSS, "KRW", credit - value)
        else:
            credit = value
        fee = city_fee(credit, f.fee_bps)
        add(CONVERSION_KRW, "KRW", value)
        add(payable(f.store_id), "KRW", -(credit - fee))
        add(CITY_FEES, "KRW", -fee)
        return pos
    status = f.money_status
    owed_to_payer = status == "Expired" or (status == "Settled" and bool(f.incident))
    if owed_to_payer:
        received()
        add(REFUNDS_OWED, "BTC", -paid)
    return pos


def diff(target: Mapping[tuple[str, str], int], posted: Mapping[tuple[str, str], int]) -> Position:
    keys = set(target) | set(posted)
    return {k: target.get(k, 0) - posted.get(k, 0) for k in keys
            if target.get(k, 0) != posted.get(k, 0)}


def invoice_entry(f: InvoiceFacts, posted: Mapping[tuple[str, str], int], *, seq: int,
                  moment: datetime | None = None) -> Entry | None:
    """The entry that brings the invoice's ledger position to what its facts say.

    ``posted`` is what its earlier entries (of :data:`INVOICE_KINDS`) contributed and
    ``seq`` how many there are: the first entry's key names the event
    (``invoice:<id>:settled`` or ``invoice:<id>:owed``), later ones ``invoice:<id>:adj:<n>``.
    """
    change = diff(invoice_position(f), posted)
    if not change:
        return None
    if f.settlement_mode == "btc":  # a receivable falling is the merchant's credit falling
        merchant_change = -change.get((fee_receivable(f.store_id), "KRW"), 0)
    else:  # a payable debited is the merchant's credit falling
        merchant_change = change.get((payable(f.store_id), "KRW"), 0)
    if seq == 0:
        if f.credited:
            key, kind = f"invoice:{f.invoice_id}:settled", "invoice_settled"
        else:
            key, kind = f"invoice:{f.invoice_id}:owed", "invoice_payer_owed"
    else:
        key = f"invoice:{f.invoice_id}:adj:{seq}"
        kind = "invoice_reversal" if merchant_change > 0 else "invoice_adjustment"
    flags = []
    if f.incident:
        flags.append("incident")
    if (CITY_LOSS, "KRW") in change:
        flags.append("city-loss")
    if f.additional_status == "Marked":
        flags.append("marked")  # the shop's status was marked; the money followed the chain
    memo = _invoice_memo(f)
    return entry_from_amounts(key, kind, change, memo=memo, store_id=f.store_id,
                              invoice_id=f.invoice_id, flags=tuple(flags), created_at=moment)


def _invoice_memo(f: InvoiceFacts) -> str:
    price = "top-up" if f.price_krw is None else f"price ₩{f.price_krw}"
    parts = [f"{f.status}/{f.additional_status}", price,
             f"due {f.due_sats} sats", f"paid {f.paid_sats} sats", f"rate {f.rate}",
             f"received value ₩{f.credited_krw}", f"fee {f.fee_bps} bps = ₩{f.fee_krw}"]
    if f.additional_status == "Marked":
        parts.append(f"marked by the merchant; chain status {f.money_status}")
    if f.city_loss:
        parts.append(f"0-conf payment lost after settling with {f.settled_sats} sats: "
                     "the shortfall is the city's")
    if f.settlement_mode == "btc":
        parts.append(f"BTC-direct: {f.paid_sats} sats to the store's own wallet, not converted")
    if f.incident:
        parts.append(f"incident {f.incident}")
    return "; ".join(parts)


# -- refunds and a person's decisions --------------------------------------------------

def overpayment_credit_entry(f: InvoiceFacts, sats: int, decision_id: str, *,
                             moment: datetime | None = None, by: str = "") -> Entry:
    """A person credits sats owed to the payer to the merchant instead, at the locked rate,
    less the fee (value rounded down, as every credit; fee half up)."""
    if sats <= 0:
        raise ValueError("credit a positive number of sats")
    value = received_krw(sats, f.rate)
    fee = city_fee(value, f.fee_bps)
    amounts = {(REFUNDS_OWED, "BTC"): sats, (CONVERSION_BTC, "BTC"): -sats,
               (CONVERSION_KRW, "KRW"): value, (payable(f.store_id), "KRW"): -(value - fee),
               (CITY_FEES, "KRW"): -fee}
    return entry_from_amounts(f"invoice:{f.invoice_id}:credit:{decision_id}", "overpayment_credited",
                              amounts, memo=f"{sats} sats owed to the payer credited to the "
                              f"merchant by {by or 'a person'}", store_id=f.store_id,
                              invoice_id=f.invoice_id, flags=("manual",), created_at=moment)


def refund_sent_entry(claim_id: str, invoice_id: str, store_id: str, sats: int, txid: str, *,
                      moment: datetime | None = None) -> Entry:
    """The operator sent a refund (the network fee comes out of the payer's amount)."""
    if sats <= 0:
        raise ValueError("refund a positive number of sats")
    return entry_from_amounts(f"refund:{claim_id}:sent", "refund_sent",
                              {(REFUNDS_OWED, "BTC"): sats, (TREASURY_BTC, "BTC"): -sats},
                              memo=f"refund of {sats} sats in {txid}", store_id=store_id,
                              invoice_id=invoice_id, created_at=moment)


def offchain_credit_entry(credit_id: str, store_id: str, invoice_id: str | None, amount_krw: int,
                          *, proposed_by: str, approved_by: str, reason: str,
                          moment: datetime | None = None) -> Entry:
    """Won the city received off-chain (e.g. cash at the counter for a short payment),
    credited to the merchant by an approved treasury action: backed by two people's
    decision, not by sats. No fee (the treasury decides the amount credited)."""
    if not isinstance(amount_krw, int) or amount_krw <= 0:
        raise ValueError("credit a positive whole number of won")
    if not proposed_by or proposed_by == approved_by:
        raise ValueError("an off-chain credit needs two different people")
    return entry_from_amounts(
        f"offchain:{credit_id}", "offchain_credited",
        {(CITY_OFFCHAIN, "KRW"): amount_krw, (payable(store_id), "KRW"): -amount_krw},
        memo=f"off-chain credit ₩{amount_krw}: {reason}; proposed by {proposed_by}, approved "
             f"by {approved_by}"[:500], store_id=store_id, invoice_id=invoice_id,
        flags=("manual",), created_at=moment)


# -- conversion -----------------------------------------------------------------------

def locked_share(sats: int, unconverted_sats: int, locked_krw: int) -> int:
    """The locked won value of `sats` out of the unconverted pool (all of it when the sale
    takes the whole pool), rounded half up."""
    if unconverted_sats <= 0:
        return 0
    if sats >= unconverted_sats:
        return locked_krw
    with localcontext() as ctx:
        ctx.prec = 60
        return half_up(Decimal(locked_krw) * sats / unconverted_sats)


def venue_btc(venue: str) -> str:
    """The venue's BTC account: sats deposited there for a sale and not sold yet."""
    return f"{VENUE_BTC}:{venue}"


def venue_deposit_entry(conversion_id: str, venue: str, sats: int, *,
                        moment: datetime | None = None, from_lightning: int = 0) -> Entry:
    """The sats of sale `conversion_id` leave the treasury for the venue: `from_lightning`
    of them out of the Lightning node's account, the rest out of the on-chain wallet's."""
    if sats <= 0:
        raise ValueError("a deposit moves a positive number of sats")
    if not 0 <= from_lightning <= sats:
        raise ValueError("from_lightning is part of the sats deposited")
    return entry_from_amounts(f"venue_deposit:{conversion_id}", "venue_deposit",
                              {(venue_btc(venue), "BTC"): sats,
                               (TREASURY_BTC, "BTC"): -(sats - from_lightning),
                               (TREASURY_LN, "BTC"): -from_lightning},
                              memo=f"{sats} sats deposited at {venue} for sale {conversion_id}",
                              created_at=moment)


def venue_return_entry(conversion_id: str, venue: str, sats: int, why: str, *,
                       moment: datetime | None = None) -> Entry | None:
    """Deposited sats the sale did not sell (refused, or filled in part) go back to the
    treasury's books, so the venue account holds only the sats of unfinished sales."""
    if sats <= 0:
        return None
    return entry_from_amounts(f"venue_return:{conversion_id}", "venue_return",
                              {(TREASURY_BTC, "BTC"): sats, (venue_btc(venue), "BTC"): -sats},
                              memo=f"{sats} sats of sale {conversion_id} back from {venue}: {why}",
                              created_at=moment)


def conversion_entry(conversion_id: str, sats: int, executed_krw: int, locked_krw: int,
                     rate: Decimal, *, venue: str, moment: datetime | None = None) -> Entry:
    """The fill: the venue's deposited sats are sold for won at the venue."""
    if sats <= 0 or executed_krw < 0:
        raise ValueError("a conversion sells a positive number of sats for won")
    amounts = {(CONVERSION_BTC, "BTC"): sats, (venue_btc(venue), "BTC"): -sats,
               (EXCHANGE_KRW, "KRW"): executed_krw, (CONVERSION_KRW, "KRW"): -locked_krw,
               (FX, "KRW"): -(executed_krw - locked_krw)}
    return entry_from_amounts(f"conversion:{conversion_id}", "conversion", amounts,
                              memo=f"sold {sats} sats for ₩{executed_krw} at {rate}; locked "
                              f"value ₩{locked_krw}; FX {executed_krw - locked_krw:+d}",
                              created_at=moment)


def fx_writeoff_entry(key: str, locked_krw: int, *, moment: datetime | None = None) -> Entry | None:
    """Locked won left in the conversion account with no sats behind it (marked-settled
    invoices paid short): an FX loss."""
    if not locked_krw:
        return None
    return entry_from_amounts(key, "fx_writeoff", {(FX, "KRW"): locked_krw,
                                                   (CONVERSION_KRW, "KRW"): -locked_krw},
                              memo="locked value with no sats to sell", created_at=moment)


# -- payouts --------------------------------------------------------------------------

def payout_initiated_entry(payout_id: str, store_id: str, amount_krw: int, day, *,
                           moment: datetime | None = None) -> Entry:
    if amount_krw <= 0:
        raise ValueError("a payout moves a positive amount")
    return Entry(f"payout:{payout_id}:initiated", "payout_initiated", (
        _line(payable(store_id), amount_krw), _line(IN_TRANSIT, -amount_krw)),
        memo=f"payout for {day}", store_id=store_id, payout_id=payout_id, created_at=moment)


def payout_paid_entry(payout_id: str, store_id: str, amount_krw: int, *,
                      moment: datetime | None = None) -> Entry:
    return Entry(f"payout:{payout_id}:paid", "payout_paid", (
        _line(IN_TRANSIT, amount_krw), _line(TREASURY_KRW, -amount_krw)),
        memo="payout confirmed", store_id=store_id, payout_id=payout_id, created_at=moment)


def payout_returned_entry(payout_id: str, store_id: str, amount_krw: int, *, after_paid: bool,
                          reason: str = "", moment: datetime | None = None) -> Entry:
    """The money comes back to the merchant's payable (it goes out again in a later run)."""
    source = TREASURY_KRW if after_paid else IN_TRANSIT
    return Entry(f"payout:{payout_id}:returned", "payout_returned", (
        _line(source, amount_krw), _line(payable(store_id), -amount_krw)),
        memo=f"payout returned: {reason}"[:500], store_id=store_id, payout_id=payout_id,
        flags=("attention",), created_at=moment)


def _line(account: str, amount: int):
    from settlement.ledger import Line

    return Line(account, "BTC" if account.endswith(":btc") else "KRW", amount)
