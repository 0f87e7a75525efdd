"""Webhook operations: CRUD, the fan-out from the outbox, claiming work and sending it.

Delivery is at-least-once. Each delivery row is attempted by one worker at a time: a worker
first takes a short lease on the *webhook* (so an endpoint gets one request at a time, in
order), then, per attempt, records "attempt n is being sent" in its own transaction before the
POST and the outcome in another after it. A second worker can neither take the same webhook
nor the same attempt number. Only a worker that stops (crash, kill, a stall longer than the
lease) between the POST and recording its answer can cause the same delivery to be sent again;
the receiver sees the same `deliveryId` and must deduplicate by it, as Greenfield receivers do.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from database import Database, insert_ignore, utc_now
from merchants.service import random_id
from operations.metrics import WEBHOOK_DELIVERIES
from payments.models import InvoiceEvent
from webhooks.models import (Webhook, WebhookCursor, WebhookDelivery, WebhookDeliveryAttempt,
                             WebhookFanout)
from webhooks.rules import WebhookSpec, event_body, subscribed
from webhooks.sender import (FAILED, SUCCESS, HttpSender, SendResult, retries_left,
                             retry_delay, sign)

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]

LEASE = timedelta(seconds=60)  # > connect + read timeout; renewed before every attempt
#: An outbox event whose transaction commits more than this after a later event was fanned
#: out would be missed (PostgreSQL hands out ids before commit). Invoice transactions last
#: milliseconds.
FANOUT_SAFETY = timedelta(minutes=5)
UNKNOWN_OUTCOME = ("The worker stopped before the answer was recorded; the request may have "
                   "been delivered")


class WebhookNotFound(LookupError):
    pass


class DeliveryNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Claim:
    """The lease on one webhook's due deliveries, held by `token`."""

    webhook_id: str
    token: str


@dataclass(frozen=True)
class AttemptJob:
    attempt_id: int
    delivery_id: str
    webhook_id: str
    number: int
    url: str
    secret: str
    body: bytes
    automatic_redelivery: bool

    def __repr__(self) -> str:  # never show the secret or the URL
        return f"AttemptJob(delivery={self.delivery_id}, attempt={self.number})"


class WebhookService:
    def __init__(self, db: Database, *, clock: Clock, wall: Clock = utc_now,
                 sender=None, worker_id: str | None = None):
        self.db = db
        self.clock = clock   # business time: timestamps, when attempts are due
        self.wall = wall     # real time: leases and the fan-out safety window
        self.sender = sender or HttpSender()
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:10]}"

    # -- CRUD -------------------------------------------------------------------------
    def create(self, store_id: str, spec: WebhookSpec) -> tuple[Webhook, str]:
        """The new webhook and its secret (the only time the secret is handed out)."""
        secret = spec.secret or random_id(32)
        now = self.clock()
        hook = Webhook(id=random_id(22), store_id=store_id, url=spec.url, secret=secret,
                       enabled=spec.enabled, automatic_redelivery=spec.automatic_redelivery,
                       everything=spec.everything, events=json.dumps(list(spec.events)),
                       created_at=now, updated_at=now)
        with self.db.write() as session:
            session.add(hook)
        log.info("webhook %s created for store %s", hook.id, store_id)
        return hook, secret

    def list(self, store_id: str) -> list[Webhook]:
        with self.db.read() as session:
            return list(session.exec(select(Webhook).where(Webhook.store_id == store_id)
                                     .order_by(Webhook.created_at, Webhook.id)))

    def get(self, store_id: str, webhook_id: str) -> Webhook:
        with self.db.read() as session:
            return self._hook(session, store_id, webhook_id)

    @staticmethod
    def _hook(session, store_id: str, webhook_id: str, *, lock: bool = False) -> Webhook:
        hook = None
        if webhook_id and len(webhook_id) <= 32:
            query = select(Webhook).where(Webhook.id == webhook_id)
            if lock:
                query = query.with_for_update(read=True, key_share=True)  # not deleted meanwhile
            hook = session.exec(query).first()
        if hook is None or hook.store_id != store_id:
            raise WebhookNotFound(webhook_id)
        return hook

    def update(self, store_id: str, webhook_id: str, spec: WebhookSpec) -> Webhook:
        with self.db.write() as session:
            hook = self._hook(session, store_id, webhook_id)
            hook.url, hook.enabled = spec.url, spec.enabled
            hook.automatic_redelivery = spec.automatic_redelivery
            hook.everything, hook.events = spec.everything, json.dumps(list(spec.events))
            if spec.secret:
                hook.secret = spec.secret
            hook.updated_at = self.clock()
            session.add(hook)
        log.info("webhook %s updated", webhook_id)
        return hook

    def delete(self, store_id: str, webhook_id: str) -> None:
        with self.db.write() as session:
            self._hook(session, store_id, webhook_id)
            deliveries = select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == webhook_id)
            session.execute(delete(WebhookDeliveryAttempt)
                            .where(WebhookDeliveryAttempt.delivery_id.in_(deliveries)))
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
            session.execute(delete(Webhook).where(Webhook.id == webhook_id))
        log.info("webhook %s deleted", webhook_id)

    # -- the delivery log ---------------------------------------------------------------
    def deliveries(self, store_id: str, webhook_id: str, count: int) -> list[WebhookDelivery]:
        """Newest first."""
        with self.db.read() as session:
            self._hook(session, store_id, webhook_id)
            return list(session.exec(
                select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.event_id.desc(),
                          WebhookDelivery.generation.desc()).limit(count)))

    def delivery(self, store_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        with self.db.read() as session:
            self._hook(session, store_id, webhook_id)
            return self._delivery(session, webhook_id, delivery_id)

    @staticmethod
    def _delivery(session, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        found = session.get(WebhookDelivery, delivery_id) \
            if delivery_id and len(delivery_id) <= 32 else None
        if found is None or found.webhook_id != webhook_id:
            raise DeliveryNotFound(delivery_id)
        return found

    def attempts(self, delivery_id: str) -> list[WebhookDeliveryAttempt]:
        with self.db.read() as session:
            return list(session.exec(
                select(WebhookDeliveryAttempt)
                .where(WebhookDeliveryAttempt.delivery_id == delivery_id)
                .order_by(WebhookDeliveryAttempt.number)))

    def redeliver(self, store_id: str, webhook_id: str, delivery_id: str) -> str:
        """A new delivery of the same event (next generation); returns its id."""
        for _ in range(5):  # two redeliveries at once may pick the same generation: retry
            try:
                with self.db.write() as session:
                    hook = self._hook(session, store_id, webhook_id, lock=True)
                    old = self._delivery(session, webhook_id, delivery_id)
                    generation = session.exec(
                        select(func.max(WebhookDelivery.generation)).where(
                            WebhookDelivery.webhook_id == webhook_id,
                            WebhookDelivery.event_id == old.event_id)).one() + 1
                    event = session.get(InvoiceEvent, old.event_id)
                    new_id = random_id(22)
                    original = old.original_delivery_id or old.id
                    now = self.clock()
                    session.add(WebhookDelivery(
                        id=new_id, webhook_id=hook.id, event_id=old.event_id,
                        generation=generation, original_delivery_id=original,
                        event_type=old.event_type,
                        body=event_body(event.payload_json, delivery_id=new_id,
                                        webhook_id=hook.id, original_delivery_id=original,
                                        is_redelivery=True),
                        next_attempt_at=now, created_at=now))
                    session.flush()
                log.info("webhook %s delivery %s redelivered as %s", webhook_id, delivery_id,
                         new_id)
                return new_id
            except IntegrityError:
                continue
        raise RuntimeError("could not allocate a redelivery")

    # -- fan-out: outbox events -> deliveries -------------------------------------------
    def fan_out(self, limit: int = 500) -> int:
        """Turn new outbox events into deliveries for every enabled, subscribed webhook of the
        event's store. Returns the number of events processed. Safe in several workers at
        once: one holds the cursor row at a time (the others skip), and every insert is
        insert-once by a unique key anyway."""
        if not self._fanout_pending():
            return 0
        with self.db.write() as session:
            cursor = self._lock_cursor(session)
            if cursor is None:
                return 0  # another worker is fanning out right now
            low = cursor.event_id
            seen = select(WebhookFanout.event_id).where(
                WebhookFanout.event_id == InvoiceEvent.id).exists()
            events = list(session.exec(select(InvoiceEvent).where(InvoiceEvent.id > low, ~seen)
                                       .order_by(InvoiceEvent.id).limit(limit)))
            hooks: dict[str, list[Webhook]] = {}
            stores = sorted({e.store_id for e in events})
            if stores:
                # KEY SHARE: a webhook deleted meanwhile waits for this transaction to end
                # (its deliveries are then deleted with it) instead of failing our inserts.
                for hook in session.exec(select(Webhook).where(
                        Webhook.store_id.in_(stores), Webhook.enabled == True)  # noqa: E712
                        .order_by(Webhook.id).with_for_update(read=True, key_share=True)):
                    hooks.setdefault(hook.store_id, []).append(hook)
            wall = self.wall()
            now = self.clock()
            created = 0
            for event in events:
                for hook in hooks.get(event.store_id, ()):
                    if hook.created_at > event.created_at:
                        continue  # the event happened before the webhook existed
                    if not subscribed(hook.everything, json.loads(hook.events), event.event_type):
                        continue
                    delivery_id = random_id(22)
                    created += insert_ignore(session, WebhookDelivery.__table__, {
                        "id": delivery_id, "webhook_id": hook.id, "event_id": event.id,
                        "generation": 0, "original_delivery_id": None,
                        "event_type": event.event_type,
                        "body": event_body(event.payload_json, delivery_id=delivery_id,
                                           webhook_id=hook.id, original_delivery_id=delivery_id,
                                           is_redelivery=False),
                        "status": "Pending", "attempts": 0, "next_attempt_at": now,
                        "created_at": now}, conflict=["webhook_id", "event_id", "generation"])
                insert_ignore(session, WebhookFanout.__table__,
                              {"event_id": event.id, "processed_at": wall}, conflict=["event_id"])
            self._advance_cursor(session, cursor, wall)
        if events:
            log.debug("webhook fan-out: %d events, %d deliveries", len(events), created)
        return len(events)

    def _fanout_pending(self) -> bool:
        with self.db.read() as session:
            cursor = session.get(WebhookCursor, "fanout")
            low = cursor.event_id if cursor else 0
            seen = select(WebhookFanout.event_id).where(
                WebhookFanout.event_id == InvoiceEvent.id).exists()
            return session.exec(select(InvoiceEvent.id).where(InvoiceEvent.id > low, ~seen)
                                .limit(1)).first() is not None

    def _lock_cursor(self, session) -> WebhookCursor | None:
        query = select(WebhookCursor).where(WebhookCursor.name == "fanout") \
            .with_for_update(skip_locked=True)
        cursor = session.exec(query).first()
        if cursor is None:
            insert_ignore(session, WebhookCursor.__table__,
                          {"name": "fanout", "event_id": 0, "updated_at": self.wall()},
                          conflict=["name"])
            cursor = session.exec(query).first()
        return cursor

    def _advance_cursor(self, session, cursor: WebhookCursor, wall: datetime) -> None:
        """Move the cursor past events fanned out long enough ago that no transaction holding
        a lower id can still be open, and forget their markers."""
        candidate = session.exec(select(func.max(WebhookFanout.event_id)).where(
            WebhookFanout.processed_at <= wall - FANOUT_SAFETY)).one()
        if candidate is None or candidate <= cursor.event_id:
            return
        seen = select(WebhookFanout.event_id).where(
            WebhookFanout.event_id == InvoiceEvent.id).exists()
        gap = session.exec(select(func.min(InvoiceEvent.id)).where(
            InvoiceEvent.id > cursor.event_id, InvoiceEvent.id <= candidate, ~seen)).one()
        new_low = candidate if gap is None else gap - 1
        if new_low <= cursor.event_id:
            return
        session.execute(delete(WebhookFanout).where(WebhookFanout.event_id <= new_low))
        session.execute(update(WebhookCursor).where(WebhookCursor.name == "fanout")
                        .values(event_id=new_low, updated_at=wall))

    # -- claiming and sending -----------------------------------------------------------
    def _claimable(self, now: datetime, wall: datetime):
        due = select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == Webhook.id,
                                               WebhookDelivery.next_attempt_at <= now).exists()
        return select(Webhook.id).where(
            Webhook.enabled == True,  # noqa: E712
            or_(Webhook.lease_until == None, Webhook.lease_until <= wall),  # noqa: E711
            due).order_by(Webhook.lease_until.asc().nulls_first(), Webhook.id)

    def claim(self, limit: int) -> list[Claim]:
        """Lease up to `limit` webhooks that have due deliveries and nobody working on them.
        PostgreSQL: FOR UPDATE SKIP LOCKED, so parallel workers take different webhooks
        without waiting; SQLite: the write transaction is exclusive (BEGIN IMMEDIATE)."""
        if limit <= 0:
            return []
        now, wall = self.clock(), self.wall()
        with self.db.read() as session:  # cheap check first: idle ticks write nothing
            if session.exec(self._claimable(now, wall).limit(1)).first() is None:
                return []
        with self.db.write() as session:
            ids = list(session.exec(self._claimable(now, wall).limit(limit)
                                    .with_for_update(skip_locked=True, key_share=True)))
            claims = [Claim(webhook_id, f"{self.worker_id}:{uuid.uuid4().hex[:12]}")
                      for webhook_id in ids]
            for c in claims:
                session.execute(update(Webhook).where(Webhook.id == c.webhook_id)
                                .values(lease_owner=c.token, lease_until=wall + LEASE))
        return claims

    def adopt(self, claim: Claim) -> Claim | None:
        """Swap the claim's token for a fresh one: if the same claim is run twice (a Huey task
        delivered twice), only one run holds the lease, so one request at a time per webhook."""
        mine = Claim(claim.webhook_id, f"{self.worker_id}:{uuid.uuid4().hex[:12]}")
        with self.db.write() as session:
            swapped = session.execute(update(Webhook).where(
                Webhook.id == claim.webhook_id, Webhook.lease_owner == claim.token)
                .values(lease_owner=mine.token, lease_until=self.wall() + LEASE))
        return mine if swapped.rowcount == 1 else None

    def release(self, claim: Claim) -> None:
        with self.db.write() as session:
            session.execute(update(Webhook).where(Webhook.id == claim.webhook_id,
                                                  Webhook.lease_owner == claim.token)
                            .values(lease_owner=None, lease_until=self.wall()))

    def deliver_claimed(self, claim: Claim, *, max_sends: int = 20) -> int:
        """Send the claimed webhook's due deliveries one after another (oldest first), then
        give the lease back; stop early at `max_sends` or when the endpoint does not answer,
        so other webhooks get the thread. Returns how many requests were made."""
        claim = self.adopt(claim)
        if claim is None:
            return 0
        sent = 0
        try:
            while sent < max_sends:
                job = self.begin_attempt(claim)
                if job is None:
                    break
                result = self.sender.send(job.url, job.body, sign(job.secret, job.body))
                self.finish_attempt(job, result)
                sent += 1
                if result.status == FAILED:
                    break  # no answer: give the thread back rather than wait out each timeout
        finally:
            self.release(claim)
        return sent

    def begin_attempt(self, claim: Claim) -> AttemptJob | None:
        """Record attempt n of the oldest due delivery as being sent, or None when there is
        nothing (left) to do or the lease was lost."""
        with self.db.write() as session:
            wall, now = self.wall(), self.clock()
            renewed = session.execute(update(Webhook).where(
                Webhook.id == claim.webhook_id, Webhook.lease_owner == claim.token,
                Webhook.enabled == True).values(lease_until=wall + LEASE))  # noqa: E712
            if renewed.rowcount != 1:
                return None
            hook = session.get(Webhook, claim.webhook_id)
            while True:
                delivery = session.exec(select(WebhookDelivery).where(
                    WebhookDelivery.webhook_id == hook.id, WebhookDelivery.next_attempt_at <= now)
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id,
                              WebhookDelivery.generation).limit(1)).first()
                if delivery is None:
                    return None
                if self._settle_orphan(session, hook, delivery, now):
                    continue
                number = delivery.attempts + 1
                # If this worker dies mid-send, the delivery comes due again at the time it
                # would be retried anyway (or, with no retries left, is closed as unknown).
                provisional = now + (retry_delay(number) if retries_left(
                    number, hook.automatic_redelivery) else LEASE * 2)
                taken = session.execute(update(WebhookDelivery).where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.attempts == delivery.attempts).values(
                    attempts=number, next_attempt_at=provisional, last_attempt_at=now))
                if taken.rowcount != 1:
                    return None
                attempt = WebhookDeliveryAttempt(delivery_id=delivery.id, number=number,
                                                 worker=claim.token, started_at=now)
                session.add(attempt)
                session.flush()
                return AttemptJob(attempt.id, delivery.id, hook.id, number, hook.url, hook.secret,
                                  delivery.body.encode("utf-8"), hook.automatic_redelivery)

    def _settle_orphan(self, session, hook: Webhook, delivery: WebhookDelivery,
                       now: datetime) -> bool:
        """An attempt left "Sending" by a worker that stopped is recorded as unknown. True
        when the delivery is thereby finished (no retries left), so it is not sent again."""
        orphan = session.exec(select(WebhookDeliveryAttempt).where(
            WebhookDeliveryAttempt.delivery_id == delivery.id,
            WebhookDeliveryAttempt.outcome == "Sending")).first()
        if orphan is None:
            return False
        orphan.outcome, orphan.error_message, orphan.finished_at = FAILED, UNKNOWN_OUTCOME, now
        session.add(orphan)
        log.warning("webhook %s delivery %s attempt %d: outcome unknown (worker stopped)",
                    hook.id, delivery.id, orphan.number)
        if retries_left(delivery.attempts, hook.automatic_redelivery):
            session.flush()
            return False
        delivery.status, delivery.http_code = FAILED, None
        delivery.error_message, delivery.next_attempt_at = UNKNOWN_OUTCOME, None
        session.add(delivery)
        session.flush()
        return True

    def finish_attempt(self, job: AttemptJob, result: SendResult) -> None:
        now = self.clock()
        if result.status == SUCCESS or not (result.retryable and
                                            retries_left(job.number, job.automatic_redelivery)):
            next_at = None
        else:
            next_at = now + retry_delay(job.number, result.retry_after)
        with self.db.write() as session:
            session.execute(update(WebhookDeliveryAttempt).where(
                WebhookDeliveryAttempt.id == job.attempt_id).values(
                outcome=result.status, http_code=result.http_code,
                error_message=result.error, finished_at=now, duration_ms=result.duration_ms))
            # Only the latest attempt decides the delivery's state.
            session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == job.delivery_id, WebhookDelivery.attempts == job.number)
                .values(status=result.status, http_code=result.http_code,
                        error_message=result.error, next_attempt_at=next_at))
        WEBHOOK_DELIVERIES.labels(outcome=result.status).inc()
        detail = f" {result.http_code}" if result.http_code else f" ({result.error})"
        log.info("webhook %s delivery %s attempt %d: %s%s in %d ms", job.webhook_id,
                 job.delivery_id, job.number, result.status, detail, result.duration_ms)
        if next_at is not None:
            log.info("webhook %s delivery %s: next attempt in %ds", job.webhook_id,
                     job.delivery_id, int((next_at - now).total_seconds()))

    def run_once(self, limit: int = 100) -> int:
        """Fan out, then claim and send synchronously in this thread (CLI and tests)."""
        self.fan_out()
        sent = 0
        for claim in self.claim(limit):
            sent += self.deliver_claimed(claim)
        return sent
