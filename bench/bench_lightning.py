"""Benchmark: from the Lightning node settling an invoice to the invoice's status.json changing.

    .venv/bin/python bench/bench_lightning.py      # --payments 200 --poll 0.02 --listener worker

One command does it all: creates a uniquely named PostgreSQL database, migrates it, creates a
store and --payments invoices through `InvoiceService.create` (each gets a BOLT11 on the demo
Lightning node, BUSANPAY_LIGHTNING=demo), starts the real app (`gunicorn 'app:create_app()'`,
gthread) and the Lightning listener as it runs in production: `--listener worker` a separate
`flask --app app worker` process (the scaled-out topology; the web has
BUSANPAY_INPROCESS_WORKER=0), `--listener inprocess` the embedded default (`wsgi:app` in one
gunicorn worker, which runs the background jobs itself).

Then, one payment at a time: a poller thread asks the invoice's `/i/<id>/status.json` with
If-None-Match every --poll s over one kept-alive connection (0.02 s: the listener's own
latency; 0.25 s: what the POS sees, it polls that often while its QR carries a BOLT11); this
process settles the invoice's BOLT11 on the demo node (`DemoLightningNode.settle`, one
committed transaction: the node's settlement notification, as the stream reports it) and
notes when the commit returned; the poller notes the first answer 200 with a new ETag and
status Settled. Latency = that answer's arrival − the settle's commit (`time.time()`, same
machine). A pause of --gap s (uniformly random up to twice that) separates payments.

Reported: p50/p95/p99/max and how many within 1 s (goal: p95 under 1 s), the machine's load
average before and after, and the other processes' CPU when it started (it waits up to
--quiet-wait s for the machine to go quiet). The database is dropped at the end. Exits 1 on a
missed payment, 2 when p95 is 1 s or more. Results and the machine: bench/README.md
("Lightning: settlement to status.json").
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from bench_status_streams import pct  # noqa: E402  (the same nearest-rank percentile)

GOAL_S = 1.0
BODY = {"amount": "5000", "currency": "KRW", "metadata": {"orderId": "bench-lightning"},
        "checkout": {"speedPolicy": "MediumSpeed", "expirationMinutes": 60}}


class Poller(threading.Thread):
    """One screen on one invoice: status.json with If-None-Match every `every` s until the
    status is Settled; `seen` = the arrival of that answer (time.time())."""

    def __init__(self, port: int, invoice_id: str, every: float):
        super().__init__(daemon=True)
        self.port, self.path, self.every = port, f"/i/{invoice_id}/status.json", every
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.seen: float | None = None
        self.requests = 0
        self.error: str | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        etag = None
        try:
            while not self.stop.is_set():
                headers = {"Accept": "application/json"}
                if etag:
                    headers["If-None-Match"] = etag
                conn.request("GET", self.path, headers=headers)
                answer = conn.getresponse()
                body = answer.read()
                arrived = time.time()
                self.requests += 1
                if answer.status == 200:
                    new = answer.getheader("ETag")
                    if etag is not None and new != etag and \
                            json.loads(body)["status"] == "Settled":
                        self.seen = arrived
                        return
                    etag = new
                    self.ready.set()
                elif answer.status != 304:
                    self.error = f"HTTP {answer.status}"
                    return
                time.sleep(self.every)
        except (OSError, http.client.HTTPException) as err:
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.ready.set()
            conn.close()


def start_server(env: dict, tmp: Path, args):
    """The web app under gunicorn (bench_invoice_http's Server: wait_ready, stop)."""
    from bench_invoice_http import Server, free_port

    server = Server.__new__(Server)
    server.name, server.port = "app", free_port()
    server.url = f"http://127.0.0.1:{server.port}"
    workers = "1" if args.listener == "inprocess" else str(args.workers)
    # wsgi:app is the embedded default: the app plus its background jobs in this process.
    target = "wsgi:app" if args.listener == "inprocess" else "app:create_app()"
    server.cmd = [str(Path(sys.executable).with_name("gunicorn")),
                  "--bind", f"127.0.0.1:{server.port}", "--workers", workers,
                  "--worker-class", "gthread", "--threads", "4", "--keep-alive", "5",
                  "--log-level", "warning", "--worker-tmp-dir", "/dev/shm", target]
    server.log = tmp / "app.log"
    server.proc = subprocess.Popen(server.cmd, cwd=ROOT, env=env, stdout=open(server.log, "wb"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.02,
                        help="status.json poll interval, s (0.25 = the POS with a BOLT11)")
    parser.add_argument("--gap", type=float, default=0.3, help="mean pause between payments, s")
    parser.add_argument("--listener", choices=("worker", "inprocess"), default="worker")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (worker mode)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without database name)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="longest wait for other load below 0.5 cores before measuring, s")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    return run(args)


def run(args) -> int:
    from bench_invoice_http import admin, wait_quiet

    rng = random.Random(args.seed)
    db_name = f"busanpay_bench_ln_{os.getpid()}_{secrets.token_hex(3)}"
    url = f"{args.pg}/{db_name}".replace("postgresql://", "postgresql+psycopg://", 1)
    tmp = Path(tempfile.mkdtemp(prefix="busanpay-bench-ln-"))
    server = worker = gateway = None
    admin(args.pg, f'CREATE DATABASE "{db_name}"')
    try:
        from migrations.commands import upgrade

        upgrade(url)
        env = dict(os.environ, DATABASE_URL=url, BUSANPAY_LIGHTNING="demo",
                   BUSANPAY_INPROCESS_WORKER="1" if args.listener == "inprocess" else "0",
                   BUSANPAY_INSTANCE=str(tmp / "instance"), BUSANPAY_RATE_SOURCES="fixed:150000000",
                   BUSANPAY_SECRET_KEY=secrets.token_urlsafe(32), BUSANPAY_AUTO_SETTLEMENT="0",
                   BUSANPAY_LEDGER_CHECK_SECONDS="0", BCL_DATA_DIR=str(tmp / "bitcoinlib"),
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("BUSANPAY_PUBLIC_URL", None)

        # -- invoices, each with its BOLT11, through the services ------------------------
        from gateway import build_gateway
        from lightning.invoices import current_lightning
        from merchants.service import create_store
        from payments.invoice_request import parse_invoice_request
        from settings import Settings

        settings = Settings.from_env(env, instance_path=str(tmp / "instance"))
        gateway = build_gateway(settings)
        gateway.rates.poll_and_store()
        with gateway.db.write() as session:
            store_id = create_store(session, name="Bench Lightning").id
        request = parse_invoice_request(json.loads(json.dumps(BODY), parse_float=Decimal),
                                        max_krw=10 ** 12)
        ids = [gateway.invoices.create(store_id, request)[0].id for _ in range(args.payments)]
        bolt11s = {i: current_lightning(gateway, i).bolt11 for i in ids}
        assert all(bolt11s.values()), "an invoice got no BOLT11"
        print(f"{len(ids)} invoices with a BOLT11 each", flush=True)

        # -- the app and the listener --------------------------------------------------------
        server = start_server(env, tmp, args)
        server.wait_ready(f"/i/{ids[0]}/status.json")
        if args.listener == "worker":
            worker = subprocess.Popen([str(Path(sys.executable).with_name("flask")), "--app",
                                       "app", "worker"], cwd=ROOT, env=env,
                                      stdout=open(tmp / "worker.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(3.0)  # the listener follows the stream (and warms up on a first run)
        other = wait_quiet(0.5, args.quiet_wait)
        load_before = os.getloadavg()

        # -- one payment at a time -------------------------------------------------------------
        latencies, missed, settle_ms, requests = [], [], [], 0
        for invoice_id in ids:
            poller = Poller(server.port, invoice_id, args.poll)
            poller.start()
            poller.ready.wait(10)
            time.sleep(rng.uniform(0, 2 * args.gap))  # the payment comes at any moment
            began = time.time()
            gateway.lightning.settle(bolt11s[invoice_id])
            committed = time.time()
            settle_ms.append((committed - began) * 1000)
            poller.join(10)
            poller.stop.set()
            requests += poller.requests
            if poller.seen is None:
                missed.append((invoice_id, poller.error or "not seen in 10 s"))
            else:
                latencies.append(poller.seen - committed)
        load_after = os.getloadavg()
        return report(args, latencies, missed, settle_ms, requests, other, load_before,
                      load_after)
    finally:
        for proc in (worker,):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        if server is not None:
            server.stop()
        if gateway is not None:
            gateway.close()
        admin(args.pg, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def report(args, latencies, missed, settle_ms, requests, other, load_before, load_after) -> int:
    import psycopg

    with psycopg.connect(args.pg + "/postgres") as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    within = sum(1 for v in latencies if v < GOAL_S)
    result = {
        "payments": args.payments, "poll_s": args.poll, "listener": args.listener,
        "seen": len(latencies), "missed": missed,
        "p50_s": round(pct(latencies, 50), 3), "p95_s": round(pct(latencies, 95), 3),
        "p99_s": round(pct(latencies, 99), 3),
        "max_s": round(max(latencies, default=float("nan")), 3),
        "within_1s": f"{within}/{len(latencies)}",
        "settle_commit_ms_p50": round(pct(settle_ms, 50), 1),
        "status_requests": requests,
        "other_load_cores_at_start": round(other, 2),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}, PostgreSQL {pg_version}",
    }
    print(json.dumps(result, indent=2))
    if missed:
        return 1
    return 2 if pct(latencies, 95) >= GOAL_S else 0


if __name__ == "__main__":
    sys.exit(main())
