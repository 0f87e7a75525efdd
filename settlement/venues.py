"""Conversion venues as the treasury's counterparties: several venues, a cap on each,
failover, and the venue's own balance checked against our books.

Configuration, primary first (each venue Upbit-compatible: Upbit itself, Bithumb's 2.0
private API, or the partner exchange):

    BUSANPAY_EXCHANGE_VENUES=partner=upbit:https://api.partner.example,bithumb=bithumb:https://api.bithumb.com
    BUSANPAY_VENUE_PARTNER_ACCESS_KEY / BUSANPAY_VENUE_PARTNER_SECRET_KEY   (per venue)

Without it, the single `BUSANPAY_EXCHANGE_URL` venue is the list.

- **Holdings** (from the ledger): the won on `exchange:krw` posted by the venue's
  conversions (`conversion:<id>`) less what was withdrawn from it
  (`venue_withdrawal:<venue>:<ref>`, `flask exchange withdraw`).
- **Cap** (won, per venue, set by the city admin, audited). A sale at a venue is sized so
  that the won it brings in (valued at the pool's locked rates, less a margin for the
  market moving) keeps the venue's holdings under its cap; a venue at its cap gets
  nothing.
- **Failover**: `convert_all` retries a venue's unfinished sale there (its identifier
  makes that safe), then offers the rest of the pool to each venue in order, skipping one
  that is down (its balance call fails), at its cap, or whose balance disagrees with the
  ledger. Merchants never wait on this: they are paid from the city's ledger.
- **Reconciliation**: the venue's `GET /v1/accounts` KRW (balance + locked) against the
  ledger's holdings. Each of our fills is floored to whole won, so the venue may hold up
  to one won per conversion more than the ledger; any other difference is a mismatch,
  kept in `exchange_venue` with the time, for the dashboard (shown first), the metrics
  and the alert rules.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Optional

from sqlalchemy import BigInteger, Boolean, Column, Text, func, literal, or_, select
from sqlmodel import Field, SQLModel

from database import UTCDateTime, utc_now
from settlement.ledger import entry_from_amounts, lock, post
from settlement.rules import EXCHANGE_KRW, TREASURY_KRW

log = logging.getLogger(__name__)

CAP_MARGIN = Decimal("0.02")  # the market may pay up to 2 % more than the locked value
WITHDRAWAL = "venue_withdrawal"
CONVERSION_LOCK = "busanpay:conversion"  # settlement.conversion.LOCK: holdings change under it


class ExchangeVenue(SQLModel, table=True):
    """Per venue: the city's cap and the last balance check."""

    __tablename__ = "exchange_venue"

    name: str = Field(primary_key=True, max_length=32)
    cap_krw: Optional[int] = Field(default=None, sa_column=Column("cap_krw", BigInteger(),
                                                                   nullable=True))
    cap_set_by: Optional[str] = Field(default=None, max_length=24)
    cap_set_at: Optional[datetime] = Field(default=None, sa_column=Column(
        "cap_set_at", UTCDateTime(), nullable=True))
    up: bool = Field(default=True, sa_column=Column("up", Boolean(), nullable=False,
                                                    default=True))
    reported_krw: Optional[int] = Field(default=None, sa_column=Column(
        "reported_krw", BigInteger(), nullable=True))
    ledger_krw: Optional[int] = Field(default=None, sa_column=Column(
        "ledger_krw", BigInteger(), nullable=True))
    mismatch: bool = Field(default=False, sa_column=Column("mismatch", Boolean(),
                                                           nullable=False, default=False))
    last_error: Optional[str] = Field(default=None, sa_column=Column("last_error", Text(),
                                                                     nullable=True))
    checked_at: Optional[datetime] = Field(default=None, sa_column=Column(
        "checked_at", UTCDateTime(), nullable=True))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(
        "updated_at", UTCDateTime(), nullable=False))


class VenueConfigError(ValueError):
    pass


@dataclass(frozen=True)
class VenueSpec:
    name: str
    kind: str  # upbit | bithumb (same private API)
    url: str


def parse_venues(spec: str) -> list[VenueSpec]:
    """`name=kind:URL,…` (primary first)."""
    venues: list[VenueSpec] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = item.partition("=")
        kind, sep2, url = rest.partition(":")
        name, kind = name.strip().lower(), kind.strip().lower()
        if not sep or not sep2 or not url.strip() or not name.replace("-", "").isalnum() \
                or len(name) > 32:
            raise VenueConfigError(f"write a venue as name=kind:https://host, got {item!r}")
        if kind not in ("upbit", "bithumb"):
            raise VenueConfigError(f"venue {name}: unknown kind {kind!r} (upbit, bithumb)")
        if name in {v.name for v in venues}:
            raise VenueConfigError(f"venue {name} is listed twice")
        venues.append(VenueSpec(name, kind, url.strip().rstrip("/")))
    return venues


def clients_from_env(env=None) -> list:
    from settlement.conversion import UpbitClient

    env = os.environ if env is None else env
    clients = []
    for venue in parse_venues(env.get("BUSANPAY_EXCHANGE_VENUES") or ""):
        prefix = "BUSANPAY_VENUE_" + venue.name.upper().replace("-", "_")
        clients.append(UpbitClient(venue.url, env.get(prefix + "_ACCESS_KEY") or "",
                                   env.get(prefix + "_SECRET_KEY") or "", name=venue.name))
    return clients


def venues_for(gateway) -> list:
    """The venues in order: the gateway's list, else the single configured exchange."""
    if gateway.venues is None:
        from settlement.conversion import exchange_for

        configured = clients_from_env()
        if not configured:
            single = exchange_for(gateway)
            configured = [single] if single is not None else []
        gateway.venues = configured
    return list(gateway.venues)


# -- holdings, from the ledger ---------------------------------------------------------

def holdings_krw(session, venue: str) -> int:
    from settlement.models import Conversion, JournalEntry, LedgerAccount, Posting

    sold = select(literal("conversion:").concat(Conversion.id)).where(Conversion.venue == venue)
    total = session.execute(
        select(func.coalesce(func.sum(Posting.amount), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(LedgerAccount.code == EXCHANGE_KRW,
               or_(JournalEntry.business_key.in_(sold),
                   JournalEntry.business_key.like(f"{WITHDRAWAL}:{venue}:%")))).scalar_one()
    return int(total)


def withdrawal_entry(venue: str, reference: str, krw: int, moment: datetime):
    """Won moved from the venue to the city's bank account (treasury:krw)."""
    if krw <= 0:
        raise ValueError("a withdrawal moves a positive number of won")
    return entry_from_amounts(f"{WITHDRAWAL}:{venue}:{reference}", WITHDRAWAL,
                              {(TREASURY_KRW, "KRW"): krw, (EXCHANGE_KRW, "KRW"): -krw},
                              memo=f"₩{krw} withdrawn from {venue} ({reference})",
                              created_at=moment)


def record_withdrawal(gateway, venue: str, reference: str, krw: int) -> bool:
    """True when new; the same reference again changes nothing."""
    from settlement.models import JournalEntry

    entry = withdrawal_entry(venue, reference, krw, gateway.clock())
    with gateway.db.write() as session:
        lock(session, CONVERSION_LOCK)
        if session.execute(select(JournalEntry.id).where(
                JournalEntry.business_key == entry.business_key)).first() is not None:
            return False  # recorded already
        if holdings_krw(session, venue) < krw:
            raise ValueError(f"the ledger holds less than ₩{krw} at {venue}")
        return post(session, entry)


@dataclass(frozen=True)
class VenueExposure:
    venue: str
    holdings_krw: int
    cap_krw: int | None
    up: bool
    mismatch: bool
    reported_krw: int | None
    checked_at: datetime | None
    last_error: str | None

    @property
    def over_cap(self) -> bool:
        return self.cap_krw is not None and self.holdings_krw > self.cap_krw

    @property
    def attention(self) -> bool:
        return self.over_cap or self.mismatch or not self.up


def exposures(gateway, session) -> list[VenueExposure]:
    rows = {r.name: r for r in session.execute(select(ExchangeVenue)).scalars()}
    found = []
    for client in venues_for(gateway):
        row = rows.get(client.name)
        found.append(VenueExposure(
            client.name, holdings_krw(session, client.name), row.cap_krw if row else None,
            row.up if row else True, row.mismatch if row else False,
            row.reported_krw if row else None, row.checked_at if row else None,
            row.last_error if row else None))
    return sorted(found, key=lambda e: not e.attention)  # problems first


def _venue_row(session, name: str) -> ExchangeVenue:
    row = session.get(ExchangeVenue, name)
    if row is None:
        row = ExchangeVenue(name=name)
        session.add(row)
    return row


def set_cap(gateway, venue: str, cap_krw: int | None, actor) -> None:
    """The city admin's cap on a venue (None: no cap), audited."""
    from accounts.service import audit

    if venue not in {v.name for v in venues_for(gateway)}:
        raise ValueError(f"no venue named {venue!r}")
    if cap_krw is not None and cap_krw < 0:
        raise ValueError("a cap is a non-negative number of won")
    with gateway.db.write() as session:
        row = _venue_row(session, venue)
        before = row.cap_krw
        row.cap_krw, row.cap_set_by = cap_krw, actor.id
        row.cap_set_at = row.updated_at = gateway.clock()
        audit(session, actor, "city.exchange_cap.set", target=venue, before=before,
              after=cap_krw)


# -- reconciliation ------------------------------------------------------------------------

def check_balance(gateway, client) -> ExchangeVenue:
    """Ask the venue for its KRW and compare with the ledger; store the outcome."""
    from settlement.conversion import ExchangeError
    from settlement.models import Conversion

    try:
        reported = client.balances().get("KRW", Decimal(0))
        error = None
    except ExchangeError as err:
        reported, error = None, f"{type(err).__name__}: {err}"[:1000]
    with gateway.db.write() as session:
        row = _venue_row(session, client.name)
        now = gateway.clock()
        row.checked_at = row.updated_at = now
        row.up, row.last_error = error is None, error
        if reported is not None:
            ledger = holdings_krw(session, client.name)
            fills = session.execute(select(func.count()).select_from(Conversion).where(
                Conversion.venue == client.name, Conversion.status == "done")).scalar_one()
            whole = int(reported.to_integral_value(rounding=ROUND_FLOOR))
            row.reported_krw, row.ledger_krw = whole, ledger
            # Each fill is floored to whole won in our books: up to 1 won each more there.
            row.mismatch = not (0 <= reported - ledger < max(int(fills), 1))
            if row.mismatch:
                log.error("venue %s reports ₩%s, the ledger holds ₩%d", client.name, reported,
                          ledger)
        return row


# -- conversion with caps and failover ---------------------------------------------------------

def allowed_sats(session, venue: str, cap: int | None, available: int) -> int:
    """How many of the `available` sats a venue may take and stay under its cap, the sats
    valued at the pool's locked rates plus CAP_MARGIN (run under the conversion lock)."""
    from settlement.conversion import unconverted

    if cap is None:
        return available
    room = cap - holdings_krw(session, venue)
    pool_sats, pool_krw = unconverted(session)
    if room <= 0:
        return 0
    if pool_sats <= 0 or pool_krw <= 0:
        return available
    value_per_sat = Decimal(pool_krw) / pool_sats * (1 + CAP_MARGIN)
    return min(available, int((Decimal(room) / value_per_sat).to_integral_value(ROUND_FLOOR)))


def convert_all(gateway) -> dict:
    """One conversion pass over the venues (see the module's docstring)."""
    from settlement.config import settlement_config
    from settlement.conversion import convert, pending_sats, unconverted
    from settlement.models import Conversion

    venues = venues_for(gateway)
    summary: dict = {"venues": {}}
    if not venues:
        return {"converted": None, "reason": "no venue configured"}
    # Each venue's balance first: it tells whether the venue answers and agrees with us.
    states = {client.name: check_balance(gateway, client) for client in venues}
    unavailable = {name for name, state in states.items() if not state.up}
    for client in venues:  # finish what a venue started, there and nowhere else
        if client.name in unavailable:
            continue
        with gateway.db.read() as session:
            pending = session.execute(select(Conversion.id).where(
                Conversion.venue == client.name, Conversion.status == "created")).first()
        if pending is not None:
            result = convert(gateway, client)
            summary["venues"][client.name] = result
            if result.get("error"):
                unavailable.add(client.name)
    min_sats = settlement_config(gateway).conversion_min_sats
    for client in venues:
        state = states[client.name]
        if client.name in unavailable or state.mismatch:
            summary["venues"].setdefault(client.name, {
                "skipped": "balance disagrees" if state.mismatch else "down"})
            continue
        with gateway.db.read() as session:
            available = unconverted(session)[0] - pending_sats(session)
            allowed = allowed_sats(session, client.name, state.cap_krw, available)
        if available < max(min_sats, 1):
            break
        if allowed < max(min_sats, 1):
            summary["venues"].setdefault(client.name, {"skipped": "at its cap"})
            continue
        cap = state.cap_krw
        result = convert(gateway, client, limit=lambda session, sats, name=client.name, cap=cap:
                         allowed_sats(session, name, cap, sats))
        summary["venues"][client.name] = result
        if result.get("error"):
            unavailable.add(client.name)
    return summary
