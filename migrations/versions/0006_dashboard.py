"""dashboard: daily rollup per store and Seoul day (kept by invoice triggers), exception
reviews, city settings, and the indexes the city dashboard reads through.

Revision ID: 0006_dashboard
Revises: 0001_invoice_core
Depends on: 0005_accounts (an index on audit_log)
"""
from alembic import op
import sqlalchemy as sa

import database

revision = "0006_dashboard"
down_revision = "0001_invoice_core"
branch_labels = None
depends_on = ("0005_accounts",)

# Invoices in an exception state: the city's queue reads only these (a few % of all).
EXCEPTION_PREDICATE = ("status = 'Invalid' OR additional_status IN ('PaidPartial', 'PaidOver', "
                       "'PaidLate') OR incident IS NOT NULL")
UNCONFIRMED_PREDICATE = "block_height IS NULL AND state = 'seen'"


def _counters():
    from dashboard.models import AMOUNT_COLUMNS, ROLLUP_COLUMNS

    return [sa.Column(c, sa.BigInteger() if c in AMOUNT_COLUMNS else sa.Integer(), nullable=False,
                      server_default="0") for c in ROLLUP_COLUMNS]


def upgrade() -> None:
    from dashboard.rollup import rebuild, trigger_ddl

    dialect = op.get_bind().dialect.name
    op.create_table(
        "city_rollup",
        sa.Column("store_id", sa.String(48), sa.ForeignKey("store.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters(),
        sa.PrimaryKeyConstraint("store_id", "day"),
    )
    op.create_index("ix_city_rollup_day", "city_rollup", ["day", "store_id"])
    op.create_table(
        "city_rollup_delta",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("store_id", sa.String(48), sa.ForeignKey("store.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_counters(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "city_exception_review",
        sa.Column("invoice_id", sa.String(32), sa.ForeignKey("invoice.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("reviewer_id", sa.String(24), nullable=True),
        sa.Column("reviewer_role", sa.String(16), nullable=False, server_default=""),
        sa.Column("reviewed_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id"),
    )
    op.create_table(
        "city_setting",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(24), nullable=True),
        sa.Column("updated_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # (created_at, id) first: the queue pages newest first straight off the index; the other
    # columns make its counts index-only scans.
    op.create_index("ix_invoice_exceptions", "invoice",
                    ["created_at", "id", "status", "additional_status", "incident", "store_id"],
                    postgresql_where=sa.text(EXCEPTION_PREDICATE),
                    sqlite_where=sa.text(EXCEPTION_PREDICATE))
    # Payments seen but in no block yet, by when they were seen: the 0-conf exposure reads
    # the recent ones (never-confirmed payments of long-invalid invoices stay out of the way).
    op.create_index("ix_payment_unconfirmed", "payment", ["seen_at", "invoice_id"],
                    postgresql_where=sa.text(UNCONFIRMED_PREDICATE),
                    sqlite_where=sa.text(UNCONFIRMED_PREDICATE))
    op.create_index("ix_audit_action_at", "audit_log", ["action", "at"])
    for statement in trigger_ddl(dialect, money=False):  # 0020 follows the chain status
        op.execute(statement)
    # Invoices that exist already (an upgrade of a live database).
    from sqlalchemy.orm import Session

    rebuild(Session(bind=op.get_bind()), money=False)


def downgrade() -> None:
    from dashboard.rollup import drop_trigger_ddl

    for statement in drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_index("ix_audit_action_at", table_name="audit_log")
    op.drop_index("ix_payment_unconfirmed", table_name="payment")
    op.drop_index("ix_invoice_exceptions", table_name="invoice")
    op.drop_table("city_setting")
    op.drop_table("city_exception_review")
    op.drop_table("city_rollup_delta")
    op.drop_index("ix_city_rollup_day", table_name="city_rollup")
    op.drop_table("city_rollup")
