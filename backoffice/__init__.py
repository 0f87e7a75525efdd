"""The merchant owner's back office at ``/merchant``: settings, staff, API keys, webhooks,
payouts and statements. Register with :func:`init_backoffice` (safe to call twice)."""
from __future__ import annotations


def init_backoffice(app) -> None:
    from backoffice.web import bp

    if bp.name not in app.blueprints:
        app.register_blueprint(bp)
