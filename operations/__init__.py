"""Running Busan Pay for a city: metrics, logs, backups, the source offer, proxies.

`init_operations(app)` wires the web side (`/metrics`, `/source`, request timing, the
trusted-proxy fix) and the `flask db backup|restore` and `flask metrics` commands.
This module itself imports neither Flask nor prometheus_client: `gunicorn.conf.py` and
`app.create_app` call `prepare_multiprocess` before the first metric exists.
"""
from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(instance_path: str) -> str:
    return os.environ.get(MULTIPROC_ENV) or str(Path(instance_path) / "prometheus")


def prepare_multiprocess(instance_path: str, *, enabled: bool) -> str | None:
    """Point prometheus_client at the instance folder's multiprocess directory (unless
    disabled, as in the tests, which run many apps in one process)."""
    if not enabled and MULTIPROC_ENV not in os.environ:
        return None
    path = multiprocess_dir(instance_path)
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    return path


def clean_multiprocess_dir(path: str) -> int:
    """Remove the metric files of earlier runs (once, when the web server starts)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    removed = 0
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


#: Environment variables whose values never appear in a log line.
SECRET_VARIABLES = ("BUSANPAY_SECRET_KEY", "SECRET_KEY", "BUSANPAY_METRICS_TOKEN",
                    "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "BUSANPAY_EXCHANGE_ACCESS_KEY",
                    "BUSANPAY_EXCHANGE_SECRET_KEY")


def secrets_of(settings) -> list[str]:
    from sqlalchemy.engine import make_url

    found = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    found += [value for name, value in os.environ.items()  # each venue's keys
              if name.startswith("BUSANPAY_VENUE_") and name.endswith("_KEY")]
    found += [settings.secret_key, settings.metrics_token]
    try:
        found.append(make_url(settings.database_url).password or "")
    except Exception:  # a malformed URL fails elsewhere, loudly
        pass
    return [s for s in found if s]


def init_operations(app) -> None:
    from operations.checks import jobs
    from operations.logs import configure_logging
    from operations.web import init_web

    settings = app.extensions["busanpay"].settings
    if not app.testing:  # tests capture logs themselves (and install this handler to test it)
        configure_logging(settings.log_format, secrets_of(settings))
    init_web(app)
    from operations.proxies import install

    install(app, settings.trusted_proxies)  # X-Forwarded-* only from BUSANPAY_TRUSTED_PROXIES
    gateway = app.extensions["busanpay"]
    gateway.extras.setdefault("jobs", []).extend(jobs(gateway))  # the periodic ledger check
