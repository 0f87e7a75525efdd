"""merchant-funded refund claims stand apart; pull payments keep no key in clear

Merges the two refund heads. A refund a shop funds (a Greenfield pull payment) has its own
sats, so it is no rival of the claims that share an overpayment: `merchant_funded` marks it,
the one-approved-claim-per-invoice index leaves it out, and a second index allows one
unfinished funded refund per invoice. `pull_payment.view_token` (the claim's key in clear) is
dropped: the key is shown once, in the answer that creates the pull payment.

Downgrading cannot bring the keys back: `view_token` returns empty.

Revision ID: 0019_refundfix_funded_claims
Revises: 0012_hooks_refund_claims, 0014_greenfield_pull_payments
"""
from alembic import op
import sqlalchemy as sa

revision = "0019_refundfix_funded_claims"
down_revision = ("0012_hooks_refund_claims", "0014_greenfield_pull_payments")
branch_labels = None
depends_on = None

OLD_APPROVED = "status = 'approved'"
APPROVED = "status = 'approved' AND NOT merchant_funded"
FUNDED_OPEN = "merchant_funded AND status IN ('open', 'submitted', 'approved')"


def _index(name: str, where: str) -> None:
    op.create_index(name, "refund_claim", ["invoice_id"], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.add_column("refund_claim", sa.Column("merchant_funded", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    claims = sa.table("refund_claim", sa.column("id"), sa.column("merchant_funded"))
    pulls = sa.table("pull_payment", sa.column("claim_id"), sa.column("variant"))
    op.execute(claims.update().where(claims.c.id.in_(
        sa.select(pulls.c.claim_id).where(pulls.c.variant != "OverpaidAmount")))
        .values(merchant_funded=True))
    op.drop_index("uq_refund_claim_approved", table_name="refund_claim")
    _index("uq_refund_claim_approved", APPROVED)
    _index("uq_refund_claim_funded_open", FUNDED_OPEN)
    with op.batch_alter_table("pull_payment") as batch:
        batch.drop_column("view_token")


def downgrade() -> None:
    with op.batch_alter_table("pull_payment") as batch:
        batch.add_column(sa.Column("view_token", sa.String(length=64), nullable=False,
                                   server_default=""))
    op.drop_index("uq_refund_claim_funded_open", table_name="refund_claim")
    op.drop_index("uq_refund_claim_approved", table_name="refund_claim")
    # Not a batch: rebuilding refund_claim on SQLite would trip pull_payment's foreign key
    # (SQLite 3.35+ drops a column in place).
    op.drop_column("refund_claim", "merchant_funded")
    _index("uq_refund_claim_approved", OLD_APPROVED)
