"""A merchant's standing with the city: suspend (no new invoices; open invoices are still
watched and the balance is still paid out), reinstate, close (API keys revoked, cashiers
disabled, and in the same transaction a final payout of the whole payable balance to the
last approved account, even under the minimum; won that settles later is paid by the daily
run, which pays closed stores with no minimum). No Flask here."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import update
from sqlmodel import Session

from accounts.models import User
from accounts.service import Actor, audit
from merchants.models import ApiKey, Store
from settlement.daily import FinalPayout, create_final_payout

STANDINGS = ("active", "suspended", "closed")
# from → the standings it may move to (closing is final)
MOVES = {"active": ("suspended", "closed"), "suspended": ("active", "closed"), "closed": ()}


class StandingRefused(ValueError):
    """code: unknown-store | reason | not-allowed"""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class StandingChange:
    store: Store
    final_payout: FinalPayout | None = None  # set when the store was closed


def set_standing(session: Session, actor: Actor, store_id: str, standing: str, *, reason: str,
                 now: datetime, rails: tuple[str, Iterable[str]] = ("bankfile", ("bankfile",))
                 ) -> StandingChange:
    """`rails`: the default rail and the rails configured (the final payout's choice);
    the caller sends a created final payout after the commit (`send_created`)."""
    store = session.get(Store, store_id)
    if store is None:
        raise StandingRefused("unknown-store")
    reason = (reason or "").strip()
    if standing != "active" and (not reason or len(reason) > 500):
        raise StandingRefused("reason")
    if standing not in MOVES.get(store.standing, ()):
        raise StandingRefused("not-allowed")
    previous = store.standing
    store.standing, store.standing_reason = standing, reason[:500] if standing != "active" else ""
    session.add(store)
    revoked = disabled = 0
    if standing == "closed":
        revoked = session.execute(update(ApiKey).where(ApiKey.store_id == store_id,
                                                       ApiKey.revoked_at.is_(None))
                                  .values(revoked_at=now)
                                  .execution_options(synchronize_session=False)).rowcount
        disabled = session.execute(update(User).where(User.store_id == store_id,
                                                      User.role == "cashier")
                                   .values(disabled=True)
                                   .execution_options(synchronize_session=False)).rowcount
    session.flush()
    final = None
    if standing == "closed":
        final = create_final_payout(session, store_id, now, default_rail=rails[0],
                                    available=rails[1])
    extra = {"final_payout": final.outcome, "final_payout_id": final.payout_id,
             "final_payout_krw": final.amount} if final else {}
    audit(session, actor, "merchant." + {"active": "reinstated"}.get(standing, standing),
          target=store_id, store_id=store_id, previous=previous, reason=reason,
          keys_revoked=revoked, cashiers_disabled=disabled, **extra)
    return StandingChange(store, final)
