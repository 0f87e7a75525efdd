"""Lightning: the node's last known health and liquidity (read by the city dashboard and the
metrics, written by a background check, so no page waits on the node)

Revision ID: 0025_lncity_node_snapshot
Revises: 0021_ln_lightning
"""
import sqlalchemy as sa
from alembic import op

from database import UTCDateTime

revision = "0025_lncity_node_snapshot"
down_revision = "0021_ln_lightning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lightning_node_snapshot",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("block_height", sa.Integer(), nullable=True),
        sa.Column("local_balance_msat", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("inbound_msat", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
        sa.Column("reachable_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("lightning_node_snapshot")
