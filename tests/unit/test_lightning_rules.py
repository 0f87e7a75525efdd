"""Lightning in the pure rules: a settled Lightning payment is final in the status decision,
its sats sit in their own treasury account, the configuration is parsed strictly."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from payments.invoice_status import (AdditionalStatus as A, InvoiceFacts, InvoiceStatus as S,
                                     PaymentFact, PaymentState as P, SpeedPolicy, decide)
from settings import ConfigError, Settings, lightning_spec
from settlement import rules
from settlement.rules import invoice_position, venue_deposit_entry

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
EXP = T0 + timedelta(minutes=15)
NOW = T0 + timedelta(minutes=2)
DUE = 3_334


def invoice(status=S.NEW, policy=SpeedPolicy.LOW, due=DUE):
    return InvoiceFacts(status=status, additional_status=A.NONE, due_sats=due, amount_krw=5_000,
                        expires_at=EXP, monitoring_expires_at=EXP + timedelta(hours=24),
                        speed_policy=policy, zero_conf_limit_krw=0, payment_tolerance=Decimal(0))


def lightning(value, at=T0 + timedelta(minutes=1)):
    return PaymentFact(txid="ab" * 32, vout=0, value_sats=value, confirmations=0,
                       state=P.SEEN, seen_at=at, final=True)


def chain(value, conf=0, at=T0 + timedelta(minutes=1)):
    return PaymentFact(txid="cd" * 32, vout=0, value_sats=value, confirmations=conf,
                       state=P.SEEN, seen_at=at)


def test_a_final_lightning_payment_of_the_full_amount_settles_with_no_confirmation():
    decision = decide(invoice(), [lightning(DUE)], NOW)
    assert (decision.status, decision.additional_status) == (S.SETTLED, A.NONE)
    assert decision.events == ("InvoiceProcessing", "InvoiceSettled")
    assert decision.settled_sats == DUE


def test_lightning_counts_as_confirmed_whatever_the_speed_policy_asks_of_the_chain():
    for policy in SpeedPolicy:
        assert decide(invoice(policy=policy), [lightning(DUE)], NOW).status == S.SETTLED


def test_a_partial_lightning_payment_leaves_the_invoice_new_and_partly_paid():
    decision = decide(invoice(), [lightning(1_000)], NOW)
    assert (decision.status, decision.additional_status) == (S.NEW, A.PAID_PARTIAL)


def test_lightning_and_a_partial_chain_payment_add_up_and_wait_for_the_chain_s_confirmations():
    facts = invoice(policy=SpeedPolicy.MEDIUM)
    waiting = decide(facts, [chain(1_000), lightning(DUE - 1_000)], NOW)
    assert (waiting.status, waiting.paid_sats) == (S.PROCESSING, DUE)
    confirmed = decide(facts, [chain(1_000, conf=1), lightning(DUE - 1_000)], NOW)
    assert confirmed.status == S.SETTLED


def test_paid_in_full_both_ways_is_paid_over():
    decision = decide(invoice(policy=SpeedPolicy.MEDIUM), [chain(DUE, conf=1), lightning(DUE)],
                      NOW)
    assert (decision.status, decision.additional_status) == (S.SETTLED, A.PAID_OVER)
    assert decision.overpaid_sats == DUE


def test_a_lightning_payment_after_a_settled_chain_payment_makes_it_paid_over_only():
    decision = decide(invoice(status=S.SETTLED), [chain(DUE, conf=6), lightning(DUE)], NOW)
    assert decision.status == S.SETTLED and decision.incident is None


def test_final_must_be_a_bool():
    with pytest.raises(TypeError):
        PaymentFact(txid="ab" * 32, vout=0, value_sats=1, confirmations=0, state=P.SEEN,
                    seen_at=T0, final=1)


# -- the ledger ----------------------------------------------------------------------------

def facts(**changes) -> rules.InvoiceFacts:
    base = dict(invoice_id="inv1", store_id="s1", settlement_mode="krw", status="Settled",
                additional_status="None", incident=None, amount_krw=15_000, due_sats=10_000,
                paid_sats=10_000, rate=Decimal("150000000"), fee_bps=100)
    base.update(changes)
    return rules.InvoiceFacts(**base)


def test_lightning_sats_sit_in_the_lightning_treasury_and_credit_the_merchant_alike():
    on_chain = invoice_position(facts())
    over_ln = invoice_position(facts(paid_ln_sats=10_000))
    assert over_ln[(rules.TREASURY_LN, "BTC")] == 10_000
    assert (rules.TREASURY_BTC, "BTC") not in over_ln
    same = {k: v for k, v in on_chain.items() if k[0] != rules.TREASURY_BTC}
    assert {k: v for k, v in over_ln.items() if k[0] != rules.TREASURY_LN} == same


def test_paid_partly_each_way_splits_the_treasury_and_owes_the_excess_back():
    position = invoice_position(facts(paid_sats=20_000, paid_ln_sats=10_000,
                                      additional_status="PaidOver"))
    assert position[(rules.TREASURY_BTC, "BTC")] == 10_000
    assert position[(rules.TREASURY_LN, "BTC")] == 10_000
    assert position[(rules.REFUNDS_OWED, "BTC")] == -10_000
    assert position[(rules.payable("s1"), "KRW")] == -(15_000 - 150)


def test_an_expired_invoice_paid_partly_over_lightning_owes_it_back_from_the_node_s_account():
    position = invoice_position(facts(status="Expired", additional_status="PaidPartial",
                                      paid_sats=4_000, paid_ln_sats=4_000))
    assert position == {(rules.TREASURY_LN, "BTC"): 4_000, (rules.REFUNDS_OWED, "BTC"): -4_000}


def test_a_venue_deposit_takes_sats_out_of_both_treasury_accounts_as_told():
    entry = venue_deposit_entry("c1", "upbit", 10_000, from_lightning=4_000)
    amounts = {(l.account, l.currency): l.amount for l in entry.lines}
    assert amounts[(rules.TREASURY_LN, "BTC")] == -4_000
    assert amounts[(rules.TREASURY_BTC, "BTC")] == -6_000
    assert amounts[(rules.venue_btc("upbit"), "BTC")] == 10_000
    with pytest.raises(ValueError):
        venue_deposit_entry("c2", "upbit", 10, from_lightning=11)


# -- configuration ---------------------------------------------------------------------------

def settings(**env) -> Settings:
    return Settings.from_env(env, instance_path="/tmp/busanpay-settings-test")


def test_lightning_defaults_to_the_demo_node_and_is_off_when_set_empty_or_on_mainnet():
    assert settings().lightning == "demo"
    assert settings(BUSANPAY_LIGHTNING="").lightning == ""
    assert settings(BUSANPAY_NETWORK="bitcoin").lightning == ""
    assert lightning_spec("lnd:https://node.example:8080/") == ("lnd", "https://node.example:8080")
    assert lightning_spec("cln:https://node.example:3010") == ("cln", "https://node.example:3010")


@pytest.mark.parametrize("env,fragment", [
    ({"BUSANPAY_LIGHTNING": "eclair:https://x"}, "must be demo, lnd:"),
    ({"BUSANPAY_LIGHTNING": "lnd:node:8080"}, "must be demo, lnd:"),
    ({"BUSANPAY_LIGHTNING": "lnd:https://node:8080"}, "BUSANPAY_LND_MACAROON"),
    ({"BUSANPAY_LIGHTNING": "cln:https://node:3010"}, "BUSANPAY_CLN_RUNE"),
    ({"BUSANPAY_LIGHTNING": "lnd:https://node:8080", "BUSANPAY_LND_MACAROON": "0201",
      "BUSANPAY_LND_CERT": "/nonexistent/tls.cert"}, "BUSANPAY_LND_CERT"),
    ({"BUSANPAY_DEMO_LN_INBOUND_SATS": "lots"}, "BUSANPAY_DEMO_LN_INBOUND_SATS"),
])
def test_malformed_lightning_settings_are_refused_naming_the_variable(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        settings(**env)


def test_lightning_credentials_never_appear_in_the_settings_repr_or_errors():
    s = settings(BUSANPAY_LIGHTNING="cln:https://node:3010", BUSANPAY_CLN_RUNE="secret-rune-x")
    assert "secret-rune-x" not in repr(s)
    with pytest.raises(ConfigError) as refused:
        settings(BUSANPAY_LIGHTNING="lnd:https://node:8080", BUSANPAY_LND_MACAROON="0201ab",
                 BUSANPAY_LND_CERT="/nonexistent")
    assert "0201ab" not in str(refused.value)


def test_the_demo_lightning_node_is_refused_on_mainnet():
    from tests.unit.test_settings import REAL_LOOKING_XPUB

    s = settings(BUSANPAY_NETWORK="bitcoin", BUSANPAY_TREASURY_XPUB=REAL_LOOKING_XPUB,
                 BUSANPAY_RATE_SOURCES="exchange=https://exchange.example,upbit,bithumb",
                 BUSANPAY_CHAIN="esplora:https://esplora.example", BUSANPAY_SECRET_KEY="s" * 40,
                 BUSANPAY_LIGHTNING="demo")
    with pytest.raises(ConfigError, match="demo Lightning node"):
        s.check()


def test_the_lnd_macaroon_is_taken_as_hex_or_read_from_the_file_it_names(tmp_path):
    from lightning.config import macaroon_hex

    assert macaroon_hex("0201ABcd") == "0201abcd"
    path = tmp_path / "invoice.macaroon"
    path.write_bytes(b"\x02\x01\x03lnd")
    assert macaroon_hex(str(path)) == "020103 6c6e64".replace(" ", "")
    with pytest.raises(ConfigError, match="neither hex nor the path") as refused:
        macaroon_hex(str(tmp_path / "missing.macaroon"))
    assert "missing.macaroon" not in str(refused.value)
