"""/metrics under gunicorn with two web processes: each scrape, whichever process answers,
sums the counters of both (prometheus_client's multiprocess files in the instance folder),
and the files of an earlier run are removed when gunicorn starts."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "gunicorn-metrics-token"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def counter(text: str, name: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def test_two_gunicorn_processes_report_the_sum_of_their_counters(tmp_path):
    from migrations.commands import upgrade

    url = f"sqlite:///{tmp_path / 'city.sqlite3'}"
    upgrade(url)
    instance = tmp_path / "instance"
    multiproc = instance / "prometheus"
    env = {**os.environ, "DATABASE_URL": url, "BUSANPAY_INSTANCE": str(instance),
           "BUSANPAY_METRICS_TOKEN": TOKEN, "BUSANPAY_INPROCESS_WORKER": "0",
           "BUSANPAY_LEDGER_CHECK_SECONDS": "0", "BUSANPAY_SECRET_KEY": "test",
           "BCL_DATA_DIR": str(instance / "bitcoinlib"), "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # An earlier run left a counter of 1000 behind.
    subprocess.run([sys.executable, "-c",
                    "from operations import prepare_multiprocess\n"
                    f"prepare_multiprocess({str(instance)!r}, enabled=True)\n"
                    "from operations.metrics import INVOICES_CREATED\n"
                    "INVOICES_CREATED.inc(1000)\n"], env=env, cwd=ROOT, check=True)
    assert list(multiproc.glob("counter_*.db"))
    made = subprocess.run([str(BIN / "flask"), "--app", "app", "merchant", "create",
                           "--name", "Seomyeon Bakery"], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True)
    store = json.loads(made.stdout.strip().splitlines()[-1])
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")
    proc = subprocess.Popen([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                             "--worker-class", "sync", "wsgi:app"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/metrics", timeout=2).status_code == 401:
                    break
            except requests.RequestException:  # still starting
                pass
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        for number in range(8):  # a new connection each: both processes take some
            res = requests.post(f"{base}/api/v1/stores/{store['storeId']}/invoices",
                                json={"amount": "15000"}, timeout=10,
                                headers={"Authorization": f"token {store['apiKey']}",
                                         "Connection": "close"})
            assert res.status_code == 200, res.text
        pids = {p.name.split("_")[1] for p in multiproc.glob("counter_*.db")}
        assert len(pids) == 2, pids  # the stale file is gone; both workers counted
        for _ in range(6):
            text = requests.get(base + "/metrics", timeout=10, headers={
                "Authorization": f"Bearer {TOKEN}", "Connection": "close"}).text
            assert counter(text, "busanpay_invoices_created_total") == 8
            assert counter(text, "busanpay_http_request_duration_seconds_count") >= 8
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
