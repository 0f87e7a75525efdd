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
        """Verify the ledger and the money boundary (every merchant credit backed by sats
        received, a city 0-conf loss or an approved off-chain credit); print a JSON trial
        balance; exit 1 naming the invoice or store when anything disagrees."""
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

    @app.cli.group("treasury")
    def treasury_group():
        """The treasury's own decisions (two people): off-chain credits to merchants."""

    def _actor(session, email: str):
        from accounts.models import User
        from accounts.service import Actor
        from sqlalchemy import select

        user = session.execute(select(User).where(
            User.email == (email or "").strip().lower())).scalar_one_or_none()
        if user is None or user.disabled:
            raise click.ClickException(f"no active account {email}")
        return Actor(user.id, user.role, "cli")

    def _credit(fn):
        from settlement.offchain import CreditRefused

        try:
            with gateway().db.write() as session:
                credit = fn(session)
                return {"creditId": credit.id, "status": credit.status, "storeId": credit.store_id,
                        "invoiceId": credit.invoice_id, "amount": str(credit.amount_krw),
                        "currency": "KRW"}
        except CreditRefused as err:
            raise click.ClickException(str(err))

    @treasury_group.command("propose-credit")
    @click.option("--store", "store_id", required=True)
    @click.option("--invoice", "invoice_id", required=True)
    @click.option("--krw", type=int, required=True, help="whole won the city received off-chain")
    @click.option("--reason", required=True)
    @click.option("--by", "email", required=True, help="the proposer's email (treasury or city admin)")
    def propose_credit(store_id, invoice_id, krw, reason, email):
        """Propose crediting won received off-chain to a merchant for one invoice."""
        from settlement.offchain import propose

        click.echo(json.dumps(_credit(lambda s: propose(
            s, _actor(s, email), store_id=store_id, invoice_id=invoice_id, amount_krw=krw,
            reason=reason, moment=gateway().clock()))))

    @treasury_group.command("approve-credit")
    @click.argument("credit_id")
    @click.option("--by", "email", required=True, help="a second person, not the proposer")
    @click.option("--reject", is_flag=True, help="refuse the proposal instead")
    def approve_credit(credit_id, email, reject):
        """Approve (and post) or reject a proposed off-chain credit."""
        from settlement.offchain import decide

        click.echo(json.dumps(_credit(lambda s: decide(
            s, _actor(s, email), credit_id, approve=not reject, moment=gateway().clock()))))
