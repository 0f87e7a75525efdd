"""The front door: the landing page at ``/``, ``/favicon.ico`` and the people's error pages.

The landing page says what Busan Pay is and links every screen (POS, back office, city
dashboard, the API's OpenAPI document) in the four languages. On the embedded default it adds
a short "try it" box; the demo logins themselves are only ever in ``make start``'s output.

Error pages: a browser asking for an HTML page gets a styled page in its language with a way
home (``error_response``); the API under ``/api/`` keeps its JSON errors (app.py).
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template, request, send_from_directory
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from i18n import HTML_LANG, current_language

bp = Blueprint("front", __name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
# (title, what to do) per status; anything else is told as the 500 page.
ERROR_TEXTS = {
    400: (_l("The request was not understood"),
          _l("Something in the address or the form was not right. Go back and try again.")),
    403: (_l("You cannot open this page"),
          _l("Your account does not have the right to see this page. Sign in with another "
             "account, or go back to the start.")),
    404: (_l("Page not found"),
          _l("There is no page at this address. Check the link, or start again from the front "
             "page.")),
    405: (_l("This page cannot be used that way"),
          _l("The page exists, but not for this kind of request. Open it from a link or a "
             "button instead.")),
    413: (_l("Too much data"),
          _l("What was sent is larger than this service accepts.")),
    429: (_l("Too many attempts"),
          _l("Please wait a moment before you try again.")),
    "csrf": (_l("The form expired"),
             _l("For your safety a form works only for a while. Go back, reload the page and "
                "send it again.")),
    500: (_l("Something went wrong on our side"),
          _l("The error was recorded. Please try again in a moment.")),
}


def _gateway():
    return current_app.extensions["busanpay"]


def is_demo() -> bool:
    """The embedded default: the offline demo chain on a test network."""
    settings = _gateway().settings
    return settings.chain == "demo" and settings.network != "bitcoin"


def _secure(response, status: int = 200):
    response.status_code = status
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers["Content-Language"] = HTML_LANG.get(current_language(), "ko")
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


@bp.get("/")
def landing():
    body = render_template("front/landing.html", demo=is_demo())
    response = current_app.make_response(body)
    response.headers["Cache-Control"] = "no-cache"
    return _secure(response)


@bp.get("/favicon.ico")
def favicon():
    response = send_from_directory(STATIC, "favicon.ico", mimetype="image/vnd.microsoft.icon",
                                   max_age=7 * 24 * 3600)
    return response


def wants_html() -> bool:
    """A browser's page request (not the API, not a script's JSON call)."""
    if request.path.startswith("/api/") or request.path.endswith(".json"):
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "text/html" or not request.accept_mimetypes


def error_response(err: HTTPException):
    """A styled page for `err` in the reader's language, with the error's own headers kept
    (Allow on 405, Retry-After on 429)."""
    code = err.code or 500
    key = "csrf" if isinstance(err, CSRFError) else code
    title, advice = ERROR_TEXTS.get(key) or ERROR_TEXTS[400 if code < 500 else 500]
    # A route's own message (abort(400, "…")) says what was wrong; Werkzeug's stock text
    # for the code adds nothing to the page's title and advice.
    detail = err.description if err.description != type(err).description else None
    body = render_template("front/error.html", code=code, title=title, advice=advice,
                           detail=detail)
    response = current_app.make_response(body)
    for name, value in err.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    if code == 429:
        retry = getattr(err, "retry_after", None)
        if retry:
            response.headers["Retry-After"] = str(retry)
    response.headers["Cache-Control"] = "no-store"
    return _secure(response, code)
