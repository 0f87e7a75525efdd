"""Finding 13: slow clients must not hold the server. 64 sockets trickling request bodies
made /login take 8–21 s (gunicorn's gthread worker gives each socket a thread before the
body has arrived). The embedded default now serves with waitress, which buffers whole
requests in its event loop: the test starts the server exactly as `make start` does
(scripts/serve) and times /login while 64 slow clients trickle. The in-process background
work (rates, watcher) must keep running under that server."""
from __future__ import annotations

import json
import tempfile
import time

import pytest
import requests

from bench.bench_slow_clients import (flask_cli, free_port, measure, server_env, start_server,
                                      stop_server)


@pytest.fixture(scope="module")
def served():
    with tempfile.TemporaryDirectory(prefix="busanpay-slow-") as instance:
        port = free_port()
        server = start_server(instance, port, None)
        try:
            yield port, server_env(instance, port)
        finally:
            stop_server(server)


def test_login_answers_quickly_while_sixty_four_clients_trickle_bodies(served):
    port, _ = served
    result = measure(port, slow=64, seconds=5)
    assert result["slow_clients"] == 64 and result["errors"] == 0
    assert result["requests"] >= 10
    assert result["get_median_ms"] < 500 and result["get_max_ms"] < 2000, result
    assert result["post_median_ms"] < 1500, result


def test_the_background_work_runs_inside_the_served_process(served):
    port, env = served
    store = json.loads(flask_cli(env, "merchant", "create", "--name", "Slow Café"))
    base = f"http://127.0.0.1:{port}"
    created = requests.post(f"{base}/api/v1/stores/{store['storeId']}/invoices",
                            headers={"Authorization": f"token {store['apiKey']}"},
                            json={"amount": "15000"}, timeout=30)
    assert created.status_code == 200, created.text  # the rate poller has a fresh rate
    invoice = created.json()["id"]
    flask_cli(env, "demo", "pay", invoice)
    deadline, status = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/i/{invoice}/status.json", timeout=10).json()
        if status.get("status") != "New":
            break
        time.sleep(0.5)
    assert status["status"] == "Processing", status  # the watcher thread saw the payment
