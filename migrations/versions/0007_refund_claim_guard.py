"""one active refund claim per invoice

Revision ID: 0007_refund_claim_guard
Revises: 0003_ledger
"""
from alembic import op
import sqlalchemy as sa

revision = "0007_refund_claim_guard"
down_revision = "0003_ledger"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('open', 'submitted', 'approved')"


def upgrade() -> None:
    op.create_index("uq_refund_claim_active", "refund_claim", ["invoice_id"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))


def downgrade() -> None:
    op.drop_index("uq_refund_claim_active", table_name="refund_claim")
