"""incidents that close themselves: invoice_incident history, invoice.incident_since, the
watcher's waiting reason

Revision ID: 0013_watcher_incidents
Revises: 0002_chain
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import database

revision = "0013_watcher_incidents"
down_revision = "0002_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_incident",
        sa.Column("id", database.BigIntPK, autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("opened_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_why", sa.Text(), nullable=False),
        sa.Column("closed_at", database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_why", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invoice_incident_invoice_id", "invoice_incident", ["invoice_id"])
    op.create_index("ux_invoice_incident_open", "invoice_incident", ["invoice_id"], unique=True,
                    sqlite_where=sa.text("closed_at IS NULL"),
                    postgresql_where=sa.text("closed_at IS NULL"))
    with op.batch_alter_table("invoice") as batch:
        batch.add_column(sa.Column("incident_since", database.UTCDateTime(timezone=True),
                                   nullable=True))
    with op.batch_alter_table("chain_watcher_state") as batch:
        batch.add_column(sa.Column("waiting", sqlmodel.sql.sqltypes.AutoString(length=200),
                                   nullable=True))
        batch.add_column(sa.Column("waiting_since", database.UTCDateTime(timezone=True),
                                   nullable=True))
    # Incidents open before this migration get a history row (their opening time unknown:
    # the invoice's last update).
    op.execute("UPDATE invoice SET incident_since = updated_at WHERE incident IS NOT NULL")
    op.execute("INSERT INTO invoice_incident (invoice_id, kind, opened_at, opened_why) "
               "SELECT id, incident, updated_at, 'open before incident history was kept' "
               "FROM invoice WHERE incident IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("chain_watcher_state") as batch:
        batch.drop_column("waiting_since")
        batch.drop_column("waiting")
    with op.batch_alter_table("invoice") as batch:
        batch.drop_column("incident_since")
    op.drop_index("ux_invoice_incident_open", table_name="invoice_incident")
    op.drop_index("ix_invoice_incident_invoice_id", table_name="invoice_incident")
    op.drop_table("invoice_incident")
