"""index for the watcher's expiry sweep

Revision ID: 0008_invoice_expiry_index
Revises: 0001_invoice_core
"""
from alembic import op

revision = "0008_invoice_expiry_index"
down_revision = "0001_invoice_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invoice_status_expiry", "invoice", ["status", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_invoice_status_expiry", table_name="invoice")
