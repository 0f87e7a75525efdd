"""Building the gateway's Lightning node from its settings (`BUSANPAY_LIGHTNING`).

- `demo` (the embedded default; off on mainnet): the offline demo node, state in the database.
- `lnd:<REST URL>`: LND's REST API; `BUSANPAY_LND_MACAROON` is the macaroon in hex or the
  path of the macaroon file (read here, once, and hex-encoded: an invoice macaroon is
  enough to create invoices and follow settlements; `getinfo`/channel balances need
  read access too), `BUSANPAY_LND_CERT` the path of the node's `tls.cert` (else the
  system's certificate authorities).
- `cln:<REST URL>`: Core Lightning's clnrest; `BUSANPAY_CLN_RUNE` the rune.
- empty: on-chain only.

Credentials go to the backend and nowhere else (never logged, never in an error message).
The LND and CLN clients are imported here, lazily, so a gateway without them still starts.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from lightning.backend import LightningBackend
from settings import ConfigError, Settings, lightning_spec

#: Seconds a node call may take: invoice creation waits for it, so keep it short.
NODE_TIMEOUT = 5.0
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def macaroon_hex(value: str) -> str:
    """BUSANPAY_LND_MACAROON as hex: the value itself when it is hex, else the file it names."""
    if _HEX.match(value):
        return value.lower()
    path = Path(value)
    if not path.is_file():
        raise ConfigError("BUSANPAY_LND_MACAROON is neither hex nor the path of a macaroon file")
    return path.read_bytes().hex()


def build_lightning(settings: Settings, db, clock: Callable) -> LightningBackend | None:
    """The node the settings name, or None (on-chain only)."""
    kind, url = lightning_spec(settings.lightning)
    if kind == "":
        return None
    if kind == "demo":
        from lightning.demo_node import DemoLightningNode

        return DemoLightningNode(db, clock=clock, network=settings.network,
                                 inbound_sats=settings.demo_ln_inbound_sats)
    if kind == "lnd":
        from lightning.lnd import LndRestBackend

        return LndRestBackend(url, macaroon_hex(settings.lnd_macaroon),
                              settings.lnd_cert or None, timeout=NODE_TIMEOUT)
    from lightning.cln import ClnRestBackend

    return ClnRestBackend(url, settings.cln_rune, None, timeout=NODE_TIMEOUT)
