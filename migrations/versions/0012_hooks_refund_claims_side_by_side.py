"""refund claims side by side: one approved claim per invoice, the payer-browser evidence

Anyone who knows an invoice id could open its one active claim and so take or block the
payer's refund. Claims now stand side by side (each with its own key) and the treasury approves
one of them: the database allows at most one approved claim per invoice.

Revision ID: 0012_hooks_refund_claims
Revises: 0007_refund_claim_guard
"""
from alembic import op
import sqlalchemy as sa

import database

revision = "0012_hooks_refund_claims"
down_revision = "0007_refund_claim_guard"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('open', 'submitted', 'approved')"
APPROVED = "status = 'approved'"


def upgrade() -> None:
    op.drop_index("uq_refund_claim_active", table_name="refund_claim")
    op.create_index("uq_refund_claim_approved", "refund_claim", ["invoice_id"], unique=True,
                    sqlite_where=sa.text(APPROVED), postgresql_where=sa.text(APPROVED))
    op.add_column("refund_claim", sa.Column("shown_unpaid_at",
                                            database.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refund_claim") as batch:
        batch.drop_column("shown_unpaid_at")
    op.drop_index("uq_refund_claim_approved", table_name="refund_claim")
    op.create_index("uq_refund_claim_active", "refund_claim", ["invoice_id"], unique=True,
                    sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
