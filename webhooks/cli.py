"""`flask --app app webhooks …`: send due deliveries now, or run the Huey consumer."""
from __future__ import annotations

import json

import click
from flask import Flask


def register_webhook_cli(app: Flask) -> None:
    if "webhooks" in app.cli.commands:
        return

    @app.cli.group("webhooks")
    def webhooks_group():
        """Merchant webhook deliveries."""

    @webhooks_group.command("send")
    def send_now():
        """Fan out new events and send every due delivery once, in this process."""
        from webhooks.worker import service_for

        sent = service_for(app.extensions["busanpay"]).run_once()
        click.echo(json.dumps({"sent": sent}))

    @webhooks_group.command("consumer")
    @click.option("--workers", default=16, show_default=True, help="sending threads")
    def consumer(workers):
        """Run the Huey consumer that sends deliveries (needs BUSANPAY_TASK_QUEUE=redis://…)."""
        from webhooks.worker import HueyDispatcher, dispatcher_for

        dispatcher = dispatcher_for(app.extensions["busanpay"])
        if not isinstance(dispatcher, HueyDispatcher):
            raise click.ClickException("set BUSANPAY_TASK_QUEUE=redis://… to use the consumer")
        dispatcher.consumer(workers).run()
