"""The cashier's point of sale at ``/pos``: keypad, charge, live QR, receipts, today's sales.

Register with :func:`init_pos` (safe to call twice).
"""
from __future__ import annotations


def init_pos(app) -> None:
    from pos.web import bp

    if bp.name not in app.blueprints:
        app.register_blueprint(bp)
