"""Imports every table module so SQLModel.metadata knows all tables (Alembic, tests)."""
import merchants.models  # noqa: F401
import payments.models  # noqa: F401
import accounts.models  # noqa: F401
