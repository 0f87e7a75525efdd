"""Greenfield's `GET /api/v1/server/info` and `GET /api/v1/health`, from the watcher's
real state (the shared state row, so any web process answers the same).

`synchronized` is true only while the watcher's last pass succeeded recently and it has
processed every block up to the backend's tip: a shop plugin then knows invoices will be
seen. While the chain backend is down, stale or behind, it is false.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from merchants.api_auth import require_permission

# The Greenfield version this API follows. Shop plugins compare it (the WooCommerce plugin
# needs at least 1.7.6 for refunds); the invoice payment-method fields are 2.0's.
GREENFIELD_VERSION = "2.0.0"
SUPPORTED_PAYMENT_METHODS = ("BTC-CHAIN",)
LIGHTNING_PAYMENT_METHOD = "BTC-LN"  # listed when a Lightning node is configured

bp = Blueprint("server_info", __name__, url_prefix="/api/v1")


def sync_state(gateway) -> dict:
    """The watcher's view as Greenfield's sync status (pure of Flask)."""
    from chain.watcher import health

    state = health(gateway)
    tip, processed = state.get("tipHeight"), state.get("processedHeight")
    synced = state["status"] == "ok" and tip is not None and processed == tip
    return {"synchronized": synced, "status": {
        "paymentMethodId": "BTC-CHAIN",
        "nodeInformation": None if tip is None else {
            "headers": tip, "blocks": tip, "verificationProgress": 1.0},
        "chainHeight": tip if tip is not None else 0,
        "syncHeight": processed,
        "available": synced,
    }}


def server_info_json(gateway) -> dict:
    state = sync_state(gateway)
    methods = list(SUPPORTED_PAYMENT_METHODS)
    if gateway.lightning is not None:
        methods.append(LIGHTNING_PAYMENT_METHOD)
    return {"version": GREENFIELD_VERSION, "onion": "",
            "supportedPaymentMethods": methods,
            "fullySynched": state["synchronized"], "syncStatus": [state["status"]]}


@bp.get("/server/info")
@require_permission(None)
def server_info():
    return jsonify(server_info_json(current_app.extensions["busanpay"]))


@bp.get("/health")
def health():
    """No authentication, as in Greenfield: a load balancer or a plugin may ask."""
    state = sync_state(current_app.extensions["busanpay"])
    return jsonify({"synchronized": state["synchronized"]})
