"""Lightning: the node's last known health and liquidity (read by the city dashboard and the
metrics, written by a background check, so no page waits on the node); payments by when they
were seen and their method (the dashboard's share by method and expected Lightning volume)

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
    # Serves hand-written range queries only (dashboard/lightning_figures.py): created here,
    # not declared on the model (tests/integration/test_migrations.py lists it).
    op.create_index("ix_payment_seen_method", "payment", ["seen_at", "method"])


def downgrade() -> None:
    op.drop_index("ix_payment_seen_method", table_name="payment")
    op.drop_table("lightning_node_snapshot")
