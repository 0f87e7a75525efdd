"""Conversion venues as the treasury's counterparties: several venues, a cap on each,
failover, and the venue's own balance checked against our books.

Configuration, primary first (kind `upbit`: Upbit's private API, or a partner exchange
that speaks it; kind `bithumb`: Bithumb's 2.x private API, settlement.conversion.BithumbClient,
which differs from Upbit's in a JWT claim and in how a sale carries our identifier):

    BUSANPAY_EXCHANGE_VENUES=partner=upbit:https://api.partner.example,bithumb=bithumb:https://api.bithumb.com
    BUSANPAY_VENUE_PARTNER_ACCESS_KEY / BUSANPAY_VENUE_PARTNER_SECRET_KEY   (per venue)

Without it, the single `BUSANPAY_EXCHANGE_URL` venue is the list.

- **Holdings** (from the ledger), in both currencies: the won on `exchange:krw` posted by
  the venue's conversions (`conversion:<id>`) less what was withdrawn from it
  (`venue_withdrawal:<venue>:<ref>`, `flask exchange withdraw`); and the BTC deposited
  there for a sale and not sold yet (`venue_btc:<venue>`, settlement.conversion). The
  exposure in won is the won plus that BTC valued at the current market rate (the rate
  feed's primary source; the pool's locked rate when no fresh rate is at hand), floored.
- **Cap** (won, per venue, set by the city admin, audited). A sale at a venue is sized so
  that its sats (valued at the higher of the pool's locked rate and the current rate,
  plus a margin for the market moving) fit in the room the venue's exposure, unsold BTC
  included, leaves under its cap; a venue at its cap gets nothing.
- **Failover**: `convert_all` retries a venue's unfinished sale there (its identifier
  makes that safe), then offers the rest of the pool to each venue in order, skipping one
  that is down (its balance call fails), at its cap, or whose balance disagrees with the
  ledger. Merchants never wait on this: they are paid from the city's ledger.
- **Reconciliation**: the venue's `GET /v1/accounts` KRW and BTC (balance + locked) against
  the ledger's holdings. Each of our fills is floored to whole won, so the venue may hold
  up to one won per conversion more than the ledger. BTC: the venue may hold less than the
  ledger's deposits for unfinished sales (a deposit may still be on its way), never more.
  Any other difference is a mismatch, kept in `exchange_venue` with the time, for the
  dashboard (shown first, and in the exceptions queue), the metrics and the alert rules.
  A venue that does not answer is down from `down_since` until it answers again.
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
from settlement.rules import EXCHANGE_KRW, SATS_PER_BTC, TREASURY_KRW, venue_btc

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
    reported_sats: Optional[int] = Field(default=None, sa_column=Column(
        "reported_sats", BigInteger(), nullable=True))
    ledger_sats: Optional[int] = Field(default=None, sa_column=Column(
        "ledger_sats", BigInteger(), nullable=True))
    mismatch: bool = Field(default=False, sa_column=Column("mismatch", Boolean(),
                                                           nullable=False, default=False))
    down_since: Optional[datetime] = Field(default=None, sa_column=Column(
        "down_since", UTCDateTime(), nullable=True))
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
    kind: str  # upbit | bithumb
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
    from settlement.conversion import BithumbClient, UpbitClient

    env = os.environ if env is None else env
    clients = []
    for venue in parse_venues(env.get("BUSANPAY_EXCHANGE_VENUES") or ""):
        prefix = "BUSANPAY_VENUE_" + venue.name.upper().replace("-", "_")
        kind = BithumbClient if venue.kind == "bithumb" else UpbitClient
        clients.append(kind(venue.url, env.get(prefix + "_ACCESS_KEY") or "",
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


def holdings_sats(session, venue: str) -> int:
    """BTC deposited at the venue for sales not filled yet (its ledger account)."""
    from settlement.ledger import balance

    return balance(session, venue_btc(venue))


def valuation_rate(gateway, session) -> Decimal | None:
    """KRW per BTC to value BTC held at venues: the current market rate, else the pool's
    locked rate, else None (nothing to value it by)."""
    from payments.rates import RateUnavailable
    from settlement.conversion import unconverted

    try:
        return Decimal(gateway.rates.current().raw_krw_per_btc)
    except RateUnavailable as err:  # stale or disagreeing sources: fall back, say so
        log.warning("no current rate to value BTC at venues (%s); using the locked pool "
                    "rate", err)
    pool_sats, pool_krw = unconverted(session)
    if pool_sats > 0 and pool_krw > 0:
        return Decimal(pool_krw) * SATS_PER_BTC / pool_sats
    return None


def btc_value_krw(sats: int, rate: Decimal | None) -> int:
    """Whole won that `sats` are worth at `rate` (floored; 0 without a rate)."""
    if sats <= 0 or rate is None:
        return 0
    return int((Decimal(sats) * rate / SATS_PER_BTC).to_integral_value(rounding=ROUND_FLOOR))


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
    won_krw: int  # won held at the venue (ledger)
    btc_sats: int  # BTC deposited there, not sold yet (ledger)
    btc_value_krw: int  # those sats at the current rate
    cap_krw: int | None
    up: bool
    mismatch: bool
    reported_krw: int | None
    reported_sats: int | None
    checked_at: datetime | None
    last_error: str | None
    down_since: datetime | None = None

    @property
    def holdings_krw(self) -> int:
        """The exposure in won: won plus unsold BTC at the current rate."""
        return self.won_krw + self.btc_value_krw

    @property
    def over_cap(self) -> bool:
        return self.cap_krw is not None and self.holdings_krw > self.cap_krw

    @property
    def attention(self) -> bool:
        return self.over_cap or self.mismatch or not self.up


def exposures(gateway, session) -> list[VenueExposure]:
    rows = {r.name: r for r in session.execute(select(ExchangeVenue)).scalars()}
    rate = None
    found = []
    for client in venues_for(gateway):
        row = rows.get(client.name)
        sats = holdings_sats(session, client.name)
        if sats and rate is None:
            rate = valuation_rate(gateway, session)
        found.append(VenueExposure(
            client.name, holdings_krw(session, client.name), sats, btc_value_krw(sats, rate),
            row.cap_krw if row else None, row.up if row else True,
            row.mismatch if row else False, row.reported_krw if row else None,
            row.reported_sats if row else None, row.checked_at if row else None,
            row.last_error if row else None, row.down_since if row else None))
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
    """Ask the venue for its KRW and BTC and compare with the ledger; store the outcome."""
    from settlement.conversion import ExchangeError
    from settlement.models import Conversion

    try:
        reported = client.balances()
        error = None
    except ExchangeError as err:
        reported, error = None, f"{type(err).__name__}: {err}"[:1000]
    with gateway.db.write() as session:
        row = _venue_row(session, client.name)
        now = gateway.clock()
        row.checked_at = row.updated_at = now
        if error is not None and row.down_since is None:
            row.down_since = now
        elif error is None:
            row.down_since = None
        row.up, row.last_error = error is None, error
        if reported is not None:
            krw = reported.get("KRW", Decimal(0))
            sats = int((reported.get("BTC", Decimal(0)) * SATS_PER_BTC)
                       .to_integral_value(rounding=ROUND_FLOOR))
            ledger = holdings_krw(session, client.name)
            ledger_sats = holdings_sats(session, client.name)
            fills = session.execute(select(func.count()).select_from(Conversion).where(
                Conversion.venue == client.name, Conversion.status == "done")).scalar_one()
            whole = int(krw.to_integral_value(rounding=ROUND_FLOOR))
            row.reported_krw, row.ledger_krw = whole, ledger
            row.reported_sats, row.ledger_sats = sats, ledger_sats
            # Each fill is floored to whole won in our books: up to 1 won each more there.
            # A deposit for an unfinished sale may not have arrived: less BTC there is fine.
            row.mismatch = not (0 <= krw - ledger < max(int(fills), 1)) \
                or not (0 <= sats <= ledger_sats)
            if row.mismatch:
                log.error("venue %s reports ₩%s and %d sats, the ledger holds ₩%d and %d sats",
                          client.name, krw, sats, ledger, ledger_sats)
        return row


# -- conversion with caps and failover ---------------------------------------------------------

def allowed_sats(session, venue: str, cap: int | None, available: int,
                 rate: Decimal | None = None) -> int:
    """How many of the `available` sats a venue may take and stay under its cap: the room
    is the cap less the venue's won and unsold BTC (at `rate`), each new sat valued at the
    higher of the pool's locked rate and `rate`, plus CAP_MARGIN (run under the conversion
    lock)."""
    from settlement.conversion import unconverted

    if cap is None:
        return available
    room = cap - holdings_krw(session, venue) - btc_value_krw(holdings_sats(session, venue), rate)
    pool_sats, pool_krw = unconverted(session)
    if room <= 0:
        return 0
    per_sat = [Decimal(pool_krw) / pool_sats] if pool_sats > 0 and pool_krw > 0 else []
    if rate is not None:
        per_sat.append(rate / SATS_PER_BTC)
    if not per_sat:
        return available
    value_per_sat = max(per_sat) * (1 + CAP_MARGIN)
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
    rate = None
    if any(state.cap_krw is not None for state in states.values()):
        with gateway.db.read() as session:
            rate = valuation_rate(gateway, session)
    for client in venues:
        state = states[client.name]
        if client.name in unavailable or state.mismatch:
            summary["venues"].setdefault(client.name, {
                "skipped": "balance disagrees" if state.mismatch else "down"})
            continue
        with gateway.db.read() as session:
            available = unconverted(session)[0] - pending_sats(session)
            allowed = allowed_sats(session, client.name, state.cap_krw, available, rate)
        if available < max(min_sats, 1):
            break
        if allowed < max(min_sats, 1):
            summary["venues"].setdefault(client.name, {"skipped": "at its cap"})
            continue
        cap = state.cap_krw
        result = convert(gateway, client, limit=lambda session, sats, name=client.name, cap=cap:
                         allowed_sats(session, name, cap, sats, rate))
        summary["venues"][client.name] = result
        if result.get("error"):
            unavailable.add(client.name)
    return summary
