"""Rate limits (Flask-Limiter): per API key on invoice creation, per client address on login.

Login limits never key on anything the client chooses (a header, a cookie): a made-up
`Authorization` header would otherwise give every guess a fresh bucket. The client address
is the connection's, or the one our own reverse proxy put in X-Forwarded-For when the
request comes from an address in `BUSANPAY_TRUSTED_PROXIES` (operations/proxies.py);
accounts/web.py gives the login routes that key.

One module-level limiter so routes can be decorated where they are defined; each app
binds it in create_app with its own storage (memory, or Redis when scaled out).
"""
from __future__ import annotations

import hashlib

from flask import current_app, request
from flask_limiter import Limiter


def limit_key() -> str:
    """Per API key (hashed) so one shop cannot starve another; per address otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "token" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "ip:" + (request.remote_addr or "?")


def invoice_limit() -> str:
    return current_app.extensions["busanpay"].settings.invoice_rate_limit


def login_limit() -> str:
    return current_app.extensions["busanpay"].settings.login_rate_limit


limiter = Limiter(key_func=limit_key, default_limits=[], headers_enabled=True)
