"""The composition root: builds the services from settings, with or without Flask.

The web app, the CLI and the worker processes all build one `Gateway`; tests build
one with fakes (a fixed clock, a local rate server, a fake chain).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from database import Database, utc_now
from lightning.backend import LightningBackend
from settings import Settings


def _prepare_bitcoinlib(instance_path: str) -> None:
    # bitcoinlib writes a config, a log and a cache database on import: keep them in the
    # instance folder, not the user's home.
    target = Path(instance_path) / "bitcoinlib"
    target.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BCL_DATA_DIR", str(target))


@dataclass
class Gateway:
    settings: Settings
    db: Database
    clock: Callable[[], datetime]
    rates: object  # RateFeed (or a test double with current()/health())
    invoices: object  # InvoiceService
    extras: dict = field(default_factory=dict)
    venues: list | None = None  # conversion venues, primary first (settlement.venues.venues_for)
    # The Lightning node (lightning.backend.LightningBackend), None when on-chain only.
    lightning: LightningBackend | None = None

    def close(self) -> None:
        pool = getattr(self.invoices, "address_pool", None)
        if pool is not None:
            pool.drain()
        self.db.dispose()


def build_gateway(settings: Settings, *, clock: Callable[[], datetime] = utc_now,
                  rates=None, db: Database | None = None) -> Gateway:
    Path(settings.instance_path).mkdir(parents=True, exist_ok=True)
    _prepare_bitcoinlib(settings.instance_path)
    from payments.addresses import DEMO_TREASURY_KEY
    from payments.rate_feed import RateFeed
    from payments.rates import RateBoard, parse_sources
    from payments.service import InvoiceService

    if not settings.treasury_xpub:
        settings = settings.with_overrides({"treasury_xpub": DEMO_TREASURY_KEY})
    settings.check()
    db = db or Database(settings.database_url)
    if rates is None:
        board = RateBoard(parse_sources(settings.rate_sources, settings.network, clock=clock),
                          clock=clock, max_age=timedelta(seconds=settings.rate_max_age_seconds),
                          tolerance=settings.rate_tolerance, spread=settings.rate_spread)
        rates = RateFeed(board, db)
    from dashboard.queries import exposure_cap

    from lightning.config import build_lightning
    from lightning.invoices import LightningOffers

    lightning = build_lightning(settings, db, clock)
    invoices = InvoiceService(db, settings=settings, rates=rates, clock=clock,
                              zero_conf_cap=exposure_cap,
                              lightning=LightningOffers(db, lightning, clock) if lightning else None)
    return Gateway(settings=settings, db=db, clock=clock, rates=rates, invoices=invoices,
                   lightning=lightning)
