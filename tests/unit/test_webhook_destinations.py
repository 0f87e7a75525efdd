"""The webhook address policy (pure): literal spellings, embedded IPv4, public vs not."""
from __future__ import annotations

import ipaddress

import pytest

from webhooks.destinations import DestinationRefused, literal_address, pick_address, refusal


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "0x7f.1", "0x7f000001", "2130706433",
                                  "0177.0.0.1", "017700000001"])
def test_every_c_library_spelling_of_127_0_0_1_is_read_as_127_0_0_1(host):
    assert literal_address(host) == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize("host", ["shop.example", "1.2.3.4.5", "999.1.1.1", "1e3", "0x7g.1", ""])
def test_names_and_impossible_numbers_are_not_literal_addresses(host):
    assert literal_address(host) is None


@pytest.mark.parametrize("address", ["8.8.8.8", "203.0.114.9", "2001:4860:4860::8888",
                                     "::ffff:8.8.8.8"])
def test_public_unicast_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address, reason", [
    ("::ffff:10.0.0.1", "private network"), ("2002:a00:1::", "private network"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("198.18.0.1", "private network"),
    ("192.0.2.1", "private network"), ("255.255.255.255", "reserved")])
def test_ipv6_forms_are_judged_by_the_ipv4_address_inside_and_test_ranges_are_refused(address,
                                                                                     reason):
    assert refusal(ipaddress.ip_address(address)) == reason


def test_one_non_public_answer_among_several_refuses_the_name():
    def resolver(host, port):
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("192.168.0.10")]

    with pytest.raises(DestinationRefused, match=r"^refused: address not allowed \(private network\)$"):
        pick_address("shop.example", 443, allow_private=False, resolver=resolver)
    assert str(pick_address("shop.example", 443, allow_private=True, resolver=resolver)) == "8.8.8.8"
