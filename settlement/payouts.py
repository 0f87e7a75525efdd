"""Payout rails and the life of a payout.

A payout row is created (status ``created``) and the merchant's payable moved to
``payouts_in_transit`` in one transaction *before* any rail is called; the rail is then
called with the payout's id as the idempotency key. A crash anywhere leaves a ``created``
row that the next run sends again with the same key, so the rail answers with the first
transfer rather than making a second one.

    created ──send──▶ sent ──confirm / payout.paid──▶ paid
       │               │  └──payout.failed / transfer.reversed──▶ failed / returned
       └── (rail error: stays created, retried next run; flagged after N attempts)

Rails: `StripeRail` (Stripe Connect transfer of whole won to the store's connected
account) and `BankFileRail` (a CSV transfer file per day in the instance folder; a
person confirms each payout once the bank has executed it).
"""
from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

from sqlalchemy import select

from database import utc_now
from operations.metrics import PAYOUTS, count_after_commit
from settlement.ledger import post
from settlement.models import MerchantPayoutAccount, Payout
from settlement.rules import payout_paid_entry, payout_returned_entry

log = logging.getLogger(__name__)


class PayoutError(RuntimeError):
    pass


@dataclass(frozen=True)
class PayoutOrder:
    payout_id: str
    store_id: str
    day: date
    amount_krw: int
    destination: str
    rail: str
    attempts: int = 0  # earlier tries (their answers may have been lost)


@dataclass(frozen=True)
class SendResult:
    payout_id: str
    status: str  # sent | paid | created (not sent: try again later)
    external_id: str | None = None
    error: str | None = None
    attention: bool = False  # a person should look (even if it will be retried)


class PayoutRail:
    """The interface every rail implements."""

    name = "abstract"

    def send_many(self, orders: list[PayoutOrder]) -> list[SendResult]:
        return [self.send(order) for order in orders]

    def send(self, order: PayoutOrder) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def reverse(self, payout: Payout) -> tuple[bool, str]:
        """Pull a sent payout back (True, detail) or say why not (False, reason)."""
        return False, f"the {self.name} rail cannot reverse a payout"


# -- Stripe -----------------------------------------------------------------------------

class StripeRail(PayoutRail):
    """Stripe Connect transfers through the real `stripe` library.

    KRW is zero-decimal at Stripe, so `amount` is whole won. `Idempotency-Key` is the
    payout id: a retry after a 500 or a timeout gets the first transfer back.
    """

    name = "stripe"

    def __init__(self, api_key: str, *, api_base: str = "", timeout: float = 30.0,
                 max_network_retries: int = 2):
        import stripe

        if not api_key:
            raise PayoutError("the stripe rail needs STRIPE_API_KEY")
        self._stripe = stripe
        kwargs = {"max_network_retries": max_network_retries,
                  "http_client": stripe.RequestsClient(timeout=timeout)}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(api_key, **kwargs)

    def send(self, order: PayoutOrder) -> SendResult:
        stripe = self._stripe
        if not order.destination.startswith("acct_"):
            return SendResult(order.payout_id, "created", error="no Stripe connected account",
                              attention=True)
        params = {"amount": order.amount_krw, "currency": "krw", "destination": order.destination,
                  "transfer_group": order.payout_id,
                  "description": f"Busan Pay settlement {order.day.isoformat()}",
                  "metadata": {"payout_id": order.payout_id, "store_id": order.store_id,
                               "day": order.day.isoformat()}}
        try:
            if order.attempts:
                # Stripe forgets idempotency keys after 24 hours: on a retry, first look for
                # the transfer an earlier attempt may have made (transfer_group = payout id).
                found = self.client.v1.transfers.list({"transfer_group": order.payout_id, "limit": 1})
                if found.data:
                    return SendResult(order.payout_id, "sent", external_id=found.data[0].id)
            transfer = self.client.v1.transfers.create(
                params, {"idempotency_key": order.payout_id})
        except stripe.IdempotencyError as err:
            # the key was used with other parameters: never guess, a person decides
            return SendResult(order.payout_id, "created", error=f"idempotency: {err}", attention=True)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as err:
            return SendResult(order.payout_id, "created", error=f"{type(err).__name__}: {err}")
        except stripe.StripeError as err:  # invalid request, auth, permission: a person looks
            return SendResult(order.payout_id, "created", error=f"{type(err).__name__}: {err}",
                              attention=True)
        return SendResult(order.payout_id, "sent", external_id=transfer.id)

    def reverse(self, payout: Payout) -> tuple[bool, str]:
        stripe = self._stripe
        if not payout.external_id:
            return False, "no transfer to reverse"
        try:
            reversal = self.client.v1.transfers.reversals.create(
                payout.external_id, {"metadata": {"payout_id": payout.id}},
                {"idempotency_key": f"reverse-{payout.id}"})
        except stripe.StripeError as err:
            return False, f"{type(err).__name__}: {err}"
        return True, reversal.id


# -- bank file --------------------------------------------------------------------------

BANK_FILE_COLUMNS = ("payout_id", "store_id", "account_holder", "bank_name", "bank_account",
                     "amount_krw", "currency", "business_day", "memo")


class BankFileRail(PayoutRail):
    """One CSV transfer file per business day: ``<instance>/payouts/bank-transfers-<day>.csv``.

    The file is regenerated from the database (every bank-file payout of that day) and
    replaced atomically, so a rerun writes the same file; each payout is then `sent`, and
    `paid` when a person confirms the bank executed it (`flask settlement confirm`).
    """

    name = "bankfile"

    def __init__(self, db, folder: str | Path):
        self.db = db
        self.folder = Path(folder)

    def path_for(self, day: date) -> Path:
        return self.folder / f"bank-transfers-{day.isoformat()}.csv"

    def send_many(self, orders: list[PayoutOrder]) -> list[SendResult]:
        for day in sorted({o.day for o in orders}):
            self.write_day(day)
        return [SendResult(o.payout_id, "sent", external_id=f"bankfile:{o.day.isoformat()}")
                for o in orders]

    def write_day(self, day: date) -> Path:
        with self.db.read() as session:
            rows = session.execute(
                select(Payout, MerchantPayoutAccount)
                .outerjoin(MerchantPayoutAccount, MerchantPayoutAccount.store_id == Payout.store_id)
                .where(Payout.day == day, Payout.rail == self.name,
                       Payout.status.in_(("created", "sent", "paid")))
                .order_by(Payout.store_id)).all()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(BANK_FILE_COLUMNS)
        for payout, account in rows:
            writer.writerow([payout.id, payout.store_id, account.account_holder if account else "",
                             account.bank_name if account else "",
                             account.bank_account if account else "", str(payout.amount_krw),
                             "KRW", day.isoformat(), f"Busan Pay {day.isoformat()} {payout.id}"])
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_for(day)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".bank-", suffix=".csv")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return target


# -- composition -------------------------------------------------------------------------

def rails_for(gateway) -> dict[str, PayoutRail]:
    """The rails this gateway can use, built once (tests may put their own in extras)."""
    rails = gateway.extras.get("payout_rails")
    if rails is None:
        from settlement.config import settlement_config

        cfg = settlement_config(gateway)
        rails = {"bankfile": BankFileRail(gateway.db, Path(gateway.settings.instance_path) / "payouts")}
        if cfg.stripe_api_key:
            rails["stripe"] = StripeRail(cfg.stripe_api_key, api_base=cfg.stripe_api_base,
                                         timeout=cfg.stripe_timeout,
                                         max_network_retries=cfg.stripe_max_retries)
        gateway.extras["payout_rails"] = rails
    return rails


def choose_rail(default_rail: str, account: MerchantPayoutAccount | None,
                available: Iterable[str]) -> tuple[str, str]:
    """(rail, destination) for a store: its own choice, else the default; Stripe only with
    a connected account (merchants without Stripe get the bank file)."""
    available = set(available)
    wanted = (account.rail if account and account.rail else default_rail)
    if wanted == "stripe" and account and account.stripe_account_id and "stripe" in available:
        return "stripe", account.stripe_account_id
    return "bankfile", (account.bank_account if account else "")


def set_payout_account(session, store_id: str, *, stripe_account_id: str | None = None,
                       rail: str | None = None, bank_name: str = "", bank_account: str = "",
                       account_holder: str = "") -> MerchantPayoutAccount:
    account = session.get(MerchantPayoutAccount, store_id) or MerchantPayoutAccount(store_id=store_id)
    if stripe_account_id is not None:
        if stripe_account_id and not stripe_account_id.startswith("acct_"):
            raise PayoutError("a Stripe connected account id starts with acct_")
        account.stripe_account_id = stripe_account_id or None
    if rail is not None:
        if rail not in ("stripe", "bankfile", ""):
            raise PayoutError("rail is stripe or bankfile")
        account.rail = rail or None
    if bank_name:
        account.bank_name = bank_name
    if bank_account:
        account.bank_account = bank_account
    if account_holder:
        account.account_holder = account_holder
    account.updated_at = utc_now()
    session.add(account)
    session.flush()
    return account


# -- state changes (each in the caller's transaction) ----------------------------------

def _locked(session, payout_id: str) -> Payout | None:
    stmt = select(Payout).where(Payout.id == payout_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def record_send(session, result: SendResult, moment: datetime, max_attempts: int) -> Payout | None:
    payout = _locked(session, result.payout_id)
    if payout is None:
        return None
    payout.attempts += 1
    payout.updated_at = moment
    if result.status in ("sent", "paid") and payout.status == "created":
        count_after_commit(session, PAYOUTS, status="sent")
        payout.status = "sent"
        payout.external_id = result.external_id
        payout.last_error = None
    elif result.status == "created":
        payout.last_error = result.error
        if result.attention or payout.attempts >= max_attempts:
            payout.needs_attention = True
    session.add(payout)
    return payout


def record_sent_many(session, results: list[SendResult], moment: datetime) -> None:
    """Bulk form of `record_send` for rails that send a whole batch at once (bank file)."""
    from sqlalchemy import update

    table = Payout.__table__
    for result in results:
        if result.status not in ("sent", "paid"):
            raise PayoutError("record_sent_many records sent payouts only")
    by_external: dict[str | None, list[str]] = {}
    for result in results:
        by_external.setdefault(result.external_id, []).append(result.payout_id)
    for external_id, ids in by_external.items():
        for start in range(0, len(ids), 1000):
            done = session.execute(update(table).where(table.c.id.in_(ids[start:start + 1000]),
                                                       table.c.status == "created")
                                   .values(status="sent", external_id=external_id,
                                           last_error=None, attempts=table.c.attempts + 1,
                                           updated_at=moment)
                                   .execution_options(preserve_rowcount=True))
            count_after_commit(session, PAYOUTS, max(done.rowcount or 0, 0), status="sent")


def mark_sent(session, payout_id: str, external_id: str, moment: datetime) -> Payout | None:
    payout = _locked(session, payout_id)
    if payout is not None and payout.status == "created":
        count_after_commit(session, PAYOUTS, status="sent")
        payout.status, payout.external_id, payout.updated_at = "sent", external_id, moment
        session.add(payout)
    return payout


def mark_paid(session, payout_id: str, moment: datetime) -> Payout | None:
    """The money reached the merchant: in transit → the city's won (once)."""
    payout = _locked(session, payout_id)
    if payout is None or payout.status not in ("created", "sent"):
        return payout
    post(session, payout_paid_entry(payout.id, payout.store_id, payout.amount_krw, moment=moment))
    count_after_commit(session, PAYOUTS, status="paid")
    payout.status, payout.updated_at = "paid", moment
    session.add(payout)
    return payout


def mark_returned(session, payout_id: str, moment: datetime, *, reason: str,
                  status: str = "failed") -> Payout | None:
    """The money did not reach the merchant (or came back): it returns to the merchant's
    payable (once) and goes out again in a later daily run; flagged for a person."""
    payout = _locked(session, payout_id)
    if payout is None or payout.status in ("failed", "returned"):
        return payout
    post(session, payout_returned_entry(payout.id, payout.store_id, payout.amount_krw,
                                        after_paid=payout.status == "paid", reason=reason,
                                        moment=moment))
    count_after_commit(session, PAYOUTS, status=status)
    payout.status, payout.updated_at = status, moment
    payout.last_error, payout.needs_attention = reason[:1000], True
    session.add(payout)
    return payout


def payout_json(payout: Payout) -> dict:
    return {"payoutId": payout.id, "storeId": payout.store_id, "amount": str(payout.amount_krw),
            "currency": "KRW", "rail": payout.rail, "status": payout.status,
            "date": payout.day.isoformat(), "externalId": payout.external_id,
            "attempts": payout.attempts, "needsAttention": payout.needs_attention}
