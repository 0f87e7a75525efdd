"""payout.kind: daily, or final (the payout made when the city closes a store)

Revision ID: 0022_close_payout_kind
Revises: 0020_moneyreview_rollup_money
"""
from alembic import op
import sqlalchemy as sa

revision = "0022_close_payout_kind"
down_revision = "0020_moneyreview_rollup_money"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payout") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=8), nullable=False,
                                   server_default="daily"))


def downgrade() -> None:
    with op.batch_alter_table("payout") as batch:
        batch.drop_column("kind")
