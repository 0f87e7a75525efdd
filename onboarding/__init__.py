"""Merchant onboarding: applications at /apply, the city's review, owner invitations,
four-eyes payout-account changes and the merchant lifecycle (suspend, close).
Register with :func:`init_onboarding` (safe to call twice)."""
from __future__ import annotations


def init_onboarding(app) -> None:
    from onboarding.web import init_web

    init_web(app)
