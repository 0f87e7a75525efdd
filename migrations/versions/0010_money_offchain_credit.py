"""offchain_credit: the treasury's two-person off-chain credit to a merchant

Revision ID: 0010_money_offchain_credit
Revises: 0007_refund_claim_guard
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import database

revision = "0010_money_offchain_credit"
down_revision = "0007_refund_claim_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offchain_credit",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=48), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("amount_krw", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("proposed_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("created_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.ForeignKeyConstraint(["store_id"], ["store.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_offchain_credit_store_id", "offchain_credit", ["store_id"])
    op.create_index("ix_offchain_credit_invoice_id", "offchain_credit", ["invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_offchain_credit_invoice_id", table_name="offchain_credit")
    op.drop_index("ix_offchain_credit_store_id", table_name="offchain_credit")
    op.drop_table("offchain_credit")
