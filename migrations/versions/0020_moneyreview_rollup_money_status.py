"""moneyreview: the city's rollup follows the money (the chain's status, never a merchant's
mark): the invoice triggers are recreated over COALESCE(chain_status, status) and the rollup
is rebuilt, so an unpaid invoice marked Settled is no settled volume.

Revision ID: 0020_moneyreview_rollup_money
Revises: 0006_dashboard, 0010_money_chain_status
"""
from alembic import op
from sqlalchemy.orm import Session

revision = "0020_moneyreview_rollup_money"
down_revision = ("0006_dashboard", "0010_money_chain_status")
branch_labels = None
depends_on = None


def _replace_triggers(money: bool) -> None:
    from dashboard.rollup import drop_trigger_ddl, rebuild, trigger_ddl

    dialect = op.get_bind().dialect.name
    for statement in drop_trigger_ddl(dialect) + trigger_ddl(dialect, money=money):
        op.execute(statement)
    rebuild(Session(bind=op.get_bind()), money=money)


def upgrade() -> None:
    _replace_triggers(money=True)


def downgrade() -> None:
    _replace_triggers(money=False)
