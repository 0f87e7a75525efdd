"""conversion venues: the city's cap on each and the last balance check

Revision ID: 0016_ops_exchange_venue
Revises: 0007_refund_claim_guard
"""
import sqlalchemy as sa
from alembic import op

from database import UTCDateTime

revision = "0016_ops_exchange_venue"
down_revision = "0007_refund_claim_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_venue",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cap_krw", sa.BigInteger(), nullable=True),
        sa.Column("cap_set_by", sa.String(length=24), nullable=True),
        sa.Column("cap_set_at", UTCDateTime(), nullable=True),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("reported_krw", sa.BigInteger(), nullable=True),
        sa.Column("ledger_krw", sa.BigInteger(), nullable=True),
        sa.Column("mismatch", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("exchange_venue")
