"""Configuration read from the environment (12-factor).

With nothing set the app runs the embedded default: SQLite in the instance folder,
regtest, the demo treasury key, a fixed demo rate, the offline demo chain and
background work inside the web process. A production deployment sets the variables;
`Settings.check()` refuses a mainnet start on demo settings.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping

DEMO_RATE_SPEC = "fixed:150000000"


class ConfigError(RuntimeError):
    """The environment asks for something unsafe or malformed."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _decimal(env: Mapping[str, str], name: str, default: str) -> Decimal:
    raw = env.get(name) or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name} must be a non-negative decimal, got {raw!r}")
    return value


def _tolerance(env: Mapping[str, str]) -> Decimal:
    value = _decimal(env, "BUSANPAY_MAX_PAYMENT_TOLERANCE", "5")
    if value > 100:
        raise ConfigError("BUSANPAY_MAX_PAYMENT_TOLERANCE is a percentage from 0 to 100")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _networks(env: Mapping[str, str], name: str) -> str:
    from ipaddress import ip_network

    raw = (env.get(name) or "").strip()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name} must list addresses or networks (10.0.0.0/8), "
                              f"got {item!r}") from None
    return raw


def _lightning(env: Mapping[str, str], network: str) -> str:
    """BUSANPAY_LIGHTNING: unset means the demo node (off on mainnet), empty means off."""
    raw = env.get("BUSANPAY_LIGHTNING")
    if raw is None:
        return "" if network == "bitcoin" else "demo"
    return raw.strip()


def lightning_spec(spec: str) -> tuple[str, str]:
    """("", "") off, ("demo", ""), ("lnd", url) or ("cln", url); ConfigError when malformed."""
    spec = (spec or "").strip()
    if spec in ("", "off", "none"):
        return "", ""
    if spec == "demo":
        return "demo", ""
    kind, _, url = spec.partition(":")
    kind = kind.lower()
    if kind not in ("lnd", "cln") or not url.startswith(("http://", "https://")) \
            or len(url.split("://", 1)[1].strip("/")) == 0:
        raise ConfigError("BUSANPAY_LIGHTNING must be demo, lnd:<REST URL>, cln:<REST URL> or "
                          f"empty, got {spec[:80]!r}")
    return kind, url.rstrip("/")


@dataclass(frozen=True)
class Settings:
    instance_path: str
    database_url: str
    network: str = "regtest"
    treasury_xpub: str = ""
    rate_sources: str = DEMO_RATE_SPEC
    rate_max_age_seconds: int = 60
    rate_tolerance: Decimal = Decimal("0.02")
    rate_spread: Decimal = Decimal("0")
    rate_poll_seconds: int = 15
    chain: str = "demo"
    secret_key: str = field(default="", repr=False)
    secret_key_from_env: bool = False
    expiration_minutes: int = 15
    monitoring_minutes: int = 24 * 60
    max_invoice_krw: int = 100_000_000
    zero_conf_limit_krw: int = 50_000
    # The most a store or an invoice may forgive of the amount due, in percent. It
    # forgives the status only: the merchant is credited what was received.
    max_payment_tolerance: Decimal = Decimal("5")
    fee_bps: int = 100
    payout_rail: str = "bankfile"
    inprocess_worker: bool = True
    ratelimit_storage_url: str = "memory://"
    invoice_rate_limit: str = "120 per minute;5000 per hour"
    login_rate_limit: str = "10 per minute"
    # Wrong logins before growing delays start: per client address, per store/account/device.
    login_free_per_client: int = 10
    login_free_per_account: int = 5
    # How many reverse proxies in front set X-Forwarded-For/-Proto (0: clients face us).
    public_url: str = ""
    max_body_bytes: int = 64 * 1024
    task_queue_url: str = ""
    webhook_allow_private: bool = False  # deliver webhooks to loopback/private addresses
    metrics_token: str = field(default="", repr=False)
    metrics_enabled: bool = True
    log_format: str = "json"
    source_url: str = ""
    trusted_proxies: str = ""
    ledger_check_seconds: int = 900
    smtp_url: str = field(default="", repr=False)  # owner invitations by email; may hold a password
    # Lightning (lightning/config.py): "demo" (the embedded default), "lnd:<REST URL>",
    # "cln:<REST URL>", or "" for on-chain only. Credentials never appear in repr or logs.
    lightning: str = "demo"
    lnd_macaroon: str = field(default="", repr=False)  # hex, or the path of a macaroon file
    lnd_cert: str = ""                                 # path of the node's tls.cert
    cln_rune: str = field(default="", repr=False)
    demo_ln_inbound_sats: int = 100_000_000            # the demo node's inbound liquidity

    @property
    def is_mainnet(self) -> bool:
        return self.network == "bitcoin"

    @property
    def demo_chain_path(self) -> str:
        return str(Path(self.instance_path) / "demochain.sqlite3")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, instance_path: str) -> "Settings":
        env = os.environ if env is None else env
        network = (env.get("BUSANPAY_NETWORK") or "regtest").strip().lower()
        if network not in ("bitcoin", "testnet", "signet", "regtest"):
            raise ConfigError(
                f"BUSANPAY_NETWORK must be bitcoin, testnet, signet or regtest, got {network!r}")
        database_url = env.get("DATABASE_URL") or (
            "sqlite:///" + str(Path(instance_path) / "busanpay.sqlite3"))
        secret = env.get("BUSANPAY_SECRET_KEY") or env.get("SECRET_KEY") or ""
        default_rates = "" if network == "bitcoin" else DEMO_RATE_SPEC
        log_format = (env.get("BUSANPAY_LOG_FORMAT") or "json").strip().lower()
        if log_format not in ("json", "text"):
            raise ConfigError(f"BUSANPAY_LOG_FORMAT must be json or text, got {log_format!r}")
        return cls(
            instance_path=instance_path,
            database_url=database_url,
            network=network,
            treasury_xpub=(env.get("BUSANPAY_TREASURY_XPUB") or "").strip(),
            rate_sources=(env.get("BUSANPAY_RATE_SOURCES") or default_rates).strip(),
            rate_max_age_seconds=_int(env, "BUSANPAY_RATE_MAX_AGE", 60),
            rate_tolerance=_decimal(env, "BUSANPAY_RATE_TOLERANCE", "0.02"),
            rate_spread=_decimal(env, "BUSANPAY_RATE_SPREAD", "0"),
            rate_poll_seconds=_int(env, "BUSANPAY_RATE_POLL_SECONDS", 15),
            chain=(env.get("BUSANPAY_CHAIN") or "demo").strip(),
            secret_key=secret or secrets.token_urlsafe(32),
            secret_key_from_env=bool(secret),
            expiration_minutes=_int(env, "BUSANPAY_EXPIRATION_MINUTES", 15),
            monitoring_minutes=_int(env, "BUSANPAY_MONITORING_MINUTES", 24 * 60),
            max_invoice_krw=_int(env, "BUSANPAY_MAX_INVOICE_KRW", 100_000_000),
            zero_conf_limit_krw=_int(env, "BUSANPAY_ZERO_CONF_LIMIT_KRW", 50_000),
            max_payment_tolerance=_tolerance(env),
            fee_bps=_int(env, "BUSANPAY_FEE_BPS", 100),
            payout_rail=(env.get("BUSANPAY_PAYOUT_RAIL") or "bankfile").strip(),
            inprocess_worker=_bool(env, "BUSANPAY_INPROCESS_WORKER", True),
            ratelimit_storage_url=env.get("BUSANPAY_RATELIMIT_STORAGE") or "memory://",
            invoice_rate_limit=env.get("BUSANPAY_INVOICE_RATE_LIMIT") or "120 per minute;5000 per hour",
            login_rate_limit=env.get("BUSANPAY_LOGIN_RATE_LIMIT") or "10 per minute",
            login_free_per_client=_int(env, "BUSANPAY_LOGIN_FREE_PER_CLIENT", 10),
            login_free_per_account=_int(env, "BUSANPAY_LOGIN_FREE_PER_ACCOUNT", 5),
            public_url=(env.get("BUSANPAY_PUBLIC_URL") or "").rstrip("/"),
            max_body_bytes=_int(env, "BUSANPAY_MAX_BODY_BYTES", 64 * 1024),
            task_queue_url=env.get("BUSANPAY_TASK_QUEUE") or "",
            webhook_allow_private=_bool(env, "BUSANPAY_WEBHOOK_ALLOW_PRIVATE", False),
            metrics_token=(env.get("BUSANPAY_METRICS_TOKEN") or "").strip(),
            metrics_enabled=_bool(env, "BUSANPAY_METRICS", True),
            log_format=log_format,
            source_url=(env.get("BUSANPAY_SOURCE_URL") or "").strip(),
            trusted_proxies=_networks(env, "BUSANPAY_TRUSTED_PROXIES"),
            ledger_check_seconds=_int(env, "BUSANPAY_LEDGER_CHECK_SECONDS", 900),
            smtp_url=(env.get("BUSANPAY_SMTP_URL") or "").strip(),
            lightning=_lightning(env, network),
            lnd_macaroon=(env.get("BUSANPAY_LND_MACAROON") or "").strip(),
            lnd_cert=(env.get("BUSANPAY_LND_CERT") or "").strip(),
            cln_rune=(env.get("BUSANPAY_CLN_RUNE") or "").strip(),
            demo_ln_inbound_sats=_int(env, "BUSANPAY_DEMO_LN_INBOUND_SATS", 100_000_000),
        ).checked_lightning()

    def with_overrides(self, overrides: Mapping[str, object]) -> "Settings":
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return replace(self, **known).checked_lightning()

    def checked_lightning(self) -> "Settings":
        """The Lightning settings, refused when malformed or missing their credentials
        (the messages name the variables, never their values)."""
        kind, _url = lightning_spec(self.lightning)
        if kind == "lnd" and not self.lnd_macaroon:
            raise ConfigError("BUSANPAY_LIGHTNING=lnd:… needs BUSANPAY_LND_MACAROON (the "
                              "macaroon in hex, or the path of the macaroon file)")
        if kind == "cln" and not self.cln_rune:
            raise ConfigError("BUSANPAY_LIGHTNING=cln:… needs BUSANPAY_CLN_RUNE")
        if self.lnd_cert and kind == "lnd" and not Path(self.lnd_cert).is_file():
            raise ConfigError("BUSANPAY_LND_CERT must be the path of the node's tls.cert file")
        if self.demo_ln_inbound_sats < 0:
            raise ConfigError("BUSANPAY_DEMO_LN_INBOUND_SATS must not be negative")
        return self

    def check(self) -> None:
        """Refuse configurations that would lose money on mainnet."""
        from payments.addresses import is_demo_key

        if not self.is_mainnet:
            return
        if not self.treasury_xpub or is_demo_key(self.treasury_xpub):
            raise ConfigError("refusing to run on bitcoin mainnet without BUSANPAY_TREASURY_XPUB "
                              "(the demo key is for test networks only)")
        if not self.rate_sources or "fixed:" in self.rate_sources:
            raise ConfigError("refusing to run on bitcoin mainnet with a fixed rate: "
                              "set BUSANPAY_RATE_SOURCES to real exchanges")
        if self.chain == "demo":
            raise ConfigError("refusing to run on bitcoin mainnet on the demo chain: set BUSANPAY_CHAIN")
        if not self.secret_key_from_env:
            raise ConfigError("refusing to run on bitcoin mainnet without BUSANPAY_SECRET_KEY")
        if lightning_spec(self.lightning)[0] == "demo":
            raise ConfigError("refusing to run on bitcoin mainnet with the demo Lightning node: "
                              "set BUSANPAY_LIGHTNING to lnd:… or cln:…, or empty")
