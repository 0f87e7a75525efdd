"""Busan Pay: the application factory and entry point.

`flask --app app run` or `python app.py` on the embedded default; gunicorn
`'app:create_app()'` when scaled out.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, abort, jsonify, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from settings import Settings
from untrusted import has_nul

log = logging.getLogger("busanpay")


def create_app(config: dict | None = None) -> Flask:
    config = dict(config or {})
    root = Path(__file__).resolve().parent
    instance = config.pop("instance_path", None) or os.environ.get("BUSANPAY_INSTANCE") or \
        str(root / "instance")
    from operations import prepare_multiprocess

    prepare_multiprocess(instance, enabled=not config.get("TESTING"))  # before any metric
    app = Flask(__name__, instance_path=instance, instance_relative_config=True,
                template_folder="templates", static_folder="static")
    settings = Settings.from_env(instance_path=app.instance_path).with_overrides(config)

    from gateway import build_gateway

    gateway = build_gateway(settings, clock=config.get("clock") or _default_clock(),
                            rates=config.get("rates"))
    settings = gateway.settings
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_url,
        RATELIMIT_HEADERS_ENABLED=True,
        SOURCE_URL="/source",  # AGPL: the footer links the source (BUSANPAY_SOURCE_URL or /source)
    )
    app.config.update({k: v for k, v in config.items() if k.isupper()})
    app.extensions["busanpay"] = gateway
    from security_headers import init_security_headers

    init_security_headers(app, settings.public_url)  # no framing, HSTS, cookie flags
    app.url_map.strict_slashes = False  # clients send paths with and without a trailing slash
    app.url_map.converters["int"] = AsciiIntegerConverter

    from operations import init_operations

    init_operations(app)  # /metrics, request timing (first: it times what the limiter refuses)
    from ratelimits import limiter

    limiter.init_app(app)

    from payments.api import bp as api_bp
    app.register_blueprint(api_bp)
    from chain.server_info import bp as server_info_bp
    from payments.greenfield_stores import bp as stores_bp

    app.register_blueprint(stores_bp)  # /api/v1/stores…, /api/v1/api-keys/current
    app.register_blueprint(server_info_bp)  # /api/v1/server/info, /api/v1/health
    from i18n import init_babel
    from payments.checkout import bp as checkout_bp

    app.register_blueprint(checkout_bp)  # the tourist's page: /i/<invoice_id>
    from payments.modal import bp as modal_bp

    app.register_blueprint(modal_bp)  # /modal/btcpay.js for shops' modal checkout
    init_babel(app)
    from accounts.web import init_accounts

    init_accounts(app)  # /login, /pos/login, /logout; Flask-Login sessions
    from backoffice import init_backoffice
    from pos import init_pos

    init_pos(app)  # /pos: the cashier's POS
    from dashboard import init_dashboard

    init_dashboard(app)  # /city: the city's settlement dashboard
    from settlement.refund_pages import init_refund_pages

    init_refund_pages(app)  # /i/<id>/refund, /refund/<token>, /city/refunds
    init_backoffice(app)  # /merchant: the owner's back office
    from backoffice.authorize_page import init_authorize_page

    init_authorize_page(app)  # /api-keys/authorize: a shop asks the owner for a key
    csrf = CSRFProtect(app)  # every HTML form; the token-authenticated API is exempt
    csrf.exempt(api_bp)
    csrf.exempt(stores_bp)
    csrf.exempt(server_info_bp)
    app.extensions["busanpay_csrf"] = csrf
    from webhooks import init_webhooks

    init_webhooks(app)  # webhook API (CSRF-exempt), delivery job, `flask webhooks …`
    from payments.openapi import bp as openapi_bp

    app.register_blueprint(openapi_bp)
    from front_door import bp as front_bp

    app.register_blueprint(front_bp)  # the landing page at /, /favicon.ico
    _register_errors(app)
    _refuse_nul_bytes(app)
    from cli import register_cli

    register_cli(app)
    from chain.cli import register as register_chain_cli
    from chain.demo_pages import register as register_demo_pages

    register_chain_cli(app)  # watcher once, worker, demo pay/mine/reorg/double-spend
    register_demo_pages(app)  # /i/<id>/demo on the demo chain
    from lightning.cli import register as register_lightning_cli

    register_lightning_cli(app)  # lightning status|listen, demo pay-lightning
    from settlement.install import install as install_settlement

    install_settlement(app)  # settlement/ledger/refund CLI, /stripe/webhook, ledger jobs
    from onboarding import init_onboarding

    init_onboarding(app)  # /apply, /invite, payout accounts with four eyes, city review
    from settlement.pull_payment_api import bp as pull_payments_bp

    app.register_blueprint(pull_payments_bp)  # Greenfield refunds → refund claims
    csrf.exempt(pull_payments_bp)
    return app


class AsciiIntegerConverter(IntegerConverter):
    """`<int:…>` with ASCII digits only (werkzeug's \\d takes every script's digits)."""

    regex = r"[0-9]+"


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _default_clock():
    from database import utc_now

    return utc_now


def _refuse_nul_bytes(app: Flask) -> None:
    """PostgreSQL text cannot hold NUL: refuse it at the door (400), not as a 500 in a query.
    Paths, query and form fields, headers; JSON bodies are checked by their decoder."""

    @app.before_request
    def _refuse_nul():
        pairs = [request.args, request.form] if request.mimetype in FORM_TYPES else [request.args]
        fields = (request.path, *request.headers.values(),
                  *(text for multi in pairs for key, values in multi.lists()
                    for text in (key, *values)))
        if any(has_nul(text) for text in fields):
            abort(400, description=gettext("The request contains a NUL character (U+0000), "
                                           "which no field accepts."))


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if not request.path.startswith("/api/"):
            from front_door import error_response, wants_html

            # A browser gets a page in its language with a way home; scripts get Werkzeug's.
            return error_response(err) if (err.code or 500) >= 400 and wants_html() else err
        codes = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large",
                 429: "rate-limited", 400: "bad-request"}
        message = err.description or err.name
        if err.code == 413:
            message = f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        response = jsonify({"code": codes.get(err.code, "error"), "message": message})
        response.status_code = err.code or 500
        for name, value in err.get_headers():  # a 405's Allow, for one
            if name.lower() != "content-type":
                response.headers[name] = value
        if err.code == 429:
            retry = getattr(err, "retry_after", None)
            if retry:
                response.headers["Retry-After"] = str(retry)
        return response

    @app.errorhandler(DBAPIError)
    def _database_lost(err: DBAPIError):
        # Pooled connections are not pinged before use: after a database restart the
        # first request on a dead connection lands here, and SQLAlchemy has already
        # replaced the pool, so a retry succeeds. A connection lost mid-commit leaves
        # the outcome unknown: an Idempotency-Key makes that retry safe.
        if not err.connection_invalidated:
            raise err
        app.logger.warning("database connection lost: %s", type(err.orig).__name__)
        message = "The database connection was lost; retry the request"
        if request.path.startswith("/api/"):
            response = jsonify({"code": "database-unavailable", "message": message})
        else:
            response = app.response_class(message, mimetype="text/plain")
        response.status_code = 503
        return response


def start_background_work(app: Flask):
    """On the embedded default, run the periodic jobs as threads of this process."""
    from background import Scheduler, jobs_for

    gateway = app.extensions["busanpay"]
    if not gateway.settings.inprocess_worker:
        return None
    scheduler = Scheduler(jobs_for(gateway))
    scheduler.start()
    app.extensions["busanpay_scheduler"] = scheduler
    return scheduler


if __name__ == "__main__":  # pragma: no cover
    application = create_app()
    start_background_work(application)
    application.run(threaded=True)
