"""Merchant webhooks (Greenfield-compatible): CRUD API, outbox fan-out, signed delivery with
retries, delivery log and redelivery. `init_webhooks(app)` wires it all into an app."""
from __future__ import annotations


def init_webhooks(app) -> None:
    """Register the API blueprint (CSRF-exempt: token-authenticated), the delivery job and the
    `flask webhooks …` commands. Calling it twice does nothing the second time."""
    if "webhooks" in app.blueprints:
        return
    from webhooks.api import bp, by_id
    from webhooks.cli import register_webhook_cli
    from webhooks.worker import webhook_jobs

    app.register_blueprint(bp)
    app.register_blueprint(by_id)
    csrf = app.extensions.get("busanpay_csrf")
    if csrf is not None:
        csrf.exempt(bp)
        csrf.exempt(by_id)
    gateway = app.extensions["busanpay"]
    gateway.extras.setdefault("jobs", []).extend(webhook_jobs(gateway))
    register_webhook_cli(app)
