"""Background work: the watcher job (every second, woken by ZMQ), the in-process scheduler and
`flask --app app worker` as a process that stops cleanly on SIGTERM."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from background import Scheduler, jobs_for
from chain.jobs import WATCHER_INTERVAL, jobs
from chain.memchain import MemoryChain
from chain.runtime import backend_for, watcher_for
from payments.models import Invoice
from tests.conftest import auth
from tests.integration.test_watcher_processes import Env, create_invoices


def wait_for(predicate, timeout=15.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_the_watcher_job_runs_every_second_and_is_built_once_per_gateway(gateway):
    chain = MemoryChain()
    gateway.extras["chain_backend"] = chain
    (job,) = jobs(gateway)
    assert job.name == "watcher" and job.interval == WATCHER_INTERVAL == 1.0
    assert job.wake is not None
    assert backend_for(gateway) is chain and watcher_for(gateway) is watcher_for(gateway)
    assert callable(gateway.extras["watcher_health"])


def test_the_in_process_scheduler_picks_up_a_payment_within_two_seconds(app, client, gateway,
                                                                        merchant):
    store_id, token = merchant
    chain = MemoryChain()
    gateway.extras["chain_backend"] = chain
    invoice_id = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": 15000},
                             headers=auth(token)).get_json()["id"]
    gateway.extras.setdefault("jobs", []).extend(jobs(gateway))
    scheduler = Scheduler(jobs_for(gateway))
    scheduler.start()
    try:
        assert wait_for(lambda: gateway.extras["watcher_health"]()["status"] == "ok")
        with gateway.db.read() as s:
            address = s.get(Invoice, invoice_id).address
        etag = client.get(f"/i/{invoice_id}/status.json").headers["ETag"]
        started = time.monotonic()
        chain.pay(address, 10_000)
        assert wait_for(lambda: client.get(f"/i/{invoice_id}/status.json",
                                           headers={"If-None-Match": etag}).status_code == 200)
        assert time.monotonic() - started < 2.0
        assert client.get(f"/i/{invoice_id}/status.json").get_json()["status"] == "Processing"
    finally:
        scheduler.stop()


def test_a_zmq_notification_wakes_the_watcher_job_at_once(gateway):
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    chain = MemoryChain()
    chain.zmq_endpoints = [f"tcp://127.0.0.1:{port}"]
    gateway.extras["chain_backend"] = chain
    try:
        (job,) = jobs(gateway)
        woke = threading.Event()

        def watch():
            if job.wake.wait(10):
                woke.set()

        threading.Thread(target=watch, daemon=True).start()
        for _ in range(50):  # PUB/SUB joins late: publish until the subscriber hears one
            pub.send_multipart([b"hashblock", b"\x00" * 32, (1).to_bytes(4, "little")])
            if woke.wait(0.1):
                break
        assert woke.is_set()
    finally:
        notifier = gateway.extras.pop("chain_zmq", None)
        if notifier is not None:
            notifier.close()
        pub.close(0)
        context.term()


@pytest.mark.slow
def test_the_worker_process_watches_the_demo_chain_and_stops_on_sigterm(tmp_path):
    from chain.backends.demo import DemoChain
    from migrations.commands import upgrade

    url = f"sqlite:///{tmp_path / 'worker.sqlite3'}"
    upgrade(url)
    instance = tmp_path / "instance"
    instance.mkdir()
    (address,) = create_invoices(tmp_path, url, [15_000])
    env = Env(tmp_path, instance, url)
    log = tmp_path / "worker.log"
    proc = env.flask("worker", log=log)
    chain = DemoChain(str(instance / "demochain.sqlite3"))
    try:
        chain.pay(address, 10_000)
        from sqlalchemy import create_engine, text

        engine = create_engine(url)

        def status():
            with engine.connect() as conn:
                return conn.execute(text("SELECT status FROM invoice")).scalar()

        assert wait_for(lambda: status() == "Processing", timeout=30)
        chain.mine()
        assert wait_for(lambda: status() == "Settled", timeout=30)
        engine.dispose()
    finally:
        chain.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "worker running" in output and "watcher" in output and "worker stopped" in output
