"""onboarding: payout-account changes (four eyes), merchant applications, owner invitations

Revision ID: 0017_onboard_tables
Revises: 0001_invoice_core
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import database


revision = '0017_onboard_tables'
down_revision = '0001_invoice_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('merchant_application',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name_ko', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('brn', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('monthly_volume_krw', sa.Integer(), nullable=False),
    sa.Column('settlement_mode', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('xpub', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('flags', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('client_ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
    sa.Column('decided_at', database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('store_id', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('merchant_application', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_application_brn'), ['brn'], unique=False)
        batch_op.create_index(batch_op.f('ix_merchant_application_status'), ['status'], unique=False)
        batch_op.create_index('uq_application_brn_live', ['brn'], unique=True, sqlite_where=sa.text("status IN ('pending', 'approved')"), postgresql_where=sa.text("status IN ('pending', 'approved')"))

    op.create_table('owner_invitation',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('store_id', sa.String(length=48), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('created_at', database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('owner_invitation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_owner_invitation_store_id'), ['store_id'], unique=False)

    op.create_table('payout_account_change',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('store_id', sa.String(length=48), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('rail', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('stripe_account_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('bank_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('bank_account', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('account_holder', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('holder_matches', sa.Boolean(), nullable=False),
    sa.Column('holder_explanation', sa.Text(), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('requested_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_at', database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
    sa.Column('decided_at', database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['store.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payout_account_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_account_change_store_id'), ['store_id'], unique=False)
        batch_op.create_index('uq_payout_change_pending', ['store_id'], unique=True, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))



def downgrade() -> None:
    with op.batch_alter_table('payout_account_change', schema=None) as batch_op:
        batch_op.drop_index('uq_payout_change_pending', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_payout_account_change_store_id'))

    op.drop_table('payout_account_change')
    with op.batch_alter_table('owner_invitation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_owner_invitation_store_id'))

    op.drop_table('owner_invitation')
    with op.batch_alter_table('merchant_application', schema=None) as batch_op:
        batch_op.drop_index('uq_application_brn_live', sqlite_where=sa.text("status IN ('pending', 'approved')"), postgresql_where=sa.text("status IN ('pending', 'approved')"))
        batch_op.drop_index(batch_op.f('ix_merchant_application_status'))
        batch_op.drop_index(batch_op.f('ix_merchant_application_brn'))

    op.drop_table('merchant_application')
