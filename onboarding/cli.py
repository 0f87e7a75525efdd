"""`flask settlement account …`: payout destinations from the command line go through the
same four-eyes approval as the web (operators name themselves with --by EMAIL)."""
from __future__ import annotations

import json

import click
from sqlalchemy import select


def _actor(session, email: str):
    from accounts.models import User
    from accounts.service import Actor

    user = session.execute(select(User).where(User.email == (email or "").strip().lower())
                           ).scalar_one_or_none()
    if user is None or user.disabled:
        raise click.ClickException(f"no active account with email {email!r}")
    return Actor(user.id, user.role, "cli")


def register(app) -> None:
    group = app.cli.commands.get("settlement")
    if group is None or "account" in group.commands:
        return
    gateway = app.extensions["busanpay"]

    def _run(fn):
        from onboarding.payout_accounts import ChangeRefused, DecisionRefused

        try:
            with gateway.db.write() as session:
                return fn(session)
        except ChangeRefused as err:
            raise click.ClickException(f"refused: {err}")
        except DecisionRefused as err:
            raise click.ClickException(f"refused: {err.code}")

    @group.command("account")
    @click.option("--store", "store_id", required=True)
    @click.option("--by", "by", required=True, help="email of the person entering it")
    @click.option("--stripe-account", default="", help="acct_…")
    @click.option("--bank-name", default="")
    @click.option("--bank-account", default="")
    @click.option("--holder", default="")
    @click.option("--explanation", default="", help="why the holder differs from the business")
    def settlement_account(store_id, by, stripe_account, bank_name, bank_account, holder,
                           explanation):
        """Enter where a store's payouts go: pending until another person (treasury) approves."""
        from onboarding.payout_accounts import request_change

        change = _run(lambda s: request_change(
            s, _actor(s, by), store_id, bank_name=bank_name, bank_account=bank_account,
            account_holder=holder, stripe_account_id=stripe_account, explanation=explanation,
            now=gateway.clock()))
        click.echo(json.dumps({"changeId": change.id, "storeId": store_id, "status": change.status}))

    @group.command("account-approve")
    @click.argument("change_id")
    @click.option("--by", "by", required=True, help="email of the approving treasury operator")
    def settlement_account_approve(change_id, by):
        """Approve a pending payout-account change (not by the person who entered it)."""
        from onboarding.payout_accounts import approve_change

        account = _run(lambda s: approve_change(s, _actor(s, by), change_id, gateway.clock()))
        click.echo(json.dumps({"changeId": change_id, "storeId": account.store_id,
                               "status": "approved"}))

    @group.command("account-reject")
    @click.argument("change_id")
    @click.option("--by", "by", required=True)
    @click.option("--reason", required=True)
    def settlement_account_reject(change_id, by, reason):
        """Reject a pending payout-account change with a reason the owner sees."""
        from onboarding.payout_accounts import reject_change

        _run(lambda s: reject_change(s, _actor(s, by), change_id, gateway.clock(), reason))
        click.echo(json.dumps({"changeId": change_id, "status": "rejected"}))
