"""Read by gunicorn from the working directory (scripts/start, the systemd unit).

Before the first worker starts, the Prometheus multiprocess directory is emptied: counters
of an earlier run must not add to this one's, and every worker inherits its path. Where
several services of a host share one folder (deploy/: the web instances, workers and the
webhook consumer), `BUSANPAY_METRICS_CLEAN=0` leaves it to busanpay-metrics-dir.service,
which empties it once per boot.
"""
import os
from pathlib import Path

from operations import clean_multiprocess_dir, multiprocess_dir


def on_starting(server):
    if os.environ.get("BUSANPAY_METRICS", "1").strip().lower() in ("0", "false", "no", "off"):
        return  # metrics off (bench/bench_invoice_http.py --only metrics measures their cost)
    instance = os.environ.get("BUSANPAY_INSTANCE") or str(Path(__file__).resolve().parent / "instance")
    path = multiprocess_dir(instance)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if os.environ.get("BUSANPAY_METRICS_CLEAN", "1") == "0":
        server.log.info("prometheus multiprocess dir %s (shared; not emptied)", path)
        return
    removed = clean_multiprocess_dir(path)
    server.log.info("prometheus multiprocess dir %s (%d stale files removed)", path, removed)

# The app logs every request itself (JSON, route template, request id). If an access log is
# asked for too (`--access-logfile -`), it must not print paths or referrers: refund-claim
# tokens travel in paths.
access_log_format = '%(h)s %(t)s "%(m)s" %(s)s %(b)s %(M)sms'
