"""Conversion venues as the treasury's counterparties: what the city holds at each.

`exposures(gateway, session)` lists each configured venue with the won the ledger says
the treasury holds there (`exchange:krw`) and the city's cap on it (None: no cap set).
"""
from __future__ import annotations

from dataclasses import dataclass

from settlement.ledger import balance
from settlement.rules import EXCHANGE_KRW


@dataclass(frozen=True)
class VenueExposure:
    venue: str
    holdings_krw: int
    cap_krw: int | None


def exposures(gateway, session) -> list[VenueExposure]:
    from settlement.conversion import exchange_for

    exchange = exchange_for(gateway)
    if exchange is None:
        return []
    return [VenueExposure(exchange.name, balance(session, EXCHANGE_KRW), None)]
