"""login sessions, login throttle, short store codes for the POS login

Revision ID: 0011_logins_sessions
Revises: 0005_accounts
"""
import secrets

import sqlalchemy as sa
from alembic import op

import database

revision = "0011_logins_sessions"
down_revision = "0005_accounts"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the application code does.
_ALPHABET = "ACEFGHKMNPRTWXY34679"


def upgrade() -> None:
    op.create_table(
        "login_session",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("created_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_session_user_id", "login_session", ["user_id"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", database.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    # Failures are counted per client/store/account in login_throttle now.
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")

    with op.batch_alter_table("store") as batch:
        batch.add_column(sa.Column("pos_code", sa.String(length=8), nullable=True))
    connection = op.get_bind()
    used: set[str] = set()
    for (store_id,) in connection.execute(sa.text("SELECT id FROM store")).all():
        code = ""
        while not code or code in used:
            code = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        used.add(code)
        connection.execute(sa.text("UPDATE store SET pos_code = :code WHERE id = :id"),
                           {"code": code, "id": store_id})
    with op.batch_alter_table("store") as batch:
        batch.alter_column("pos_code", existing_type=sa.String(length=8), nullable=False)
        batch.create_unique_constraint("uq_store_pos_code", ["pos_code"])


def downgrade() -> None:
    with op.batch_alter_table("store") as batch:
        batch.drop_constraint("uq_store_pos_code", type_="unique")
        batch.drop_column("pos_code")
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("locked_until", database.UTCDateTime(timezone=True),
                                   nullable=True))
    op.drop_table("login_throttle")
    op.drop_index("ix_login_session_user_id", table_name="login_session")
    op.drop_table("login_session")
