"""store.standing and store.standing_reason: the city suspends or closes a merchant

Revision ID: 0017_onboard_store_standing
Revises: 0017_onboard_tables
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0017_onboard_store_standing"
down_revision = "0017_onboard_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("store") as batch:
        batch.add_column(sa.Column("standing", sqlmodel.sql.sqltypes.AutoString(length=12),
                                   nullable=False, server_default="active"))
        batch.add_column(sa.Column("standing_reason", sqlmodel.sql.sqltypes.AutoString(length=500),
                                   nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("store") as batch:
        batch.drop_column("standing_reason")
        batch.drop_column("standing")
