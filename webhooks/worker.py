"""Running webhook deliveries: in-process threads on the embedded default, Huey when scaled out.

Why not SqliteHuey on the embedded default: the database already is the durable queue (each
delivery row carries its due time, attempt count and, through its webhook, a lease), so a
second durable queue would duplicate that state and need a consumer process the one-process
embedded default does not have, and a second SQLite file would add a second writer lock. So the
embedded default runs the very same functions (`fan_out`, `claim`, `deliver_claimed`) from a
background.py Job, sending in a bounded thread pool.

Scaled out (`BUSANPAY_TASK_QUEUE=redis://…`), the worker's Job fans out, claims webhooks and
enqueues one Huey task per claimed webhook ("send webhook W's due deliveries under lease T");
any number of Huey consumers (thread workers) run them. A lost or duplicated task costs
nothing: the lease decides who may send, and an unused lease expires and is claimed again.
Huey's own retries are off; retry timing lives in the database.

Either way one slow or dead endpoint holds one thread for at most connect + read timeout
(3 s + 10 s) per attempt, and never another webhook's lease, so other merchants' deliveries
go out on the other threads.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from webhooks.sender import HttpSender
from webhooks.service import Claim, WebhookService

log = logging.getLogger(__name__)
TASK_NAME = "busanpay.webhooks.deliver"
DEFAULT_THREADS = 16
TICK_SECONDS = 1.0


class Dispatcher:
    """Fan out, claim as many webhooks as there are free threads, send each in the pool.
    `tick` returns at once; a webhook is in at most one thread (its lease)."""

    def __init__(self, service: WebhookService, threads: int = DEFAULT_THREADS):
        self.service = service
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="webhook-send")
            return self._pool

    def tick(self) -> int:
        self.service.fan_out()
        with self._lock:
            free = self.threads - len(self._busy)
        claims = self.service.claim(free)
        pool = self._executor()
        for claim in claims:
            with self._lock:
                self._busy.add(claim.webhook_id)
            pool.submit(self._run, claim)
        return len(claims)

    def _run(self, claim: Claim) -> None:
        try:
            self.service.deliver_claimed(claim)
        except Exception:  # the lease expires; the next tick tries again
            log.exception("webhook %s: delivery run failed", claim.webhook_id)
        finally:
            with self._lock:
                self._busy.discard(claim.webhook_id)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._busy)

    def close(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)


def make_huey(url: str, name: str = "busanpay-webhooks"):
    """A RedisHuey for `redis://…` (or `rediss://…`); results are not kept."""
    from huey import RedisHuey

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("BUSANPAY_TASK_QUEUE must be a redis:// URL")
    return RedisHuey(name=name, url=url, results=False)


def register_task(huey, service: WebhookService):
    """The Huey task that sends one claimed webhook's due deliveries."""

    @huey.task(name=TASK_NAME, retries=0)
    def deliver_webhook(webhook_id: str, token: str) -> int:
        return service.deliver_claimed(Claim(webhook_id, token))

    return deliver_webhook


class HueyDispatcher:
    """The scaled-out tick: fan out, claim, enqueue. Consumers run `register_task`'s task."""

    def __init__(self, service: WebhookService, huey, batch: int = 200):
        self.service = service
        self.huey = huey
        self.batch = batch
        self.task = register_task(huey, service)

    def tick(self) -> int:
        self.service.fan_out()
        claims = self.service.claim(self.batch)
        for claim in claims:
            try:
                self.task(claim.webhook_id, claim.token)
            except Exception:  # queue unreachable: give the lease back, try next tick
                self.service.release(claim)
                raise
        return len(claims)

    def consumer(self, workers: int = DEFAULT_THREADS):
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=False)


def service_for(gateway) -> WebhookService:
    """The gateway's webhook service (one per gateway)."""
    service = gateway.extras.get("webhooks")
    if service is None:
        sender = HttpSender(allow_private=gateway.settings.webhook_allow_private)
        service = gateway.extras.setdefault("webhooks", WebhookService(
            gateway.db, clock=gateway.clock, sender=sender))
    return service


def dispatcher_for(gateway):
    """Huey when BUSANPAY_TASK_QUEUE is set, else the in-process thread pool."""
    dispatcher = gateway.extras.get("webhook_dispatcher")
    if dispatcher is None:
        service = service_for(gateway)
        url = gateway.settings.task_queue_url
        dispatcher = HueyDispatcher(service, make_huey(url)) if url else Dispatcher(service)
        dispatcher = gateway.extras.setdefault("webhook_dispatcher", dispatcher)
    return dispatcher


def webhook_jobs(gateway) -> list:
    from background import Job

    return [Job("webhooks", TICK_SECONDS, dispatcher_for(gateway).tick)]
