"""Settlement configuration, read from the environment (12-factor) next to `Settings`.

    BUSANPAY_PAYOUT_RAIL        bankfile (default) | stripe   (Settings.payout_rail)
    BUSANPAY_PAYOUT_MIN_KRW     smallest payout in whole won (default 1000)
    BUSANPAY_PAYOUT_MAX_ATTEMPTS failed payouts after this many are left for a person (3)
    BUSANPAY_AUTO_SETTLEMENT    run the daily settlement in the worker (default on)
    STRIPE_API_KEY, STRIPE_API_BASE, STRIPE_WEBHOOK_SECRET, STRIPE_TIMEOUT (s, 30),
    STRIPE_MAX_RETRIES (2)
    BUSANPAY_EXCHANGE_URL, BUSANPAY_EXCHANGE_ACCESS_KEY, BUSANPAY_EXCHANGE_SECRET_KEY,
    BUSANPAY_EXCHANGE_NAME (upbit), BUSANPAY_CONVERSION_MIN_SATS (10000)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

from settings import ConfigError


@dataclass(frozen=True)
class SettlementConfig:
    payout_rail: str = "bankfile"
    min_payout_krw: int = 1000
    max_payout_attempts: int = 3
    auto_settlement: bool = True
    stripe_api_key: str = field(default="", repr=False)
    stripe_api_base: str = ""
    stripe_webhook_secret: str = field(default="", repr=False)
    stripe_timeout: float = 30.0
    stripe_max_retries: int = 2
    exchange_url: str = ""
    exchange_name: str = "upbit"
    exchange_access_key: str = field(default="", repr=False)
    exchange_secret_key: str = field(default="", repr=False)
    conversion_min_sats: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, payout_rail: str | None = None
                 ) -> "SettlementConfig":
        env = os.environ if env is None else env

        def integer(name, default):
            raw = env.get(name)
            try:
                return default if raw in (None, "") else int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None

        rail = (payout_rail or env.get("BUSANPAY_PAYOUT_RAIL") or "bankfile").strip().lower()
        if rail not in ("bankfile", "stripe"):
            raise ConfigError(f"BUSANPAY_PAYOUT_RAIL must be bankfile or stripe, got {rail!r}")
        return cls(
            payout_rail=rail,
            min_payout_krw=integer("BUSANPAY_PAYOUT_MIN_KRW", 1000),
            max_payout_attempts=integer("BUSANPAY_PAYOUT_MAX_ATTEMPTS", 3),
            auto_settlement=(env.get("BUSANPAY_AUTO_SETTLEMENT") or "1").strip().lower()
            in ("1", "true", "yes", "on"),
            stripe_api_key=env.get("STRIPE_API_KEY") or "",
            stripe_api_base=(env.get("STRIPE_API_BASE") or "").rstrip("/"),
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or "",
            stripe_timeout=float(env.get("STRIPE_TIMEOUT") or 30),
            stripe_max_retries=integer("STRIPE_MAX_RETRIES", 2),
            exchange_url=(env.get("BUSANPAY_EXCHANGE_URL") or "").rstrip("/"),
            exchange_name=env.get("BUSANPAY_EXCHANGE_NAME") or "upbit",
            exchange_access_key=env.get("BUSANPAY_EXCHANGE_ACCESS_KEY") or "",
            exchange_secret_key=env.get("BUSANPAY_EXCHANGE_SECRET_KEY") or "",
            conversion_min_sats=integer("BUSANPAY_CONVERSION_MIN_SATS", 10_000),
        )

    def with_overrides(self, **values) -> "SettlementConfig":
        return replace(self, **values)


def settlement_config(gateway) -> SettlementConfig:
    """The gateway's settlement config: `gateway.extras["settlement_config"]` when a test
    or the app put one there, else read from the environment once."""
    config = gateway.extras.get("settlement_config")
    if config is None:
        config = SettlementConfig.from_env(payout_rail=getattr(gateway.settings, "payout_rail", None))
        gateway.extras["settlement_config"] = config
    return config
