"""Webhook delivery over real HTTP to a local receiver: signing, fan-out from the outbox,
retries, final failures, redelivery, the delivery log, isolation between merchants, and
parallel workers (threads and processes)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import FakeClock, auth, make_merchant
from tests.fakes.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "webhook_allow_private": True}  # the receivers listen on 127.0.0.1


def local_sender(**timeouts):
    """A sender that may reach the receivers on 127.0.0.1 (BUSANPAY_WEBHOOK_ALLOW_PRIVATE=1)."""
    from webhooks.sender import HttpSender

    return HttpSender(allow_private=True, **timeouts)


@pytest.fixture
def app(app):
    from webhooks import init_webhooks

    init_webhooks(app)  # a no-op once app.py registers the webhooks itself
    return app


@pytest.fixture
def receivers():
    made: list[WebhookReceiver] = []

    def make() -> WebhookReceiver:
        made.append(WebhookReceiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def service(gateway):
    from webhooks.worker import service_for

    return service_for(gateway)


def new_webhook(client, merchant, receiver: WebhookReceiver, **body) -> dict:
    store_id, token = merchant
    res = client.post(f"/api/v1/stores/{store_id}/webhooks", headers=auth(token),
                      json={"url": receiver.url, **body})
    assert res.status_code == 200, res.get_data(as_text=True)
    created = res.get_json()
    receiver.secret = created["secret"]
    return created


def new_invoice(client, merchant, **body) -> dict:
    store_id, token = merchant
    res = client.post(f"/api/v1/stores/{store_id}/invoices", headers=auth(token),
                      json={"amount": "15000", **body})
    assert res.status_code == 200, res.get_data(as_text=True)
    return res.get_json()


def api_get(client, merchant, path: str):
    store_id, token = merchant
    res = client.get(f"/api/v1/stores/{store_id}/webhooks/{path}", headers=auth(token))
    assert res.status_code == 200, res.get_data(as_text=True)
    return res


def deliveries(client, merchant, hook_id: str, count: int | None = None) -> list[dict]:
    query = "" if count is None else f"?count={count}"
    return api_get(client, merchant, f"{hook_id}/deliveries{query}").get_json()


# -- one delivery -----------------------------------------------------------------------
def test_an_invoice_event_reaches_the_receiver_signed_with_the_webhook_secret(
        client, merchant, receivers, service):
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    invoice = new_invoice(client, merchant, metadata={"orderId": "A-1", "note": "해운대"})
    assert service.run_once() == 1

    [request] = receiver.wait_for(1)
    assert request.signature_ok is True
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["BTCPay-Sig"].startswith("sha256=")
    body = request.json
    assert body == {"deliveryId": body["deliveryId"], "webhookId": hook["id"],
                    "originalDeliveryId": body["deliveryId"], "isRedelivery": False,
                    "type": "InvoiceCreated", "timestamp": invoice["createdTime"],
                    "storeId": merchant[0], "invoiceId": invoice["id"],
                    "metadata": {"orderId": "A-1", "note": "해운대"}}

    [logged] = deliveries(client, merchant, hook["id"])
    assert logged == {"id": body["deliveryId"], "timestamp": invoice["createdTime"],
                      "deliveryTime": invoice["createdTime"], "httpCode": 200,
                      "errorMessage": None, "status": "HttpSuccess"}
    assert api_get(client, merchant, f"{hook['id']}/deliveries/{logged['id']}").get_json() == logged
    sent = api_get(client, merchant, f"{hook['id']}/deliveries/{logged['id']}/request")
    assert sent.mimetype == "application/json" and sent.get_data() == request.body
    assert service.run_once() == 0 and len(receiver.requests) == 1  # sent once


def test_a_signature_made_with_another_secret_does_not_verify(client, merchant, receivers,
                                                              service):
    receiver = receivers()
    new_webhook(client, merchant, receiver)
    receiver.secret = "not-the-secret"
    new_invoice(client, merchant)
    service.run_once()
    assert receiver.wait_for(1)[0].signature_ok is False


def test_only_subscribed_events_of_the_webhooks_own_store_reach_enabled_webhooks(
        app, client, merchant, receivers, service):
    settled_only, everything, disabled, other_store = (receivers() for _ in range(4))
    new_webhook(client, merchant, settled_only,
                authorizedEvents={"everything": False, "specificEvents": ["InvoiceSettled"]})
    new_webhook(client, merchant, everything)
    new_webhook(client, merchant, disabled, enabled=False)
    other = make_merchant(app, name="Jagalchi Fish")
    new_webhook(client, other, other_store)

    invoice = new_invoice(client, merchant)
    res = client.post(f"/api/v1/invoices/{invoice['id']}/status", headers=auth(merchant[1]),
                      json={"status": "Settled"})
    assert res.status_code == 200
    service.run_once()

    assert [r.json["type"] for r in everything.wait_for(2)] == ["InvoiceCreated", "InvoiceSettled"]
    [settled] = settled_only.wait_for(1)
    assert settled.json["type"] == "InvoiceSettled" and settled.json["manuallyMarked"] is True
    time.sleep(0.2)
    assert len(settled_only.requests) == 1 and disabled.requests == [] and \
        other_store.requests == []


def test_events_from_before_the_webhook_existed_are_not_sent(client, merchant, receivers,
                                                             service, clock):
    receiver = receivers()
    new_invoice(client, merchant)
    clock.advance(seconds=1)
    new_webhook(client, merchant, receiver)
    assert service.run_once() == 0 and receiver.requests == []
    new_invoice(client, merchant)
    assert service.run_once() == 1 and len(receiver.wait_for(1)) == 1


def test_the_fan_out_makes_one_delivery_per_event_and_webhook_however_often_it_runs(
        client, merchant, receivers, service, gateway):
    from webhooks.models import WebhookDelivery

    first, second = receivers(), receivers()
    new_webhook(client, merchant, first)
    new_webhook(client, merchant, second)
    for _ in range(3):
        new_invoice(client, merchant)
    assert service.fan_out() == 3
    for _ in range(3):
        assert service.fan_out() == 0
    with gateway.db.read() as session:
        rows = session.exec(select(WebhookDelivery)).all()
    assert len(rows) == 6 and len({(d.webhook_id, d.event_id) for d in rows}) == 6


# -- retries and final failures ---------------------------------------------------------
@pytest.mark.parametrize("failure", ["500", "429", "408", "network"])
def test_a_failed_delivery_is_retried_after_10_s_then_1_min_with_the_same_body_until_it_succeeds(
        client, merchant, receivers, service, clock, failure):
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    if failure == "network":
        receiver.refuse()
    else:
        receiver.fail(int(failure), times=2)
    new_invoice(client, merchant)
    service.run_once()

    [logged] = deliveries(client, merchant, hook["id"])
    if failure == "network":
        assert receiver.requests == []
        assert logged["status"] == "Failed" and logged["httpCode"] is None
        assert "refused" in logged["errorMessage"]
    else:
        assert logged["status"] == "HttpError" and logged["httpCode"] == int(failure)
        assert logged["errorMessage"] == f"HTTP {failure}"

    clock.advance(seconds=9)
    assert service.run_once() == 0  # not due yet
    clock.advance(seconds=1)
    assert service.run_once() == 1
    clock.advance(seconds=59)
    assert service.run_once() == 0
    if failure == "network":
        receiver.ok()
    clock.advance(seconds=1)
    assert service.run_once() == 1

    [logged] = deliveries(client, merchant, hook["id"])
    assert logged["status"] == "HttpSuccess" and logged["httpCode"] == 200
    assert logged["errorMessage"] is None
    got = receiver.requests
    assert len(got) == (1 if failure == "network" else 3)
    assert len({r.body for r in got}) == 1 and all(r.signature_ok for r in got)
    assert got[0].json["deliveryId"] == logged["id"]
    outcomes = [(a.number, a.outcome, a.http_code) for a in service.attempts(logged["id"])]
    first = ("Failed", None) if failure == "network" else ("HttpError", int(failure))
    assert outcomes == [(1, *first), (2, *first), (3, "HttpSuccess", 200)]
    clock.advance(hours=2)
    assert service.run_once() == 0


def test_a_404_from_the_receiver_is_final(client, merchant, receivers, service, clock):
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    receiver.answer(404)
    new_invoice(client, merchant)
    service.run_once()
    for _ in range(3):
        clock.advance(hours=1)
        assert service.run_once() == 0
    assert len(receiver.requests) == 1
    [logged] = deliveries(client, merchant, hook["id"])
    assert (logged["status"], logged["httpCode"], logged["errorMessage"]) == \
        ("HttpError", 404, "HTTP 404")


def test_without_automatic_redelivery_a_500_is_not_retried(client, merchant, receivers, service,
                                                          clock):
    receiver = receivers()
    new_webhook(client, merchant, receiver, automaticRedelivery=False)
    receiver.answer(500)
    new_invoice(client, merchant)
    service.run_once()
    clock.advance(hours=1)
    assert service.run_once() == 0 and len(receiver.requests) == 1


def test_retries_stop_after_nine_attempts_over_about_an_hour(client, merchant, receivers,
                                                             service, clock):
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    receiver.answer(503)
    new_invoice(client, merchant)
    service.run_once()
    for _ in range(12):
        clock.advance(minutes=10)
        service.run_once()
    assert len(receiver.requests) == 9
    [logged] = deliveries(client, merchant, hook["id"])
    assert logged["status"] == "HttpError" and logged["httpCode"] == 503


def test_a_hanging_receiver_times_out_and_is_retried(client, merchant, receivers, gateway,
                                                     clock):
    from webhooks.service import WebhookService

    service = WebhookService(gateway.db, clock=clock, sender=local_sender(read_timeout=0.5))
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    receiver.hang()
    new_invoice(client, merchant)
    started = time.monotonic()
    service.run_once()
    assert time.monotonic() - started < 3
    [logged] = deliveries(client, merchant, hook["id"])
    assert logged["status"] == "Failed" and logged["errorMessage"] == "No answer within 0.5 s"
    receiver.ok()
    clock.advance(seconds=10)
    service.run_once()
    assert deliveries(client, merchant, hook["id"])[0]["status"] == "HttpSuccess"


# -- redelivery and the delivery log ----------------------------------------------------
def test_redeliver_sends_a_new_delivery_marked_as_a_redelivery_of_the_original(
        client, merchant, receivers, service, clock):
    store_id, token = merchant
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    new_invoice(client, merchant)
    service.run_once()
    [original] = receiver.wait_for(1)
    base = f"/api/v1/stores/{store_id}/webhooks/{hook['id']}/deliveries"
    first_id = original.json["deliveryId"]

    clock.advance(seconds=5)
    res = client.post(f"{base}/{first_id}/redeliver", headers=auth(token))  # no body at all
    assert res.status_code == 200
    again_id = res.get_json()
    assert isinstance(again_id, str) and again_id != first_id
    service.run_once()
    second = receiver.wait_for(2)[1]
    assert second.signature_ok
    assert second.json == {**original.json, "deliveryId": again_id,
                           "originalDeliveryId": first_id, "isRedelivery": True}

    clock.advance(seconds=5)
    res = client.post(f"{base}/{again_id}/redeliver", headers=auth(token), json=None,
                      data=b"null", content_type="application/json")
    assert res.status_code == 200
    third_id = res.get_json()
    service.run_once()
    third = receiver.wait_for(3)[2]
    assert third.json["originalDeliveryId"] == first_id and third.json["deliveryId"] == third_id

    log = deliveries(client, merchant, hook["id"])
    assert [d["id"] for d in log] == [third_id, again_id, first_id]  # newest first
    assert all(d["status"] == "HttpSuccess" for d in log)
    assert [d["id"] for d in deliveries(client, merchant, hook["id"], count=1)] == [third_id]
    assert deliveries(client, merchant, hook["id"], count=0) == []
    sent = api_get(client, merchant, f"{hook['id']}/deliveries/{again_id}/request").get_data()
    assert sent == second.body
    res = client.post(f"{base}/NoSuchDelivery/redeliver", headers=auth(token))
    assert res.status_code == 404 and res.get_json()["code"] == "webhookdelivery-not-found"


def test_a_pending_delivery_is_listed_before_its_first_attempt(client, merchant, receivers,
                                                               service):
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver)
    new_invoice(client, merchant)
    service.fan_out()
    [logged] = deliveries(client, merchant, hook["id"])
    assert logged["status"] == "Pending" and logged["deliveryTime"] is None
    assert logged["httpCode"] is None and logged["errorMessage"] is None


def test_the_secret_is_never_logged_and_our_logs_leave_out_the_url(
        client, merchant, receivers, service, clock, caplog):
    receiver = receivers()
    receiver.path = "/hook?token=merchant-private-token"
    with caplog.at_level(logging.DEBUG):
        hook = new_webhook(client, merchant, receiver, secret="very-secret-shared-key")
        receiver.fail(500, times=1)
        new_invoice(client, merchant)
        service.run_once()
        clock.advance(seconds=10)
        service.run_once()
    assert len(receiver.requests) == 2
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("webhooks"))
    assert hook["id"] in ours and "attempt 2: HttpSuccess 200" in ours
    assert "very-secret-shared-key" not in caplog.text  # nowhere, not even in urllib3's debug
    assert "merchant-private-token" not in ours  # (urllib3's own DEBUG lines show the path)


# -- at-least-once: a worker that stops mid-send ----------------------------------------
class WallClock(FakeClock):
    def __init__(self):
        super().__init__(datetime.now(timezone.utc))


@pytest.mark.parametrize("automatic", [True, False])
def test_a_worker_that_dies_after_posting_causes_at_most_one_resend_with_the_same_delivery_id(
        client, merchant, receivers, gateway, clock, automatic):
    from webhooks.sender import sign
    from webhooks.service import UNKNOWN_OUTCOME, WebhookService

    wall = WallClock()
    service = WebhookService(gateway.db, clock=clock, wall=wall, sender=local_sender())
    receiver = receivers()
    hook = new_webhook(client, merchant, receiver, automaticRedelivery=automatic)
    new_invoice(client, merchant)
    service.fan_out()
    [claim] = service.claim(10)
    job = service.begin_attempt(claim)
    service.sender.send(job.url, job.body, sign(job.secret, job.body))  # then "crashes"
    receiver.wait_for(1)

    assert service.claim(10) == []           # the dead worker's lease still holds
    wall.advance(seconds=61)                 # ... until it expires
    clock.advance(minutes=3)
    service.run_once()
    [logged] = deliveries(client, merchant, hook["id"])
    attempts = service.attempts(logged["id"])
    assert (attempts[0].outcome, attempts[0].error_message) == ("Failed", UNKNOWN_OUTCOME)
    if automatic:  # at-least-once: sent again, same deliveryId for the receiver to dedupe
        assert [r.json["deliveryId"] for r in receiver.wait_for(2)] == [logged["id"]] * 2
        assert logged["status"] == "HttpSuccess" and len(attempts) == 2
    else:          # no retries wanted: closed as unknown, not sent again
        assert len(receiver.requests) == 1 and len(attempts) == 1
        assert logged["status"] == "Failed" and logged["errorMessage"] == UNKNOWN_OUTCOME
    clock.advance(hours=2)
    wall.advance(hours=2)
    assert service.run_once() == 0


# -- the embedded default: the background job --------------------------------------------
def test_on_the_embedded_default_the_in_process_job_sends_deliveries(app, app_config, receivers):
    from app import create_app, start_background_work
    from webhooks import init_webhooks
    from webhooks.worker import Dispatcher

    embedded = create_app({**app_config, "inprocess_worker": True})  # `app` wipes the DB after
    init_webhooks(embedded)
    init_webhooks(embedded)  # twice is harmless
    gateway = embedded.extensions["busanpay"]
    assert [j.name for j in gateway.extras["jobs"]].count("webhooks") == 1
    assert isinstance(gateway.extras["webhook_dispatcher"], Dispatcher)
    client = embedded.test_client()
    merchant = make_merchant(embedded)
    receiver = receivers()
    new_webhook(client, merchant, receiver)
    scheduler = start_background_work(embedded)
    try:
        started = time.monotonic()
        new_invoice(client, merchant)
        [request] = receiver.wait_for(1, timeout=5)
        assert request.signature_ok and request.at - started < 3
    finally:
        scheduler.stop()
        gateway.extras["webhook_dispatcher"].close()
        gateway.close()


# -- isolation between merchants: threads ------------------------------------------------
def test_a_hanging_endpoint_does_not_delay_another_merchants_delivery(
        app, client, merchant, receivers, service):
    from background import Job, Scheduler
    from webhooks.worker import Dispatcher

    dead, alive = receivers(), receivers()
    new_webhook(client, merchant, dead)
    other = make_merchant(app, name="Jagalchi Fish")
    new_webhook(client, other, alive)
    dead.hang()
    dispatcher = Dispatcher(service, threads=4)
    scheduler = Scheduler([Job("webhooks", 0.1, dispatcher.tick)])
    scheduler.start()
    try:
        for _ in range(3):
            new_invoice(client, merchant)
        dead.wait_for(1, timeout=3)            # the first request hangs (10 s read timeout)
        started = time.monotonic()
        new_invoice(client, other)
        [arrived] = alive.wait_for(1, timeout=2)
        assert arrived.at - started < 2.0
        assert len(dead.requests) == 1        # one request at a time per webhook, in order
    finally:
        scheduler.stop()
        dead.close()
        dispatcher.close()


def _all_delivered(expected: dict[WebhookReceiver, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for receiver, count in expected.items():
        receiver.wait_for(count, timeout=max(deadline - time.monotonic(), 0.1))


def _assert_each_event_once(receivers_: list[WebhookReceiver], invoices: dict[str, str]) -> None:
    for receiver in receivers_:
        seen = [(r.json["webhookId"], r.json["invoiceId"], r.json["type"])
                for r in receiver.requests]
        assert len(seen) == len(set(seen)), "an event was delivered twice"
        assert len({r.json["deliveryId"] for r in receiver.requests}) == len(seen)
        assert all(r.signature_ok for r in receiver.requests)
        assert {i for _, i, _ in seen} == {i for i, s in invoices.items()
                                           if s == receiver.requests[0].json["storeId"]}


def test_two_delivery_workers_in_parallel_deliver_each_event_once_per_webhook(
        app, client, receivers, gateway, db_url, clock):
    from database import Database
    from webhooks.service import WebhookService
    from webhooks.worker import Dispatcher

    merchants = [make_merchant(app, name=f"Shop {i}") for i in range(3)]
    hooks = []
    for m in merchants:
        for _ in range(2):
            receiver = receivers()
            receiver.ok(delay=0.005)
            new_webhook(client, m, receiver)
            hooks.append((m, receiver))
    invoices = {}
    for i in range(24):
        m = merchants[i % 3]
        invoices[new_invoice(client, m)["id"]] = m[0]

    databases = [Database(db_url), Database(db_url)]
    dispatchers = [Dispatcher(WebhookService(db, clock=clock, worker_id=f"worker-{n}",
                                               sender=local_sender()), threads=3)
                   for n, db in enumerate(databases)]
    stop = threading.Event()

    def loop(dispatcher):
        while not stop.is_set():
            dispatcher.tick()
            time.sleep(0.01)

    threads = [threading.Thread(target=loop, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    try:
        _all_delivered({r: 8 for _, r in hooks}, timeout=30)
        time.sleep(0.5)  # time for any duplicate to show up
    finally:
        stop.set()
        for t in threads:
            t.join()
        for d in dispatchers:
            d.close()
        for db in databases:
            db.dispose()
    _assert_each_event_once([r for _, r in hooks], invoices)


# -- isolation between workers: processes -------------------------------------------------
WORKER_SCRIPT = """
import sys, time
from database import Database
from webhooks.sender import HttpSender
from webhooks.service import WebhookService
db = Database(sys.argv[1])
service = WebhookService(db, clock=lambda: __import__("database").utc_now(),
                         worker_id=sys.argv[2], sender=HttpSender(allow_private=True))
idle_since = time.monotonic()
deadline = time.monotonic() + 40
while time.monotonic() < deadline and time.monotonic() - idle_since < 1.5:
    if service.run_once(limit=2):
        idle_since = time.monotonic()
    time.sleep(0.005)
db.dispose()
"""


def test_two_worker_processes_deliver_each_event_once_per_webhook(app, client, receivers,
                                                                 db_url):
    merchants = [make_merchant(app, name=f"Shop {i}") for i in range(2)]
    hooks = []
    for m in merchants:
        receiver = receivers()
        receiver.ok(delay=0.005)
        new_webhook(client, m, receiver)
        hooks.append(receiver)
    invoices = {}
    for i in range(20):
        m = merchants[i % 2]
        invoices[new_invoice(client, m)["id"]] = m[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, db_url, f"proc-{n}"],
                              cwd=ROOT, env=env, stderr=subprocess.PIPE) for n in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    _all_delivered({r: 10 for r in hooks}, timeout=1)
    _assert_each_event_once(hooks, invoices)


# -- the fan-out cursor ------------------------------------------------------------------
def test_the_fan_out_cursor_advances_only_past_events_seen_long_enough_ago(
        client, merchant, receivers, gateway, clock):
    from webhooks.models import WebhookCursor, WebhookFanout
    from webhooks.service import FANOUT_SAFETY, WebhookService

    wall = WallClock()
    service = WebhookService(gateway.db, clock=clock, wall=wall, sender=local_sender())
    receiver = receivers()
    new_webhook(client, merchant, receiver)
    for _ in range(3):
        new_invoice(client, merchant)
    assert service.fan_out() == 3
    with gateway.db.read() as session:
        assert session.get(WebhookCursor, "fanout").event_id == 0
        assert len(session.exec(select(WebhookFanout)).all()) == 3
    wall.advance(seconds=FANOUT_SAFETY.total_seconds() + 1)
    new_invoice(client, merchant)
    assert service.fan_out() == 1  # and moves the cursor past the first three
    with gateway.db.read() as session:
        cursor = session.get(WebhookCursor, "fanout").event_id
        markers = [m.event_id for m in session.exec(select(WebhookFanout))]
    assert cursor >= 3 and markers == [cursor + 1]
    assert service.run_once() == 4 and len(receiver.wait_for(4)) == 4


def test_an_event_committed_after_a_later_one_is_still_fanned_out(client, merchant, receivers,
                                                                  gateway, clock, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite commits in id order (one writer); the gap exists on PostgreSQL")
    from sqlmodel import Session

    from payments.models import InvoiceEvent
    from webhooks.service import WebhookService

    service = WebhookService(gateway.db, clock=clock, sender=local_sender())
    receiver = receivers()
    new_webhook(client, merchant, receiver)
    invoice = new_invoice(client, merchant)
    service.run_once()
    receiver.wait_for(1)

    def event(name: str) -> InvoiceEvent:
        return InvoiceEvent(dedupe_key=f"{invoice['id']}:{name}", invoice_id=invoice["id"],
                            store_id=merchant[0], event_type="InvoiceExpired",
                            payload_json=json.dumps({"type": "InvoiceExpired", "name": name}),
                            created_at=clock())

    slow = Session(gateway.db.engine)
    slow.add(event("slow"))
    slow.flush()  # holds the lower id, not committed yet
    with gateway.db.write() as session:
        session.add(event("fast"))
    service.run_once()
    assert [r.json["name"] for r in receiver.wait_for(2)[1:]] == ["fast"]
    slow.commit()
    slow.close()
    service.run_once()
    assert [r.json["name"] for r in receiver.wait_for(3)[1:]] == ["fast", "slow"]


# -- the Huey path (Redis) -----------------------------------------------------------------
REDIS_URL = os.environ.get("BUSANPAY_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def huey_queue():
    import signal
    import uuid

    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as err:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {err}")
    from webhooks.worker import make_huey

    name = f"busanpay-test-{uuid.uuid4().hex[:12]}"
    huey = make_huey(REDIS_URL, name=name)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield huey
    for sig, handler in handlers.items():  # the consumer installs its own
        signal.signal(sig, handler)
    huey.storage.flush_all()
    client = redis.Redis.from_url(REDIS_URL)
    left = [k for k in client.scan_iter(match=f"huey.*{name}*")]
    client.close()
    assert left == [], f"Redis keys left behind: {left}"


def test_with_a_redis_task_queue_huey_consumers_send_each_delivery_once(
        app, client, merchant, receivers, service, huey_queue):
    from webhooks.worker import HueyDispatcher

    dispatcher = HueyDispatcher(service, huey_queue)
    other = make_merchant(app, name="Jagalchi Fish")
    mine, theirs = receivers(), receivers()
    new_webhook(client, merchant, mine)
    new_webhook(client, other, theirs)
    for m in (merchant, other, merchant):
        new_invoice(client, m)
    consumer = dispatcher.consumer(workers=3)
    consumer.start()
    try:
        service.fan_out()
        claims = service.claim(10)
        assert len(claims) == 2
        for claim in claims:  # every task enqueued twice: the lease lets one of them send
            dispatcher.task(claim.webhook_id, claim.token)
            dispatcher.task(claim.webhook_id, claim.token)
        mine.wait_for(2, timeout=10)
        theirs.wait_for(1, timeout=10)
        new_invoice(client, other)
        # The scheduled path: fan out, claim, enqueue (once the first run has given its lease
        # back) — unless that run, still going, found the new delivery and sent it itself.
        deadline = time.monotonic() + 5
        while dispatcher.tick() == 0 and len(theirs.requests) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        theirs.wait_for(2, timeout=10)
        deadline = time.monotonic() + 5
        while len(huey_queue) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        consumer.stop(graceful=True)
    assert len(mine.requests) == 2 and len(theirs.requests) == 2
    for receiver in (mine, theirs):
        ids = [r.json["deliveryId"] for r in receiver.requests]
        assert len(set(ids)) == len(ids) and all(r.signature_ok for r in receiver.requests)
