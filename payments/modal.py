"""`/modal/btcpay.js`: the script shop plugins load for the modal checkout (the path BTCPay
serves it at). The checkout page itself allows framing only by the store's website."""
from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("modal", __name__)


@bp.get("/modal/btcpay.js")
def modal_script():
    response = send_from_directory(current_app.static_folder, "modal/btcpay.js",
                                   mimetype="text/javascript", max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Access-Control-Allow-Origin"] = "*"  # any shop page may load it
    return response
