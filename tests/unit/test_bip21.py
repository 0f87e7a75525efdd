"""BIP21 payment URIs (payments/bip21.py)."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.bip21 import (
    InvalidPaymentURI,
    format_btc,
    parse_btc,
    parse_payment_uri,
    payment_uri,
)

BECH32 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
P2PKH = "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA"
REGTEST = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"
MAX_SATS = 21_000_000 * 100_000_000


# ------------------------------------------------------------------ format_btc

@pytest.mark.parametrize(
    "sats,text",
    [
        (0, "0"),
        (1, "0.00000001"),
        (10, "0.0000001"),
        (150_000, "0.0015"),
        (100_000_000, "1"),
        (100_000_001, "1.00000001"),
        (123_456_789, "1.23456789"),
        (2_100_000_000_000_000, "21000000"),
        (50, "0.0000005"),
    ],
)
def test_format_btc_writes_plain_decimal_btc_with_trailing_zeros_trimmed(sats, text):
    assert format_btc(sats) == text


@given(st.integers(min_value=0, max_value=MAX_SATS))
def test_format_btc_never_uses_exponent_notation_and_parses_back_exactly(sats):
    text = format_btc(sats)
    assert "e" not in text.lower()
    assert len(text.partition(".")[2]) <= 8
    assert Decimal(text) * 100_000_000 == sats
    assert parse_btc(text) == sats


def test_format_btc_refuses_negative_amounts():
    with pytest.raises(ValueError, match="negative"):
        format_btc(-1)


@pytest.mark.parametrize("bad", [1.5, Decimal("1"), "100", True, None])
def test_format_btc_takes_only_int_satoshis(bad):
    with pytest.raises(TypeError):
        format_btc(bad)


# ------------------------------------------------------------------ payment_uri

def test_payment_uri_has_address_amount_and_label_in_bip21_form():
    assert payment_uri(BECH32, 150_000, "Haeundae Coffee") == (
        f"bitcoin:{BECH32}?amount=0.0015&label=Haeundae%20Coffee"
    )


def test_payment_uri_without_amount_or_label_is_just_the_address():
    assert payment_uri(BECH32, None) == f"bitcoin:{BECH32}"
    assert payment_uri(BECH32, None, label="Shop") == f"bitcoin:{BECH32}?label=Shop"


def test_payment_uri_adds_a_message_after_the_label():
    assert payment_uri(BECH32, 1, "A", "Order 7") == (
        f"bitcoin:{BECH32}?amount=0.00000001&label=A&message=Order%207"
    )


def test_payment_uri_refuses_a_zero_or_negative_or_float_amount():
    with pytest.raises(ValueError, match="0 sats"):
        payment_uri(BECH32, 0)
    with pytest.raises(ValueError):
        payment_uri(BECH32, -5)
    with pytest.raises(TypeError):
        payment_uri(BECH32, 0.0015)


@pytest.mark.parametrize("address", ["", "   ", f"{BECH32}?amount=1", "bc1 q", "a&b"])
def test_payment_uri_refuses_something_that_is_not_an_address(address):
    with pytest.raises(ValueError):
        payment_uri(address, 1000)


@pytest.mark.parametrize(
    "label",
    [
        "해운대 횟집",
        "부산 어묵 & 떡볶이 #1",
        "釜山の店",
        "海云台咖啡馆",
        "Tom & Jerry's = 100% fun? #yes",
        "a+b/c;d:e@f,g",
        "Café — ☕",
        "  spaced  out  ",
    ],
)
def test_labels_survive_the_round_trip_in_every_script_and_with_reserved_characters(label):
    uri = payment_uri(BECH32, 150_000, label)
    assert uri.isascii()
    query = uri.partition("?")[2]
    assert query.count("&") == 1 and query.count("=") == 2  # nothing leaked unescaped
    assert "#" not in uri and " " not in uri and "+" not in query.partition("label=")[2]
    parsed = parse_payment_uri(uri)
    assert parsed["label"] == label
    assert parsed["sats"] == 150_000
    assert parsed["address"] == BECH32


@settings(max_examples=200)
@given(
    label=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
    message=st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), min_size=1)),
    sats=st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_SATS)),
    for_qr=st.booleans(),
)
def test_any_label_message_and_amount_round_trip_exactly(label, message, sats, for_qr):
    uri = payment_uri(BECH32, sats, label, message, for_qr=for_qr)
    assert uri.isascii()
    parsed = parse_payment_uri(uri)
    assert parsed == {"address": BECH32, "sats": sats, "label": label, "message": message,
                      "params": {}}


def test_for_qr_upper_cases_a_bech32_address_and_keeps_the_scheme_lower_case():
    uri = payment_uri(BECH32, 150_000, "해운대", for_qr=True)
    assert uri.startswith("bitcoin:" + BECH32.upper() + "?amount=0.0015&label=")
    regtest = payment_uri(REGTEST, 1, for_qr=True)
    assert regtest == "bitcoin:" + REGTEST.upper() + "?amount=0.00000001"


def test_for_qr_leaves_a_base58_address_alone_because_its_case_matters():
    assert payment_uri(P2PKH, 1000, for_qr=True) == f"bitcoin:{P2PKH}?amount=0.00001"


def test_without_for_qr_an_upper_case_bech32_address_is_written_lower_case():
    assert payment_uri(BECH32.upper(), 1000) == f"bitcoin:{BECH32}?amount=0.00001"


# ------------------------------------------------------------------ parse_payment_uri

def test_parse_payment_uri_reads_a_qr_payload_back_to_the_invoice_values():
    parsed = parse_payment_uri(
        "bitcoin:BC1QCR8TE4KR609GCAWUTMRZA0J4XV80JY8Z306FYU?amount=0.0015&label=%ED%95%B4%EC%9A%B4%EB%8C%80"
    )
    assert parsed["address"] == BECH32
    assert parsed["sats"] == 150_000
    assert parsed["label"] == "해운대"
    assert parsed["message"] is None


def test_parse_payment_uri_accepts_an_upper_case_scheme_and_keeps_other_parameters():
    parsed = parse_payment_uri(f"BITCOIN:{BECH32}?amount=1&lightning=lnbc1x&foo=a%20b")
    assert parsed["sats"] == 100_000_000
    assert parsed["params"] == {"lightning": "lnbc1x", "foo": "a b"}


@pytest.mark.parametrize(
    "amount",
    ["1e-3", "1E2", "0.000000001", "1.123456789", "-1", "+1", "1,5", "", ".", "0x10", "١"],
)
def test_parse_payment_uri_refuses_exponents_extra_places_and_odd_amounts(amount):
    with pytest.raises(InvalidPaymentURI, match="amount"):
        parse_payment_uri(f"bitcoin:{BECH32}?amount={amount}")


def test_parse_payment_uri_accepts_the_amount_forms_bip21_allows():
    assert parse_payment_uri(f"bitcoin:{BECH32}?amount=.5")["sats"] == 50_000_000
    assert parse_payment_uri(f"bitcoin:{BECH32}?amount=2.")["sats"] == 200_000_000
    assert parse_payment_uri(f"bitcoin:{BECH32}?amount=0.10000000")["sats"] == 10_000_000


@pytest.mark.parametrize(
    "uri,reason",
    [
        (f"litecoin:{BECH32}", "not a bitcoin"),
        (BECH32, "not a bitcoin"),
        ("bitcoin:?amount=1", "no address"),
        (f"bitcoin:{BECH32}?amount=1&amount=2", "twice"),
        (f"bitcoin:{BECH32}?req-somethingyoudontunderstand=50", "required parameter"),
        (f"bitcoin:{BECH32}?label", "no value"),
        (f"bitcoin:{BECH32}?label=%FF%FE", "UTF-8"),
    ],
)
def test_parse_payment_uri_refuses_malformed_uris(uri, reason):
    with pytest.raises(InvalidPaymentURI, match=reason):
        parse_payment_uri(uri)


# ------------------------------------------------------------------ unified QR (lightning=)

BOLT11 = ("lnbcrt33340n1p43fmctpp5q0uxy5zm3k2mxmyyrv3k4g7w2g6w9n9j3sx5v6pmtqfzq2f6kg3qdq"
          "ufp5xjmnzd9hxwctdwssqcqzzsxqrrssrzjq2gyp9za7vc7vd8m59fvu63pu00u4pak35n4upuv4mhyw5"
          "l586dvkf6vkyqq20gqqqqqqqqqqqqqqq9qsp5")


def test_the_unified_uri_puts_lightning_last_after_amount_and_label():
    uri = payment_uri(BECH32, 3334, "Haeundae Coffee", lightning=BOLT11)
    assert uri == (f"bitcoin:{BECH32}?amount=0.00003334&label=Haeundae%20Coffee"
                   f"&lightning={BOLT11}")


def test_in_the_qr_the_address_and_the_bolt11_are_upper_case_the_scheme_and_keys_not():
    uri = payment_uri(BECH32, 3334, "해운대 커피", for_qr=True, lightning=BOLT11)
    assert uri.startswith(f"bitcoin:{BECH32.upper()}?amount=0.00003334&label=")
    assert uri.endswith(f"&lightning={BOLT11.upper()}")
    parsed = parse_payment_uri(uri)
    assert parsed["sats"] == 3334 and parsed["label"] == "해운대 커피"
    assert parsed["params"]["lightning"].lower() == BOLT11


def test_an_upper_case_bolt11_is_lower_cased_in_a_link():
    assert payment_uri(BECH32, 1, lightning=BOLT11.upper()).endswith(f"&lightning={BOLT11}")


@pytest.mark.parametrize("bad", ["lnbc1&x=1", "lnBC1", "bitcoin:x", "lnbc 1", "LNbc1"])
def test_a_lightning_value_that_is_no_bolt11_is_refused(bad):
    with pytest.raises(ValueError, match="BOLT11"):
        payment_uri(BECH32, 1, lightning=bad)


def test_a_bolt11_asking_another_amount_never_joins_the_uri():
    from payments.unified import bolt11_for, qr_token, request_uri

    class Offer:
        bolt11, amount_msat = BOLT11, 3_334_000

    assert bolt11_for(Offer, 3334) == BOLT11
    assert bolt11_for(Offer, 3000) is None and bolt11_for(None, 3334) is None
    assert "lightning=" not in request_uri(BECH32, 3000, "Cafe", Offer)
    assert request_uri(BECH32, 3334, "Cafe", Offer, for_qr=True).endswith(BOLT11.upper())
    assert qr_token("a") != qr_token("b") and len(qr_token("a")) == 16


def test_the_unified_payload_fits_a_smaller_qr_upper_case():
    from payments.qr_codes import build_qr

    lower = payment_uri(BECH32, 3334, "Haeundae Coffee", lightning=BOLT11)
    upper = payment_uri(BECH32, 3334, "Haeundae Coffee", for_qr=True, lightning=BOLT11)
    assert build_qr(upper).version < build_qr(lower).version
