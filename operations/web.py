"""The web side of operations: `/metrics` behind a bearer token and request timing.

`/metrics` answers only with `Authorization: Bearer $BUSANPAY_METRICS_TOKEN` (401
otherwise); with no token configured it does not exist (404): metrics name routes,
volumes and exposure, which are not for the public.
"""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, request

bp = Blueprint("operations", __name__)
_STARTED = "busanpay.started"


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


def init_web(app: Flask) -> None:
    app.register_blueprint(bp)
    if app.extensions["busanpay"].settings.metrics_enabled:  # off only to measure its cost
        app.before_request(_start_timer)
        app.after_request(_observe)
