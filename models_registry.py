"""Imports every table module so SQLModel.metadata knows all tables (Alembic, tests)."""
import merchants.models  # noqa: F401
import payments.models  # noqa: F401
import accounts.models  # noqa: F401
import chain.models  # noqa: F401
import settlement.models  # noqa: F401
import settlement.venues  # noqa: F401
import dashboard.models  # noqa: F401
import webhooks.models  # noqa: F401
import settlement.pull_payments  # noqa: F401
import onboarding.models  # noqa: F401
import lightning.models  # noqa: F401
import lightning.node_watch  # noqa: F401
