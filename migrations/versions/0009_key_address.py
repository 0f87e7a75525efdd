"""pre-derived receive addresses for one-statement invoice creation

Revision ID: 0009_key_address
Revises: 0008_invoice_expiry_index
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_key_address"
down_revision = "0008_invoice_expiry_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("extended_key") as batch:
        batch.add_column(sa.Column("derived_until", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "key_address",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("key_index", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["extended_key.id"]),
        sa.PrimaryKeyConstraint("key_id", "key_index"),
    )


def downgrade() -> None:
    op.drop_table("key_address")
    with op.batch_alter_table("extended_key") as batch:
        batch.drop_column("derived_until")
