"""Posting rules (pure): business facts → balanced ledger entries.

Accounts and their directions (debit > 0, credit < 0; every entry balances per currency)
---------------------------------------------------------------------------------------
=============================  ====  =========================================================
account                        cur.  normal balance and meaning
=============================  ====  =========================================================
``treasury:btc``               BTC   debit (asset): satoshis the treasury wallet received
``conversion:btc``             BTC   credit: satoshis recognised at a locked rate, not yet sold
``conversion:krw``             KRW   debit: the won value locked for those satoshis
``merchant_payable:<store>``   KRW   credit (liability): won owed to the merchant
``city_fees:krw``              KRW   credit (income): the city's fee
``fee_receivable:<store>``     KRW   debit (asset): fee a BTC-direct store owes the city
``payouts_in_transit:krw``     KRW   credit (liability): payouts sent, not yet confirmed
``treasury:krw``               KRW   debit (asset): the city's won (goes down as payouts land)
``exchange:krw``               KRW   debit (asset): won from BTC sales held at the venue
``refunds_owed:btc``           BTC   credit (liability): satoshis owed back to payers
``fx:krw``                     KRW   credit = FX gain, debit = FX loss (executed vs locked)
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
  conversion:<id>          BTC  conversion:btc          +10,000   (sold at 150,400,000:
                           BTC  treasury:btc            −10,000    ₩15,040 executed)
                           KRW  exchange:krw            +15,040
                           KRW  conversion:krw          −15,000
                           KRW  fx:krw                      −40   (a gain)
  payout:<id>:initiated    KRW  merchant_payable:<s>    +14,850
                           KRW  payouts_in_transit:krw  −14,850
  payout:<id>:paid         KRW  payouts_in_transit:krw  +14,850
                           KRW  treasury:krw            −14,850
  (payout:<id>:returned instead: in transit +14,850, merchant payable −14,850.)

Invoices are posted by *position*: :func:`invoice_position` says what an invoice should
have contributed to the ledger given its current facts, and :func:`invoice_entry` posts
the difference from what its earlier entries contributed. So the order in which the
outbox events arrive does not matter, and a repeated event changes nothing.

- Settled (KRW store): as above. Paid over: the sats beyond ``due_sats`` go to
  ``refunds_owed:btc`` until refunded or, by a person's decision, credited to the merchant
  (:func:`overpayment_credit_entry`). Paid under (within the tolerance) or marked settled:
  the merchant still gets the price; the shortfall ends as an FX loss when converted.
- Expired with money (PaidPartial, PaidLate), or Invalid by a person's mark: every sat
  received is owed to the payer (``treasury:btc`` / ``refunds_owed:btc``); nothing to the
  merchant. Invalid because never confirmed: nothing (the money never arrived).
- Deep-reorg incident on a settled invoice: the merchant credit and fee are reversed in a
  new entry flagged ``incident``; sats still counted are held as owed to the payer until
  a person decides.
- BTC-direct store (``settlement_mode == "btc"``): the sats went to the store's own
  wallet; nothing is converted; the fee is a receivable from the store
  (``fee_receivable:<s>`` / ``city_fees:krw``) and the memo records the sats.

Rounding (named rules, once, at the edge): fee = price × bps / 10,000 rounded HALF UP to
whole won. The won price is the invoice's `amount_krw` (the invoice core fixes it at
creation, flooring a BTC-priced invoice's value); a top-up (no price) is worth the sats
paid × the locked rate, rounded HALF UP.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Mapping

from settlement.ledger import Entry, entry_from_amounts

SATS_PER_BTC = 100_000_000

TREASURY_BTC = "treasury:btc"
TREASURY_KRW = "treasury:krw"
CONVERSION_BTC = "conversion:btc"
CONVERSION_KRW = "conversion:krw"
CITY_FEES = "city_fees:krw"
IN_TRANSIT = "payouts_in_transit:krw"
REFUNDS_OWED = "refunds_owed:btc"
EXCHANGE_KRW = "exchange:krw"
FX = "fx:krw"

#: Entry kinds that make up an invoice's position (others, e.g. refunds, are separate).
INVOICE_KINDS = ("invoice_settled", "invoice_payer_owed", "invoice_adjustment",
                 "invoice_reversal")


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

    @property
    def is_top_up(self) -> bool:
        return self.amount_krw is None and self.due_sats == 0

    @property
    def price_krw(self) -> int:
        if self.amount_krw is not None:
            return self.amount_krw
        if self.is_top_up:  # a top-up is worth what was paid
            return krw_for_sats(max(self.paid_sats, 0), self.rate)
        return krw_for_sats(self.due_sats, self.rate)

    @property
    def fee_krw(self) -> int:
        return city_fee(self.price_krw, self.fee_bps)

    @property
    def credited(self) -> bool:
        """Does the merchant get the price (settled and no incident)?"""
        return self.status == "Settled" and not self.incident


Position = dict[tuple[str, str], int]


def invoice_position(f: InvoiceFacts) -> Position:
    """What this invoice should have contributed to the ledger, given its facts now."""
    pos: Position = {}

    def add(account, currency, amount):
        if amount:
            pos[(account, currency)] = pos.get((account, currency), 0) + amount

    paid = max(f.paid_sats, 0)
    if f.settlement_mode == "btc":
        if f.credited:
            fee = f.fee_krw
            add(fee_receivable(f.store_id), "KRW", fee)
            add(CITY_FEES, "KRW", -fee)
        return pos
    if f.credited:
        excess = 0 if f.is_top_up else max(paid - f.due_sats, 0)
        add(TREASURY_BTC, "BTC", paid)
        add(CONVERSION_BTC, "BTC", -(paid - excess))
        add(REFUNDS_OWED, "BTC", -excess)
        price, fee = f.price_krw, f.fee_krw
        add(CONVERSION_KRW, "KRW", price)
        add(payable(f.store_id), "KRW", -(price - fee))
        add(CITY_FEES, "KRW", -fee)
        return pos
    owed_to_payer = (
        f.status == "Expired"
        or (f.status == "Invalid" and f.additional_status == "Marked")
        or (f.status == "Settled" and bool(f.incident)))
    if owed_to_payer:
        add(TREASURY_BTC, "BTC", paid)
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
    if f.additional_status == "Marked":
        flags.append("manual")
    memo = _invoice_memo(f)
    return entry_from_amounts(key, kind, change, memo=memo, store_id=f.store_id,
                              invoice_id=f.invoice_id, flags=tuple(flags), created_at=moment)


def _invoice_memo(f: InvoiceFacts) -> str:
    parts = [f"{f.status}/{f.additional_status}", f"price ₩{f.price_krw}",
             f"due {f.due_sats} sats", f"paid {f.paid_sats} sats", f"rate {f.rate}",
             f"fee {f.fee_bps} bps = ₩{f.fee_krw}"]
    if f.settlement_mode == "btc":
        parts.append(f"BTC-direct: {f.paid_sats} sats to the store's own wallet, not converted")
    if f.incident:
        parts.append(f"incident {f.incident}")
    return "; ".join(parts)


# -- refunds and a person's decisions --------------------------------------------------

def overpayment_credit_entry(f: InvoiceFacts, sats: int, decision_id: str, *,
                             moment: datetime | None = None, by: str = "") -> Entry:
    """A person credits sats owed to the payer to the merchant instead, at the locked rate,
    less the fee (value and fee each rounded half up)."""
    if sats <= 0:
        raise ValueError("credit a positive number of sats")
    value = krw_for_sats(sats, f.rate)
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


def conversion_entry(conversion_id: str, sats: int, executed_krw: int, locked_krw: int,
                     rate: Decimal, *, moment: datetime | None = None) -> Entry:
    if sats <= 0 or executed_krw < 0:
        raise ValueError("a conversion sells a positive number of sats for won")
    amounts = {(CONVERSION_BTC, "BTC"): sats, (TREASURY_BTC, "BTC"): -sats,
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
