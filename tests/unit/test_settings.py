"""Configuration from the environment: safe defaults, and no mainnet on demo settings."""
from __future__ import annotations

from decimal import Decimal

import pytest

from payments.addresses import DEMO_TREASURY_KEY
from settings import ConfigError, Settings

BIP84_ZPUB = ("zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvU"
              "UkgDKf31mGDtKsAYz2oz2AGutZYs")
# A mainnet xpub that is not derived from the public test mnemonic.
REAL_LOOKING_XPUB = ("xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ"
                     "9xv5ski8PX9rL2dZXvgGDnw")


def settings(**env) -> Settings:
    return Settings.from_env(env, instance_path="/tmp/busanpay-settings-test")


def test_with_nothing_set_the_app_runs_on_regtest_with_demo_settings():
    s = settings()
    assert s.network == "regtest" and s.chain == "demo" and s.rate_sources.startswith("fixed:")
    assert s.database_url.startswith("sqlite:///") and s.expiration_minutes == 15
    assert s.monitoring_minutes == 24 * 60
    s.check()  # fine off mainnet


def test_numbers_are_parsed_exactly_and_bad_values_are_refused_with_the_name():
    assert settings(BUSANPAY_RATE_TOLERANCE="0.015").rate_tolerance == Decimal("0.015")
    with pytest.raises(ConfigError, match="BUSANPAY_FEE_BPS"):
        settings(BUSANPAY_FEE_BPS="1.5")
    with pytest.raises(ConfigError, match="BUSANPAY_NETWORK"):
        settings(BUSANPAY_NETWORK="mainnet-ish")
    with pytest.raises(ConfigError, match="BUSANPAY_RATE_SPREAD"):
        settings(BUSANPAY_RATE_SPREAD="-0.1")


@pytest.mark.parametrize("env,fragment", [
    ({}, "BUSANPAY_TREASURY_XPUB"),
    ({"BUSANPAY_TREASURY_XPUB": BIP84_ZPUB}, "demo key"),
    ({"BUSANPAY_TREASURY_XPUB": REAL_LOOKING_XPUB, "BUSANPAY_RATE_SOURCES": "fixed:150000000"}, "fixed rate"),
    ({"BUSANPAY_TREASURY_XPUB": REAL_LOOKING_XPUB, "BUSANPAY_RATE_SOURCES": "upbit"}, "demo chain"),
    ({"BUSANPAY_TREASURY_XPUB": REAL_LOOKING_XPUB, "BUSANPAY_RATE_SOURCES": "upbit",
      "BUSANPAY_CHAIN": "esplora:https://esplora.example"}, "BUSANPAY_SECRET_KEY"),
])
def test_mainnet_refuses_demo_keys_fixed_rates_the_demo_chain_and_a_missing_secret(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        settings(BUSANPAY_NETWORK="bitcoin", **env).check()


def test_mainnet_with_real_settings_starts():
    settings(BUSANPAY_NETWORK="bitcoin", BUSANPAY_TREASURY_XPUB=REAL_LOOKING_XPUB,
             BUSANPAY_RATE_SOURCES="exchange=https://exchange.example,upbit,bithumb",
             BUSANPAY_CHAIN="esplora:https://esplora.example",
             BUSANPAY_SECRET_KEY="s" * 40).check()


def test_the_demo_treasury_key_is_refused_on_mainnet_even_if_set_explicitly():
    with pytest.raises(ConfigError):
        settings(BUSANPAY_NETWORK="bitcoin", BUSANPAY_TREASURY_XPUB=DEMO_TREASURY_KEY).check()


def test_the_citys_maximum_payment_tolerance_is_five_percent_unless_set_and_at_most_100():
    assert settings().max_payment_tolerance == Decimal("5")
    assert settings(BUSANPAY_MAX_PAYMENT_TOLERANCE="1.5").max_payment_tolerance == Decimal("1.5")
    for bad in ("101", "-1", "lots", "NaN"):
        with pytest.raises(ConfigError, match="BUSANPAY_MAX_PAYMENT_TOLERANCE"):
            settings(BUSANPAY_MAX_PAYMENT_TOLERANCE=bad)
