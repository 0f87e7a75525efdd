"""pull_payment (Greenfield refunds a shop opens), refund claims without an invoice

Revision ID: 0014_greenfield_pull_payments
Revises: 0007_refund_claim_guard
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

import database

revision = "0014_greenfield_pull_payments"
down_revision = "0007_refund_claim_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refund_claim") as batch:
        batch.alter_column("invoice_id", existing_type=sa.String(length=32), nullable=True)
    op.create_table(
        "pull_payment",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("store_id", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("invoice_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("claim_id", sa.String(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("amount_text", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("amount_krw", sa.Integer(), nullable=False),
        sa.Column("rate", database.DecimalText(length=64), nullable=False),
        sa.Column("variant", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("view_token", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("created_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["claim_id"], ["refund_claim.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("claim_id"),
    )
    with op.batch_alter_table("pull_payment") as batch:
        batch.create_index(batch.f("ix_pull_payment_store_id"), ["store_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pull_payment") as batch:
        batch.drop_index(batch.f("ix_pull_payment_store_id"))
    op.drop_table("pull_payment")
    with op.batch_alter_table("refund_claim") as batch:
        batch.alter_column("invoice_id", existing_type=sa.String(length=32), nullable=False)
