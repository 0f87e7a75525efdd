"""Where a webhook may be delivered: the address policy against server-side request forgery.

A merchant chooses its webhook URL, and the gateway then makes requests to it from inside the
city's network. Unless `BUSANPAY_WEBHOOK_ALLOW_PRIVATE=1`, a delivery goes only to public
unicast addresses: the host is resolved when the delivery is made, every address it resolves to
must be public, and the connection is made to the address that was checked (no second lookup
that a hostile DNS server could answer differently).

Literal hosts are read as the C library reads them (`127.1`, `0x7f.1`, `2130706433`, octal
parts), and IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from typing import Callable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not private, not global
# What inet_aton accepts: one to four dot-separated decimal, octal or hex parts.
_LEGACY_IPV4 = re.compile(r"(0[xX][0-9a-fA-F]*|[0-9]+)(\.(0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class DestinationRefused(ValueError):
    """The destination is not allowed; `str(err)` is safe to show (it names no address)."""


def literal_address(host: str) -> IPAddress | None:
    """The address a literal host means, in every spelling the resolver accepts; None for a
    name."""
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def refusal(ip: IPAddress) -> str | None:
    """Why a delivery may not go to this address (a short category), or None when it is a
    public unicast address."""
    ip = _embedded_ipv4(ip) or ip
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED):
        return "private network"
    if not ip.is_global:
        return "reserved"
    return None


def refusal_message(reason: str) -> str:
    return f"refused: address not allowed ({reason})"


def literal_refusal(host: str) -> str | None:
    """At creation: why a host that is a literal address or a loopback name is refused, else
    None (names are judged again, resolved, at every delivery)."""
    name = host.strip().rstrip(".").lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "loopback"
    ip = literal_address(host)
    return refusal(ip) if ip is not None else None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` stands for (a literal is itself; a name asks the system resolver).
    Raises OSError (socket.gaierror) when the name does not resolve."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise socket.gaierror("no address")
    return found


def pick_address(host: str, port: int, *, allow_private: bool,
                 resolver: Resolver = resolve) -> IPAddress:
    """The one address to connect to, resolved once. Raises DestinationRefused when any address
    the name stands for is not public (unless private addresses are allowed), OSError when it
    does not resolve."""
    addresses = resolver(host, port)
    if not allow_private:
        for ip in addresses:
            reason = refusal(ip)
            if reason:
                raise DestinationRefused(refusal_message(reason))
    return addresses[0]
