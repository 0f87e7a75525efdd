"""invoice.chain_status and settled_sats: money follows the chain, never a person's mark

Revision ID: 0010_money_chain_status
Revises: 0009_key_address
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_money_chain_status"
down_revision = "0009_key_address"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoice") as batch:
        batch.add_column(sa.Column("chain_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("settled_sats", sa.BigInteger(), nullable=True))
    op.create_index("ix_invoice_chain_status", "invoice", ["chain_status"],
                    sqlite_where=sa.text("chain_status IS NOT NULL"),
                    postgresql_where=sa.text("chain_status IS NOT NULL"))
    # Invoices marked before the chain status was kept: New, so the watcher decides it
    # again from their payments and the time (money follows what the chain says).
    op.execute("UPDATE invoice SET chain_status = 'New' WHERE additional_status = 'Marked'")
    op.execute("UPDATE invoice SET settled_sats = paid_sats "
               "WHERE status = 'Settled' AND additional_status <> 'Marked'")


def downgrade() -> None:
    op.drop_index("ix_invoice_chain_status", table_name="invoice")
    with op.batch_alter_table("invoice") as batch:
        batch.drop_column("settled_sats")
        batch.drop_column("chain_status")
