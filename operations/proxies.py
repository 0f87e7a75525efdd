"""Trusting `X-Forwarded-*` only from the configured reverse proxies.

`BUSANPAY_TRUSTED_PROXIES` is a comma list of addresses or networks (`127.0.0.1`,
`10.0.0.0/8`, `::1`). A request whose peer is one of them goes through werkzeug's
`ProxyFix` (one hop: the client address, scheme, host, port and prefix the proxy saw), so
rate limits, the audit log and the logs see the real client and `https`; from any other
peer the headers are ignored, so nobody can spoof an address to dodge a rate limit.
"""
from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix


def parse_networks(spec: str) -> tuple:
    networks = []
    for item in (part.strip() for part in spec.split(",")):
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))  # ValueError: bad spec
    return tuple(networks)


class TrustedProxyFix:
    def __init__(self, app, networks: tuple):
        self.app = app
        self.networks = networks
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)

    def _trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def install(app, spec: str) -> None:
    networks = parse_networks(spec)
    if networks:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, networks)
