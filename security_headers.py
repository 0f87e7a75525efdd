"""Headers every response gets: no framing by other sites (clickjacking), HSTS when the
public URL is https, and the session cookie's flags.

A page that a shop's website may frame (the checkout page, later) opts out with
``@allow_framing`` on its view, or ``response.allow_framing = True`` for one response.
"""
from __future__ import annotations

from flask import Flask, Response, current_app, request

HSTS = "max-age=31536000"


def allow_framing(view):
    """Let other sites frame this view's pages (no frame-ancestors/X-Frame-Options)."""
    view.allow_framing = True
    return view


def _framing_allowed(response: Response) -> bool:
    if getattr(response, "allow_framing", False):
        return True
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "allow_framing", False))


def _no_framing(response: Response) -> None:
    """Deny framing unless the page's own CSP already names who may frame it (the checkout
    page lets the store's website show it in the modal): then that choice stands."""
    policy = response.headers.get("Content-Security-Policy", "")
    if "frame-ancestors" not in policy:
        policy = f"{policy.rstrip('; ')}; frame-ancestors 'none'" if policy else \
            "frame-ancestors 'none'"
        response.headers["Content-Security-Policy"] = policy
    if "frame-ancestors 'none'" in policy:
        response.headers.setdefault("X-Frame-Options", "DENY")


def init_security_headers(app: Flask, public_url: str) -> None:
    https = public_url.lower().startswith("https://")
    # Flask defines these keys already (SameSite None), so setdefault would change
    # nothing: set them unless the caller's config chose otherwise.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if https and not app.config.get("SESSION_COOKIE_SECURE"):
        app.config["SESSION_COOKIE_SECURE"] = True

    @app.after_request
    def _security_headers(response: Response) -> Response:
        if not _framing_allowed(response):
            _no_framing(response)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if https:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
