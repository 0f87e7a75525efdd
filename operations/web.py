"""The web side of operations: `/metrics` behind a bearer token and request timing.

`/metrics` answers only with `Authorization: Bearer $BUSANPAY_METRICS_TOKEN` (401
otherwise); with no token configured it does not exist (404): metrics name routes,
volumes and exposure, which are not for the public.
"""
from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, current_app, g, redirect, request

bp = Blueprint("operations", __name__)
_STARTED = "busanpay.started"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("busanpay.access")


@bp.get("/metrics")
def metrics():
    from operations.metrics import render

    gateway = current_app.extensions["busanpay"]
    token = gateway.settings.metrics_token
    if not token:
        return Response("Not Found\n", status=404, mimetype="text/plain")
    offered = request.headers.get("Authorization", "")
    scheme, _, value = offered.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        return Response("metrics need a bearer token\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = render(gateway)
    return Response(body, mimetype=None, content_type=content_type,
                    headers={"Cache-Control": "no-store"})


@bp.get("/source")
def source():
    """The AGPL source offer: the running code as a tarball (or the configured URL)."""
    configured = current_app.extensions["busanpay"].settings.source_url
    if configured:
        return redirect(configured)
    body = current_app.extensions["busanpay_source"].tarball()
    return Response(body, mimetype="application/gzip", headers={
        "Content-Disposition": "attachment; filename=busanpay-source.tar.gz",
        "Cache-Control": "public, max-age=3600"})


def _start_timer() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _observe(response):
    from operations.metrics import HTTP_DURATION

    started = request.environ.get(_STARTED)
    if started is not None:
        rule = request.url_rule
        # The route template, never the path: ids in paths would make labels unbounded.
        HTTP_DURATION.labels(route=rule.rule if rule is not None else "(unmatched)",
                             method=request.method if rule is not None else "-",
                             status=str(response.status_code)).observe(
            time.perf_counter() - started)
    return response


def _request_id() -> None:
    # A proxy's X-Request-Id is kept (so one id follows the request through nginx) when it
    # is a plain token; anything else gets a fresh id.
    offered = request.headers.get("X-Request-Id", "")
    g.request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex


def _log_request(response):
    started = request.environ.get(_STARTED)
    api_key = getattr(g, "api_key", None)
    access_log.info("request", extra={
        "method": request.method, "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
        "client": request.remote_addr,
        "store_id": (request.view_args or {}).get("store_id") or getattr(api_key, "store_id",
                                                                         None)})
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def init_web(app: Flask) -> None:
    from operations.source import SourceOffer

    app.register_blueprint(bp)
    app.extensions["busanpay_source"] = SourceOffer()
    app.config["SOURCE_URL"] = app.extensions["busanpay"].settings.source_url or "/source"
    app.before_request(_request_id)
    app.after_request(_log_request)
    app.before_request(_start_timer)
    if app.extensions["busanpay"].settings.metrics_enabled:  # off only to measure its cost
        app.after_request(_observe)
