"""Lightning: payments say their method (BTC-CHAIN, BTC-LN), invoices' BOLT11s, the
listener's resume point and the demo node's own invoices

Revision ID: 0021_ln_lightning
Revises: 0001_invoice_core
"""
import sqlalchemy as sa
from alembic import op

from database import BigIntPK, UTCDateTime

revision = "0021_ln_lightning"
down_revision = "0001_invoice_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment") as batch:
        batch.add_column(sa.Column("method", sa.String(length=16), nullable=False,
                                   server_default="BTC-CHAIN"))
    op.create_table(
        "invoice_lightning",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.String(length=32), sa.ForeignKey("invoice.id"),
                  nullable=False),
        sa.Column("payment_hash", sa.String(length=64), nullable=True),
        sa.Column("bolt11", sa.Text(), nullable=True),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("unavailable", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.UniqueConstraint("payment_hash"),
    )
    op.create_index("ix_invoice_lightning_invoice_id", "invoice_lightning", ["invoice_id"])
    op.create_index("uq_invoice_lightning_active", "invoice_lightning", ["invoice_id"],
                    unique=True, sqlite_where=sa.text("active"),
                    postgresql_where=sa.text("active"))
    op.create_table(
        "lightning_listener_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("settlements", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_settlement_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "demo_ln_invoice",
        sa.Column("payment_hash", sa.String(length=64), primary_key=True),
        sa.Column("bolt11", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=640), nullable=False),
        sa.Column("amount_msat", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("amount_paid_msat", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.Column("settle_index", sa.Integer(), nullable=True),
        sa.UniqueConstraint("label"),
        sa.UniqueConstraint("settle_index"),
    )
    op.create_table(
        "demo_ln_node",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("settle_index", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("demo_ln_node")
    op.drop_table("demo_ln_invoice")
    op.drop_table("lightning_listener_state")
    op.drop_index("uq_invoice_lightning_active", table_name="invoice_lightning")
    op.drop_index("ix_invoice_lightning_invoice_id", table_name="invoice_lightning")
    op.drop_table("invoice_lightning")
    with op.batch_alter_table("payment") as batch:
        batch.drop_column("method")
