"""The Lightning listener as a background job (in-process on the embedded default, in
`flask worker` when scaled out). Each run follows the node's stream for a few seconds and
is called again at once, so a settlement is handled as it arrives. Several processes may
run it: a settlement counts once (unique payment), the stored index only moves forward."""
from __future__ import annotations

from background import Job
from lightning.listener import STREAM_SECONDS, Listener
from lightning.node_watch import CHECK_SECONDS, check


def jobs(gateway) -> list[Job]:
    if gateway.lightning is None:
        return []
    listener = Listener(gateway, gateway.lightning)
    return [Job("lightning", 0.05, lambda: listener.run_once(STREAM_SECONDS)),
            # The node's health and liquidity for the dashboard and the metrics.
            Job("lightning-node", CHECK_SECONDS, lambda: check(gateway))]
