"""Login throttling that locks the attacker, not the account.

Every login attempt is counted BEFORE its password or PIN is checked, in one short write
transaction: for each key (the client's address, the store or account it names, or the
known device it comes from) one conditional ``UPDATE … SET failures = failures + 1 …
WHERE not blocked RETURNING failures``. The database serialises those updates (a row lock
on PostgreSQL, the write lock on SQLite), so however many guesses arrive in parallel,
exactly ``free`` of them are checked before the key blocks; the others are refused without
a hash check. After the free attempts each further one waits a growing delay. A right
answer resets the account's key and gives back the attempt it took from the address.

The slow hash check itself runs outside any transaction (on SQLite a write transaction is
the global write lock: hashing inside it stalled every invoice).
No Flask here.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, literal, update

from accounts.models import LoginThrottle
from database import Database, UTCDateTime, insert_ignore

#: Waits after the free attempts, growing; the last one repeats.
DELAYS = (60, 120, 300, 600, 900, 1800, 3600)
#: A key with no attempt for this long starts again from zero.
FORGET_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Limit:
    key: str
    free: int


class Throttled(Exception):
    """Too many attempts for one of the keys; ``retry_after`` seconds until the next."""

    def __init__(self, key: str, retry_after: int):
        super().__init__(f"throttled: {key}")
        self.key, self.retry_after = key, max(1, retry_after)


@dataclass
class Claim:
    """The attempts counted for one login (to settle once the answer is known)."""
    limits: list[Limit]
    started_blocks: list[str] = field(default_factory=list)  # keys this attempt blocked


def client_key(address: str) -> str:
    """An IPv6 client is its /64 (one subscriber gets a whole /64); IPv4 the address."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "ip:" + (address or "?")[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return "ip:" + str(ip.ipv4_mapped)
        return "ip:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "ip:" + str(ip)


def _blocked_until(count, free: int, now: datetime):
    """SQL: when the attempt that makes ``count`` blocks the key (NULL: it does not)."""
    def at(seconds):
        return literal(now + timedelta(seconds=seconds), UTCDateTime())

    whens = [(count == free + i, at(delay)) for i, delay in enumerate(DELAYS)]
    whens.append((count > free + len(DELAYS) - 1, at(DELAYS[-1])))
    return case(*whens, else_=literal(None, UTCDateTime()))


def claim(db: Database, limits: list[Limit], now: datetime) -> Claim:
    """Count one attempt on every key, or refuse it (``Throttled``) and count nothing."""
    table = LoginThrottle.__table__
    done = Claim(limits)
    with db.write() as session:
        for limit in limits:
            insert_ignore(session, table, {"key": limit.key, "failures": 0,
                                           "blocked_until": None, "updated_at": now})
            stale = table.c.updated_at < now - FORGET_AFTER
            count = case((stale, 1), else_=table.c.failures + 1)
            row = session.execute(
                update(table)
                .where(table.c.key == limit.key,
                       (table.c.blocked_until.is_(None)) | (table.c.blocked_until <= now))
                .values(failures=count, blocked_until=_blocked_until(count, limit.free, now),
                        updated_at=now)
                .returning(table.c.failures)).first()
            if row is None:
                until = session.execute(table.select().where(table.c.key == limit.key)).one()
                # Raising rolls the whole transaction back: the keys before count nothing.
                raise Throttled(limit.key, math.ceil((until.blocked_until - now).total_seconds()))
            if row.failures == limit.free:
                done.started_blocks.append(limit.key)
    return done


def succeeded(session, done: Claim, *, reset: list[str]) -> None:
    """The answer was right: the ``reset`` keys (the account, the known device) start
    again; the others (the address) get back the attempt this login took."""
    table = LoginThrottle.__table__
    for limit in done.limits:
        if limit.key in reset:
            values = {"failures": 0, "blocked_until": None}
        else:
            values = {"failures": case((table.c.failures > 0, table.c.failures - 1), else_=0)}
        session.execute(update(table).where(table.c.key == limit.key).values(**values))
