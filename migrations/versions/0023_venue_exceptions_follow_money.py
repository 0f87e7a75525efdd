"""venue: the exceptions queue follows the money (issue 9's leftover): its partial index
ix_invoice_exceptions is rebuilt over COALESCE(chain_status, status), so a partly paid
invoice its merchant marks Settled stays in the queue as partial.

Revision ID: 0023_venue_exceptions_money
Revises: 0020_moneyreview_rollup_money
"""
import sqlalchemy as sa
from alembic import op

revision = "0023_venue_exceptions_money"
down_revision = "0020_moneyreview_rollup_money"
branch_labels = None
depends_on = None

# dashboard.queries.EXCEPTION_SQL without the table prefix (the same text, so PostgreSQL
# matches the queue's WHERE to the index).
MONEY_PREDICATE = ("COALESCE(chain_status, status) = 'Invalid' "
                   "OR additional_status IN ('PaidPartial', 'PaidOver', 'PaidLate') "
                   "OR (additional_status = 'Marked' AND COALESCE(chain_status, status) = "
                   "'Expired' AND paid_sats > 0) "
                   "OR incident IS NOT NULL")
SHOP_PREDICATE = ("status = 'Invalid' OR additional_status IN ('PaidPartial', 'PaidOver', "
                  "'PaidLate') OR incident IS NOT NULL")
COLUMNS = ["created_at", "id", "status", "additional_status", "incident", "store_id"]


def _index(predicate: str, columns: list[str]) -> None:
    op.drop_index("ix_invoice_exceptions", table_name="invoice")
    op.create_index("ix_invoice_exceptions", "invoice", columns,
                    postgresql_where=sa.text(predicate), sqlite_where=sa.text(predicate))


def upgrade() -> None:
    # The money columns join the key so the counts stay index-only scans.
    _index(MONEY_PREDICATE, COLUMNS + ["chain_status", "paid_sats", "due_sats"])


def downgrade() -> None:
    _index(SHOP_PREDICATE, COLUMNS)
