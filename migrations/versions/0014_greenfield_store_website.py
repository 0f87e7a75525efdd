"""store.website: the shop's origin, allowed to frame the checkout page

Revision ID: 0014_greenfield_store_website
Revises: 0001_invoice_core
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0014_greenfield_store_website"
down_revision = "0001_invoice_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("store") as batch:
        batch.add_column(sa.Column("website", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("store") as batch:
        batch.drop_column("website")
