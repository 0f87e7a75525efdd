"""Settlement and ledger commands: `flask --app app settlement …`, `… ledger …`, `… refund …`."""
from __future__ import annotations

import json
import sys
from datetime import date

import click
from flask import Flask


def _date(value: str | None) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


def register(app: Flask) -> None:
    def gateway():
        return app.extensions["busanpay"]

    @app.cli.group("settlement")
    def settlement_group():
        """Daily payouts to merchants, payout rails, conversion."""

    @settlement_group.command("run")
    @click.option("--date", "day", default=None, help="the Asia/Seoul business day (default: yesterday)")
    def settlement_run(day):
        """Pay every merchant what was credited up to the end of DATE (Asia/Seoul)."""
        from settlement.daily import run_settlement

        click.echo(json.dumps(run_settlement(gateway(), _date(day)), indent=2))

    @settlement_group.command("post")
    def settlement_post():
        """Post pending outbox events and sweep recent invoices into the ledger."""
        from settlement.posting_job import run_once, sweep

        result = run_once(gateway())
        result["swept"] = sweep(gateway())
        click.echo(json.dumps(result))

    @settlement_group.command("convert")
    def settlement_convert():
        """Sell the unconverted BTC at the configured exchange."""
        from settlement.conversion import convert

        click.echo(json.dumps(convert(gateway())))

    @settlement_group.command("confirm")
    @click.argument("payout_ids", nargs=-1, required=True)
    @click.option("--failed", is_flag=True, help="the bank refused it: return the money")
    @click.option("--reason", default="", help="why it failed")
    def settlement_confirm(payout_ids, failed, reason):
        """A person confirms the bank executed (or refused) payouts from a transfer file."""
        from settlement.payouts import mark_paid, mark_returned, payout_json

        gw = gateway()
        out = []
        with gw.db.write() as session:
            for payout_id in payout_ids:
                if failed:
                    payout = mark_returned(session, payout_id, gw.clock(),
                                           reason=reason or "refused by the bank")
                else:
                    payout = mark_paid(session, payout_id, gw.clock())
                if payout is None:
                    raise click.ClickException(f"unknown payout {payout_id}")
                out.append(payout_json(payout))
        click.echo(json.dumps(out, indent=2))

    @settlement_group.command("acknowledge")
    @click.argument("payout_ids", nargs=-1, required=True)
    def settlement_acknowledge(payout_ids):
        """Clear the attention flag (lets a store blocked by repeated failures be paid again)."""
        from settlement.models import Payout

        gw = gateway()
        with gw.db.write() as session:
            for payout_id in payout_ids:
                payout = session.get(Payout, payout_id)
                if payout is None:
                    raise click.ClickException(f"unknown payout {payout_id}")
                payout.needs_attention = False
                session.add(payout)
        click.echo(json.dumps({"acknowledged": list(payout_ids)}))

    # `settlement account …` (a payout destination, with four eyes) is onboarding/cli.py.

    @settlement_group.command("fee")
    @click.option("--category", required=True)
    @click.option("--bps", type=int, required=True)
    def settlement_fee(category, bps):
        """Set the city fee for a merchant category (basis points; new invoices only)."""
        from merchants.districts import CATEGORIES
        from settlement.posting_job import set_fee_rule

        if category not in CATEGORIES:
            raise click.BadParameter(f"use one of {', '.join(CATEGORIES)}")
        with gateway().db.write() as session:
            set_fee_rule(session, category, bps, gateway().clock())
        click.echo(json.dumps({"category": category, "feeBps": bps}))

    @app.cli.group("ledger")
    def ledger_group():
        """The double-entry ledger: reconciliation and statements."""

    @ledger_group.command("check")
    @click.option("--strict", is_flag=True, help="pending (not yet posted) invoices fail too")
    def ledger_check(strict):
        """Verify the ledger; print a JSON trial balance; exit 1 when anything disagrees."""
        from settlement.reconcile import check_ledger

        report = check_ledger(gateway())
        ok = report["ok"] and not (strict and report["pendingCount"])
        report["ok"] = ok
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        sys.exit(0 if ok else 1)

    @ledger_group.command("statement")
    @click.option("--store", "store_id", required=True)
    @click.option("--date", "day", required=True, help="Asia/Seoul day, YYYY-MM-DD")
    def ledger_statement(store_id, day):
        """The store's payable for one day as CSV."""
        from settlement.reconcile import statement_csv

        click.echo(statement_csv(gateway(), store_id, _date(day)), nl=False)

    @app.cli.group("refund")
    def refund_group():
        """BTC owed back to payers: claims, approval, the sending txid."""

    def _refund(fn):
        from settlement.refunds import RefundError

        try:
            with gateway().db.write() as session:
                return fn(session)
        except RefundError as err:
            raise click.ClickException(str(err))

    @refund_group.command("open")
    @click.option("--invoice", "invoice_id", required=True)
    def refund_open(invoice_id):
        """Open a claim; prints the payer's link token (shown once)."""
        from settlement.refunds import open_claim

        claim, token = _refund(lambda s: open_claim(s, invoice_id, gateway().clock()))
        click.echo(json.dumps({"claimId": claim.id, "token": token, "sats": str(claim.amount_sats)}))

    @refund_group.command("address")
    @click.option("--token", required=True)
    @click.option("--address", required=True)
    def refund_address(token, address):
        """Record the payer's refund address (as the payer's link would)."""
        from settlement.refunds import submit_address

        gw = gateway()
        claim = _refund(lambda s: submit_address(s, token, address, gw.settings.network, gw.clock()))
        click.echo(json.dumps({"claimId": claim.id, "status": claim.status}))

    @refund_group.command("approve")
    @click.argument("claim_id")
    @click.option("--by", required=True, help="who approves")
    def refund_approve(claim_id, by):
        from settlement.refunds import approve

        claim = _refund(lambda s: approve(s, claim_id, by, gateway().clock()))
        click.echo(json.dumps({"claimId": claim.id, "status": claim.status,
                               "address": claim.address, "sats": str(claim.amount_sats)}))

    @refund_group.command("sent")
    @click.argument("claim_id")
    @click.option("--txid", required=True)
    @click.option("--fee-sats", type=int, default=0)
    def refund_sent(claim_id, txid, fee_sats):
        """Record the txid the operator sent the refund in (posts the ledger entry)."""
        from settlement.refunds import record_sent

        claim = _refund(lambda s: record_sent(s, claim_id, txid, gateway().clock(), fee_sats))
        click.echo(json.dumps({"claimId": claim.id, "status": claim.status, "txid": claim.txid}))

    @refund_group.command("credit")
    @click.option("--invoice", "invoice_id", required=True)
    @click.option("--sats", type=int, required=True)
    @click.option("--by", required=True)
    def refund_credit(invoice_id, sats, by):
        """Credit sats owed to the payer to the merchant instead (a person's decision)."""
        from settlement.refunds import credit_to_merchant

        gw = gateway()
        _refund(lambda s: credit_to_merchant(s, invoice_id, sats, by, gw.clock(), gw.settings.fee_bps))
        click.echo(json.dumps({"invoiceId": invoice_id, "credited": str(sats)}))
