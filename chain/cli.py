"""Chain commands: `flask --app app watcher once|status`, `flask --app app worker` and the
demo chain's `flask --app app demo pay|mine|reorg|double-spend`."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click
from flask import Flask


def demo_commands(app: Flask) -> click.Group:
    """The `demo` command group (demo data, the demo chain, the demo Lightning node)."""
    group = app.cli.commands.get("demo")
    if group is None:
        @app.cli.group("demo")
        def group():
            """Demo data, the offline demo chain and the demo Lightning node."""
    return group


def register(app: Flask) -> None:
    """Add the chain commands to `app`'s CLI (idempotent)."""
    if app.extensions.get("busanpay_chain_cli"):
        return
    app.extensions["busanpay_chain_cli"] = True
    gateway = lambda: app.extensions["busanpay"]  # noqa: E731

    def demo_chain():
        from chain.runtime import NotDemoChain, demo_chain_for

        try:
            return demo_chain_for(gateway())
        except NotDemoChain as err:
            raise click.ClickException(str(err))

    demo_group = demo_commands(app)

    @demo_group.command("pay")
    @click.argument("invoice_id")
    @click.option("--sats", type=click.IntRange(min=1), default=None,
                  help="amount in satoshis (default: what is still due)")
    def demo_pay(invoice_id, sats):
        """Pay an invoice from the demo wallet; prints the txid."""
        from chain import demo_ops
        from payments.service import InvoiceNotFound

        demo_chain()
        try:
            txid, _ = demo_ops.pay(gateway(), invoice_id, sats)
        except InvoiceNotFound:
            raise click.ClickException(f"no invoice {invoice_id}")
        except ValueError as err:
            raise click.ClickException(str(err))
        click.echo(txid)

    @demo_group.command("mine")
    @click.argument("count", type=click.IntRange(min=1), default=1)
    def demo_mine(count):
        """Mine COUNT blocks (default 1); prints their hashes."""
        for block_hash in demo_chain().mine(count):
            click.echo(block_hash)

    @demo_group.command("reorg")
    @click.argument("depth", type=click.IntRange(min=1))
    @click.option("--drop", is_flag=True, help="their transactions vanish instead of "
                                               "going back to the mempool")
    def demo_reorg(depth, drop):
        """Orphan the last DEPTH blocks; prints the orphaned hashes."""
        try:
            hashes = demo_chain().reorg(depth, drop=drop)
        except ValueError as err:
            raise click.ClickException(str(err))
        for block_hash in hashes:
            click.echo(block_hash)

    @demo_group.command("double-spend")
    @click.argument("txid")
    def demo_double_spend(txid):
        """Replace a mempool payment by one paying elsewhere; prints the new txid."""
        try:
            click.echo(demo_chain().double_spend(txid))
        except ValueError as err:
            raise click.ClickException(str(err))

    @app.cli.group("watcher")
    def watcher_group():
        """The chain watcher."""

    @watcher_group.command("once")
    @click.option("--wait", type=float, default=30.0,
                  help="seconds to wait for another running pass to finish")
    def watcher_once(wait):
        """One full watcher pass; prints its JSON summary. Exit 0 when the pass covered
        chain and mempool, 2 when the node cannot be believed yet (initial block download,
        mempool loading, tip below the processed height: nothing was judged, try again),
        1 when it failed or was skipped (backend or database error, another watcher)."""
        from chain.runtime import watcher_for

        summary = watcher_for(gateway()).run_once(force=True, wait=wait)
        click.echo(json.dumps(summary, sort_keys=True))
        if summary.get("waiting"):
            sys.exit(2)
        if not summary.get("ok"):
            sys.exit(1)

    @watcher_group.command("status")
    def watcher_status():
        """The watcher's health (JSON)."""
        from chain.watcher import health

        click.echo(json.dumps(health(gateway()), indent=2, sort_keys=True))

    @app.cli.command("worker")
    def worker():
        """Run the background jobs (watcher, rates, ...) until SIGTERM or SIGINT."""
        from background import Scheduler, jobs_for
        from chain.jobs import jobs as chain_jobs

        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        gw = gateway()
        jobs = list(jobs_for(gw))
        names = {job.name for job in jobs}
        jobs += [job for job in chain_jobs(gw) if job.name not in names]
        stop = threading.Event()

        def on_signal(signum, _frame):
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        scheduler = Scheduler(jobs)
        scheduler.start()
        click.echo(f"worker running: {', '.join(job.name for job in jobs)}", err=True)
        while not stop.wait(0.5):
            pass
        scheduler.stop()
        backend = gw.extras.get("chain_backend")
        if backend is not None:
            backend.close()
        click.echo("worker stopped", err=True)
