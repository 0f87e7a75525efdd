"""Wires settlement into the app: one line in `app.create_app` (before `return app`):

    from settlement.install import install; install(app)

It registers the `settlement`, `ledger` and `refund` CLI groups, the Stripe webhook
blueprint (`POST /stripe/webhook`) and the background jobs (posting, sweep, conversion,
daily settlement) in `gateway.extras["jobs"]`. Calling it twice does nothing more.
"""
from __future__ import annotations

import logging

from background import Job

log = logging.getLogger(__name__)


def jobs(gateway) -> list[Job]:
    """The settlement's periodic work; each job is safe in several processes at once."""
    from settlement.config import settlement_config
    from settlement.venues import convert_all, venues_for
    from settlement.daily import auto_settle
    from settlement.posting_job import run_once, sweep

    cfg = settlement_config(gateway)
    found = [Job("ledger-posting", 5.0, lambda: run_once(gateway)),
             Job("ledger-sweep", 120.0, lambda: sweep(gateway))]
    if venues_for(gateway):  # caps, failover and balance checks over every venue
        found.append(Job("conversion", 60.0, lambda: convert_all(gateway)))
    if cfg.auto_settlement:
        found.append(Job("daily-settlement", 300.0, lambda: auto_settle(gateway)))
    return found


def install(app) -> None:
    if app.extensions.get("busanpay_settlement"):
        return
    from settlement.cli import register
    from settlement.stripe_webhooks import bp

    register(app)
    from settlement.venues_cli import register as register_venues

    register_venues(app)  # flask exchange status|convert|cap|withdraw
    app.register_blueprint(bp)
    csrf = app.extensions.get("csrf")
    if csrf is not None:  # Stripe signs its requests; it cannot send a CSRF token
        csrf.exempt(bp)
    gateway = app.extensions["busanpay"]
    gateway.extras.setdefault("jobs", []).extend(jobs(gateway))
    app.extensions["busanpay_settlement"] = True


def create_app(config: dict | None = None):
    """`app.create_app` with settlement installed (for `flask --app settlement.install`
    until app.py calls `install` itself)."""
    from app import create_app as base

    app = base(config)
    install(app)
    return app
