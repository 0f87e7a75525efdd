"""venue: the BTC a venue reports (against the ledger's per-venue BTC account) and since
when a venue is down, for the exceptions queue.

Revision ID: 0023_venue_btc_held
Revises: 0016_ops_exchange_venue
"""
import sqlalchemy as sa
from alembic import op

from database import UTCDateTime

revision = "0023_venue_btc_held"
down_revision = "0016_ops_exchange_venue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exchange_venue") as batch:
        batch.add_column(sa.Column("reported_sats", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("ledger_sats", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("down_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchange_venue") as batch:
        batch.drop_column("down_since")
        batch.drop_column("ledger_sats")
        batch.drop_column("reported_sats")
