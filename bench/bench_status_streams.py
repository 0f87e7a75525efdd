"""Benchmark: 500 open POS/checkout screens polling status.json, the real app under gunicorn.

    .venv/bin/python bench/bench_status_streams.py     # --screens 500 --duration 60 --changes 100

One command does it all: creates a uniquely named PostgreSQL database, migrates it
(`migrations.commands.upgrade`), creates a store (`merchants.service.create_store`) and
--screens invoices through `InvoiceService.create`, starts the real app
(`gunicorn 'app:create_app()'`, BUSANPAY_INPROCESS_WORKER=0, gthread) and a separate load
process (asyncio + aiohttp) in which every screen does what `static/pos/pos.js` does:
one plain GET of its invoice's `/i/<id>/status.json`, then a poll with `If-None-Match`
--interval s after each answer. The POS polls every 1.0 s; the checkout page every 1.5 s:
1.0 s is the harder case. After all screens have their first ETag, the --duration s
measurement window starts; in it, at --changes uniformly random moments, this process
changes a random, so-far unchanged invoice through `InvoiceService.mark_status` (Settled or
Invalid: one transaction bumping status and version, as the watcher's writes do) and
notes the moment the commit returned. The load process notes, per invoice, when a poll
first answered 200 with a new ETag. Detection latency = that moment − the commit's return
(both `time.time()` on the same machine).

Reported: detection latency p50/p95/p99/max (goal: every change within 2 s), requests/s
served, the 304 share, the server's request latency (gunicorn access log, %(D)s) and the
client's (send → answer, includes queueing in the kernel and gunicorn), CPU (gunicorn,
PostgreSQL, load generator, whole machine) and the load average. The database is dropped
at the end. Exits 1 on errors or missed detections, 2 when the 2 s goal is missed.
Results and the machine live in bench/README.md ("Live status: 500 open screens").
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

GOAL_S = 2.0
BODY = {"amount": "15000", "currency": "KRW", "metadata": {"orderId": "bench-stream"},
        "checkout": {"speedPolicy": "MediumSpeed", "expirationMinutes": 60}}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


# -- the load process ------------------------------------------------------------------

async def _screen(session, url: str, invoice_id: str, interval: float, state: dict, rec: dict):
    """One open screen: a first GET, then If-None-Match polls `interval` s after each answer."""
    import aiohttp

    path = f"{url}/i/{invoice_id}/status.json"
    etag = None
    await asyncio.sleep(random.uniform(0, interval))  # screens were opened at random moments
    while not state["stop"]:
        headers = {"Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        sent = time.time()
        try:
            async with session.get(path, headers=headers) as response:
                status = response.status
                got = time.time()
                if status == 200:
                    data = await response.json()
                    new = response.headers.get("ETag")
                    if etag is not None and new != etag and state["measuring"]:
                        rec["seen"].setdefault(invoice_id, []).append(
                            (got, data["status"], data["additionalStatus"], data["version"]))
                    etag = new
                else:
                    await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            got, status = time.time(), f"error:{type(err).__name__}"
        if state["measuring"]:
            rec["statuses"][str(status)] = rec["statuses"].get(str(status), 0) + 1
            rec["latency"].append(got - sent)
        if etag is not None:
            state["ready"].add(invoice_id)
        wake = time.monotonic() + interval
        await asyncio.sleep(interval)
        rec["late"].append(time.monotonic() - wake)  # event-loop lag of this generator


async def _load(args) -> dict:
    import aiohttp

    ids = json.loads(Path(args.ids).read_text())
    state = {"stop": False, "measuring": False, "ready": set()}
    rec = {"statuses": {}, "latency": [], "seen": {}, "late": []}
    timeout = aiohttp.ClientTimeout(total=30)
    # one connection per screen, kept alive, as one browser/tablet per screen would
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
                for _ in ids]
    tasks = [asyncio.create_task(_screen(s, args.url, i, args.interval, state, rec))
             for s, i in zip(sessions, ids)]
    deadline = time.monotonic() + 120
    while len(state["ready"]) < len(ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(state['ready'])} of {len(ids)} screens got an ETag")
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.interval * 2)  # every screen is in its polling rhythm
    rec["late"].clear()
    state["measuring"] = True
    start = time.time()
    print(f"READY {start!r}", flush=True)
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    end = time.time()
    print(f"DONE {end!r}", flush=True)
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in sessions:
        await s.close()
    lat = rec["latency"]
    return {"start": start, "end": end, "seconds": end - start, "statuses": rec["statuses"],
            "requests": len(lat), "client_p50_ms": pct(lat, 50) * 1000,
            "client_p95_ms": pct(lat, 95) * 1000, "client_p99_ms": pct(lat, 99) * 1000,
            "client_max_ms": max(lat) * 1000 if lat else float("nan"),
            "loop_lag_p99_ms": pct(rec["late"], 99) * 1000,
            "loop_lag_max_ms": max(rec["late"], default=0.0) * 1000, "seen": rec["seen"]}


def load_main(args) -> int:
    result = asyncio.run(_load(args))
    Path(args.out).write_text(json.dumps(result))
    return 0


# -- the benchmark ---------------------------------------------------------------------

def server_latencies(log: Path, offset: int, end: int) -> dict:
    """Status counts and request times (ms) from gunicorn's access log lines written in the
    window, bytes offset..end (format '%(s)s %(D)s': status, request time in µs)."""
    statuses: dict[str, int] = {}
    times = []
    with open(log, "rb") as fh:
        fh.seek(offset)
        for line in fh.read(end - offset).splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue
            statuses[parts[0].decode()] = statuses.get(parts[0].decode(), 0) + 1
            times.append(int(parts[1]) / 1000)
    return {"statuses": statuses, "n": len(times), "p50_ms": pct(times, 50),
            "p95_ms": pct(times, 95), "p99_ms": pct(times, 99), "max_ms": max(times, default=0)}


def stream_server(env: dict, tmp: Path, args, access: Path):
    """bench_invoice_http's Server (wait_ready, stop), started with this benchmark's flags.

    2 workers = one Python process per core (the GIL lets one process use one core);
    gthread keeps every idle keep-alive connection of a worker in one poller (no thread
    per open screen) and hands a readable one to the worker's small thread pool, whose
    threads overlap the PostgreSQL round trips; 4 threads per worker are enough for
    requests of a few ms and keep the GIL contention low. --keep-alive 5 s outlives the
    1–1.5 s poll gap, so screens keep their connection as browsers do."""
    from bench_invoice_http import Server, free_port

    server = Server.__new__(Server)
    server.name, server.port = "app", free_port()
    server.url = f"http://127.0.0.1:{server.port}"
    server.cmd = [str(Path(sys.executable).with_name("gunicorn")),
                  "--bind", f"127.0.0.1:{server.port}", "--workers", str(args.workers),
                  "--worker-class", "gthread", "--threads", str(args.threads),
                  "--keep-alive", str(args.keep_alive), "--backlog", "2048",
                  "--log-level", "warning", "--worker-tmp-dir", "/dev/shm",
                  "--access-logfile", str(access), "--access-logformat", "%(s)s %(D)s",
                  "app:create_app()"]
    server.log = tmp / "app.log"
    server.proc = subprocess.Popen(server.cmd, cwd=ROOT, env=env, stdout=open(server.log, "wb"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", type=int, default=500, help="open screens = invoices")
    parser.add_argument("--duration", type=float, default=60.0, help="measurement window, s")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval after an answer, s")
    parser.add_argument("--changes", type=int, default=100, help="invoice changes in the window")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--keep-alive", type=int, default=5, help="gunicorn --keep-alive, s")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (without database name)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="longest wait for other load below 0.5 cores before measuring, s")
    # internal: the load process
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        return load_main(args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    return run(args)


def run(args) -> int:
    import psycopg
    from bench_invoice_http import CpuMeter, admin, wait_quiet

    rng = random.Random(args.seed)
    db_name = f"busanpay_bench_streams_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = f"{args.pg}/{db_name}"
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    tmp = Path(tempfile.mkdtemp(prefix="busanpay-bench-streams-"))
    server = loadgen = gateway = None
    admin(args.pg, f'CREATE DATABASE "{db_name}"')
    try:
        from migrations.commands import upgrade

        upgrade(url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
        env = dict(os.environ, DATABASE_URL=url, BUSANPAY_INPROCESS_WORKER="0",
                   BUSANPAY_INSTANCE=str(tmp / "instance"),
                   BUSANPAY_SECRET_KEY=secrets.token_urlsafe(32), PYTHONDONTWRITEBYTECODE="1")
        env.pop("BUSANPAY_PUBLIC_URL", None)

        # -- data, through the services ------------------------------------------------
        from gateway import build_gateway
        from merchants.service import create_store
        from payments.invoice_request import parse_invoice_request
        from settings import Settings

        settings = Settings.from_env(env, instance_path=str(tmp / "instance"))
        gateway = build_gateway(settings)
        gateway.rates.poll_and_store()
        with gateway.db.write() as session:
            store_id = create_store(session, name="Bench streams").id
        request = parse_invoice_request(json.loads(json.dumps(BODY), parse_float=Decimal),
                                        max_krw=10 ** 12)
        t = time.monotonic()
        ids = [gateway.invoices.create(store_id, request)[0].id for _ in range(args.screens)]
        print(f"{len(ids)} invoices created in {time.monotonic() - t:.1f} s", flush=True)
        ids_file = tmp / "ids.json"
        ids_file.write_text(json.dumps(ids))

        # -- the server ------------------------------------------------------------------
        # gthread: each worker keeps every idle keep-alive connection in one poller (no
        # thread per screen) and hands a readable one to its thread pool.
        access = tmp / "access.log"
        server = stream_server(env, tmp, args, access)
        server.wait_ready(f"/i/{ids[0]}/status.json")
        print("gunicorn: " + " ".join(server.cmd[1:]), flush=True)

        # -- load ------------------------------------------------------------------------
        other = wait_quiet(0.5, args.quiet_wait)
        load_before = os.getloadavg()
        out_file = tmp / "load.json"
        loadgen = subprocess.Popen(
            [sys.executable, __file__, "--load", "--url", server.url, "--ids", str(ids_file),
             "--duration", str(args.duration), "--interval", str(args.interval),
             "--out", str(out_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = loadgen.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"load process did not start: {line!r}")
        start = float(line.split()[1])
        meter = CpuMeter({"app": server.proc.pid, "loadgen": loadgen.pid}, dsn)
        meter.start()
        offset = access.stat().st_size

        # -- the changes -----------------------------------------------------------------
        moments = sorted(rng.uniform(1.0, args.duration - 3.0) for _ in range(args.changes))
        chosen = rng.sample(ids, args.changes)
        changes = []
        for moment, invoice_id in zip(moments, chosen):
            delay = start + moment - time.time()
            if delay > 0:
                time.sleep(delay)
            status = rng.choice(("Settled", "Invalid"))
            began = time.time()
            invoice = gateway.invoices.mark_status(store_id, invoice_id, status)
            committed = time.time()
            changes.append({"id": invoice_id, "status": status, "version": invoice.version,
                            "began": began, "committed": committed})
        delay = start + args.duration - time.time()
        if delay > 0:
            time.sleep(delay)
        cpu = meter.stop()
        end_offset = access.stat().st_size
        load_after = os.getloadavg()
        done = loadgen.stdout.readline()
        loadgen.wait(120)
        if loadgen.returncode:
            raise RuntimeError(f"load process failed ({loadgen.returncode})")
        result = json.loads(out_file.read_text())
        served = server_latencies(access, offset, end_offset)

        # -- detection latency --------------------------------------------------------------
        detect, missed = [], []
        for change in changes:
            seen = [s for s in result["seen"].get(change["id"], [])
                    if s[1] == change["status"] and s[3] >= change["version"]]
            if not seen:
                missed.append(change["id"])
                continue
            detect.append(min(s[0] for s in seen) - change["committed"])
        writes = [(c["committed"] - c["began"]) * 1000 for c in changes]
        return report(args, result, served, cpu, detect, missed, writes, other,
                      load_before, load_after, pg_version, server, done)
    finally:
        if loadgen is not None and loadgen.poll() is None:
            loadgen.terminate()
            loadgen.wait(20)
        if server is not None:
            server.stop()
        if gateway is not None:
            gateway.db.dispose()
        admin(args.pg, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def report(args, result, served, cpu, detect, missed, writes, other, load_before, load_after,
           pg_version, server, done) -> int:
    from importlib.metadata import version
    from bench_invoice_http import cpu_model

    seconds = result["seconds"]
    statuses = result["statuses"]
    n = result["requests"]
    errors = sum(v for k, v in statuses.items() if k not in ("200", "304"))
    share304 = statuses.get("304", 0) / n if n else 0.0
    print()
    print(f"Machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
          f"PostgreSQL {pg_version}, gunicorn {version('gunicorn')}, Flask {version('flask')}, "
          f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}, "
          f"aiohttp {version('aiohttp')}")
    print(f"load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after {'/'.join(f'{x:.2f}' for x in load_after)}; other load before start "
          f"{other:.2f} cores")
    print(f"gunicorn --workers {args.workers} -k gthread --threads {args.threads} "
          f"--keep-alive {args.keep_alive}; {args.screens} screens polling every "
          f"{args.interval:g} s after each answer, {seconds:.1f} s window, {len(writes)} changes")
    print()
    print("| what | value |")
    print("|---|---:|")
    print(f"| detection latency p50 / p95 / p99 / max (s) | {pct(detect, 50):.2f} / "
          f"{pct(detect, 95):.2f} / {pct(detect, 99):.2f} / {max(detect, default=float('nan')):.2f} |")
    print(f"| changes detected / within {GOAL_S:g} s | {len(detect)}/{len(writes)} / "
          f"{sum(d <= GOAL_S for d in detect)} |")
    print(f"| mark_status transaction p50 / max (ms) | {statistics.median(writes):.1f} / "
          f"{max(writes):.1f} |")
    print(f"| requests served (req/s) | {n / seconds:,.0f} |")
    print(f"| 304 share | {share304 * 100:.1f} % |")
    print(f"| errors / non-200-304 | {errors} ({json.dumps(statuses)}) |")
    print(f"| server request time p50 / p95 / p99 / max (ms, access log) | {served['p50_ms']:.1f} / "
          f"{served['p95_ms']:.1f} / {served['p99_ms']:.1f} / {served['max_ms']:.1f} |")
    print(f"| client latency p50 / p95 / p99 / max (ms) | {result['client_p50_ms']:.1f} / "
          f"{result['client_p95_ms']:.1f} / {result['client_p99_ms']:.1f} / "
          f"{result['client_max_ms']:.1f} |")
    print(f"| load generator event-loop lag p99 / max (ms) | {result['loop_lag_p99_ms']:.1f} / "
          f"{result['loop_lag_max_ms']:.1f} |")
    others = max(0.0, cpu["machine"] - cpu.get("app", 0) - cpu.get("postgres", 0)
                 - cpu.get("loadgen", 0))
    print(f"| CPU cores: gunicorn / PostgreSQL / load generator / other processes / whole machine | "
          f"{cpu.get('app', 0):.2f} / {cpu.get('postgres', 0):.2f} / {cpu.get('loadgen', 0):.2f} / "
          f"{others:.2f} / {cpu['machine']:.2f} |")
    app_ms = cpu.get("app", 0) * 1000 / (n / seconds) if n else 0
    pg_ms = cpu.get("postgres", 0) * 1000 / (n / seconds) if n else 0
    print(f"| CPU per poll: gunicorn / PostgreSQL (ms) | {app_ms:.2f} / {pg_ms:.2f} |")
    print(f"\n(access log counted {served['n']} requests {json.dumps(served['statuses'])} in the window)")
    if missed:
        print(f"MISSED: {len(missed)} changes never seen: {missed[:5]}")
    if errors or missed:
        return 1
    ok = detect and max(detect) <= GOAL_S
    print(f"Goal: every change seen within {GOAL_S:g} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
