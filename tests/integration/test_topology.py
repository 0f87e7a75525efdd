"""The scale-out topology of deploy/, run for real on this machine: nginx (Debian's, with
deploy/nginx.conf) terminating TLS on 127.0.0.1 in front of two gunicorn web processes,
two `flask worker` processes, the Huey webhook consumer, PostgreSQL and Redis. A journey
through the proxy: create an invoice, pay it on the demo chain, see it settle, receive
the signed webhook, run settlement from two processes at once (one payout), `ledger
check` passes, and /metrics sums the counters of every process."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wipe
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.test_metrics_gunicorn import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "topology-metrics-token"
REDIS = "redis://127.0.0.1:6379"

pytestmark = pytest.mark.slow


def wait_until(predicate, timeout: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def nginx_config(tmp: Path, https: int, http: int, upstreams: list[int]) -> Path:
    """deploy/nginx.conf with this machine's ports, paths and a throw-away certificate."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    ports = iter(upstreams)
    site = re.sub(r"server 127\.0\.0\.1:800\d", lambda _: f"server 127.0.0.1:{next(ports)}", site)
    site = re.sub(r"\n\s*listen \[::\]:[^\n]*", "", site)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    for old, new in {"/etc/ssl/busanpay/fullchain.pem": tmp / "cert.pem",
                     "/etc/ssl/busanpay/privkey.pem": tmp / "key.pem",
                     "/srv/busanpay/static/": f"{ROOT / 'static'}/",
                     "/etc/nginx/busanpay_proxy_params": ROOT / "deploy" / "nginx-proxy-params.conf",
                     "/var/log/nginx/busanpay.access.log": tmp / "nginx-access.log",
                     "/var/www/acme": tmp}.items():
        site = site.replace(old, str(new))
    (tmp / "site.conf").write_text(site)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp / "key.pem"),
                    "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    for folder in ("body", "proxy"):
        (tmp / folder).mkdir()
    main = tmp / "nginx.conf"
    main.write_text(f"user root;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'nginx-error.log'};\n"
                    "worker_processes 1;\nevents {}\nhttp {\n  include /etc/nginx/mime.types;\n"
                    f"  client_body_temp_path {tmp / 'body'};\n  proxy_temp_path {tmp / 'proxy'};\n"
                    f"  include {tmp / 'site.conf'};\n}}\n")
    return main


@pytest.fixture
def pg_database(postgresql_url):
    """The session's PostgreSQL database (migrated), emptied afterwards."""
    yield postgresql_url
    wipe(postgresql_url)


def test_a_journey_through_nginx_to_two_web_processes_two_workers_and_the_consumer(
        tmp_path, pg_database):
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    import redis

    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError as err:
        pytest.skip(f"Redis not reachable: {err}")
    instance, metrics_dir = tmp_path / "instance", tmp_path / "metrics"
    metrics_dir.mkdir()
    https, http, webs = free_port(), free_port(), [free_port(), free_port()]
    env = {**os.environ, "DATABASE_URL": pg_database, "BUSANPAY_INSTANCE": str(instance),
           "BUSANPAY_CHAIN": "demo", "BUSANPAY_INPROCESS_WORKER": "0",
           "BUSANPAY_SECRET_KEY": "topology-secret", "BUSANPAY_TRUSTED_PROXIES": "127.0.0.1",
           "BUSANPAY_WEBHOOK_ALLOW_PRIVATE": "1",  # the shop's receiver listens on 127.0.0.1
           "BUSANPAY_PUBLIC_URL": f"https://127.0.0.1:{https}",
           "BUSANPAY_RATELIMIT_STORAGE": f"{REDIS}/13", "BUSANPAY_TASK_QUEUE": f"{REDIS}/14",
           "BUSANPAY_METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "BUSANPAY_METRICS_CLEAN": "0", "BUSANPAY_AUTO_SETTLEMENT": "0",
           "BUSANPAY_LEDGER_CHECK_SECONDS": "0", "BCL_DATA_DIR": str(instance / "bitcoinlib"),
           "PYTHONPATH": str(ROOT)}

    def flask(*args, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=check, timeout=120)

    store = json.loads(flask("merchant", "create", "--name", "Gwangalli Surf").stdout
                       .strip().splitlines()[-1])
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_database)
    with engine.begin() as conn:  # an approved account (four eyes are tested elsewhere)
        conn.execute(text("INSERT INTO merchant_payout_account (store_id, bank_name, bank_account, "
                          "account_holder, updated_at) VALUES (:s, 'BNK Busan Bank', "
                          "'101-2020-0001', 'Gwangalli Surf', now())"), {"s": store["storeId"]})
    engine.dispose()
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []

    def start(name: str, cmd: list[str]) -> None:
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with open(log, "w") as out:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        for n, port in enumerate(webs, 1):
            start(f"web{n}", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                              "1", "--worker-class", "gthread", "--threads", "4",
                              "app:create_app()"])
        for n in (1, 2):
            start(f"worker{n}", [str(BIN / "flask"), "--app", "app", "worker"])
        start("consumer", [str(BIN / "flask"), "--app", "app", "webhooks", "consumer",
                           "--workers", "2"])
        start("nginx", ["nginx", "-c", str(nginx_config(tmp_path, https, http, webs)),
                        "-g", "daemon off;"])
        base = f"https://127.0.0.1:{https}"
        http_ = requests.Session()
        http_.trust_env = False  # else REQUESTS_CA_BUNDLE would override `verify`
        http_.verify = str(tmp_path / "cert.pem")  # nginx's throw-away certificate
        for port in webs:  # both web processes up, then the proxy
            wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json",
                                            timeout=2).ok, 90, f"web on {port}", logs)
        wait_until(lambda: http_.get(base + "/api/v1/openapi.json", timeout=2).ok, 30,
                   "nginx", logs)
        assert requests.get(f"http://127.0.0.1:{http}/pos", allow_redirects=False,
                            timeout=5).status_code == 301  # plain http goes to https
        assert http_.get(base + "/static/dashboard/city.css", timeout=5).ok  # from disk

        auth = {"Authorization": f"token {store['apiKey']}"}
        api = f"{base}/api/v1/stores/{store['storeId']}"
        with WebhookReceiver() as receiver:
            hook = http_.post(f"{api}/webhooks", json={"url": receiver.url}, headers=auth,
                              timeout=10)
            assert hook.status_code == 200, hook.text
            receiver.secret = hook.json()["secret"]
            created = http_.post(f"{api}/invoices", json={"amount": "15000"}, timeout=10,
                                 headers={**auth, "X-Forwarded-For": "198.51.100.77"})
            assert created.status_code == 200, created.text
            invoice = created.json()
            assert invoice["checkoutLink"].startswith(base + "/i/")
            method = http_.get(f"{api}/invoices/{invoice['id']}/payment-methods", headers=auth,
                               timeout=10).json()[0]
            from chain.backends.demo import DemoChain

            chain = DemoChain(str(instance / "demochain.sqlite3"))
            try:
                chain.pay(method["destination"], int(round(float(method["due"]) * 1e8)))
                wait_until(lambda: http_.get(f"{api}/invoices/{invoice['id']}", headers=auth,
                                             timeout=5).json()["status"] == "Processing",
                           60, "Processing", logs)
                chain.mine()
            finally:
                chain.close()
            wait_until(lambda: http_.get(f"{api}/invoices/{invoice['id']}", headers=auth,
                                         timeout=5).json()["status"] == "Settled",
                       60, "Settled", logs)
            wait_until(lambda: any(r.json.get("type") == "InvoiceSettled"
                                   for r in receiver.requests), 60, "the webhook", logs)
            settled = [r for r in receiver.requests if r.json.get("type") == "InvoiceSettled"]
            assert len(settled) == 1 and settled[0].signature_ok is True

        today = datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()
        runs = [subprocess.Popen([str(BIN / "flask"), "--app", "app", "settlement", "run",
                                  "--date", today], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [json.loads(run.communicate(timeout=120)[0]) for run in runs]
        assert sorted(len(o["created"]) for o in outputs) == [0, 1]  # one payout, once
        engine = create_engine(pg_database)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM payout")).scalar() == 1
        engine.dispose()
        check = flask("ledger", "check", check=False)
        assert check.returncode == 0, check.stdout[-2000:]

        scrape = http_.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=10)
        assert scrape.status_code == 200
        values = {}
        for family in text_string_to_metric_families(scrape.text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[key] = values.get(key, 0) + sample.value
        assert values[("busanpay_invoices_created_total", ())] == 1
        assert values[("busanpay_invoice_transitions_total", (("status", "Settled"),))] == 1
        assert values[("busanpay_payouts_total", (("status", "created"),))] == 1
        web_logs = "".join((tmp_path / f"web{n}.log").read_text() for n in (1, 2))
        assert '"client": "127.0.0.1"' in web_logs and "198.51.100.77" not in web_logs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
