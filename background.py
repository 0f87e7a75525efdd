"""Periodic background jobs: a small scheduler used in-process on the embedded default
and by `flask --app app worker` when scaled out.

Each job is safe to run in several processes at once (the jobs themselves take the
database locks they need), so the scheduler only has to call them on time.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    interval: float
    run: Callable[[], object]
    wake: threading.Event | None = None  # set by a notifier to run early


class Scheduler:
    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, job: Job) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                job.run()
                backoff = 0.0
            except Exception:  # a failing job must not kill the loop; it retries with back-off
                backoff = min(max(backoff * 2, job.interval), 300.0)
                log.exception("background job %s failed; retrying in %.0fs", job.name, backoff)
            delay = max(backoff or job.interval - (time.monotonic() - started), 0.05)
            if job.wake is not None:
                job.wake.wait(delay)
                job.wake.clear()
            else:
                self._stop.wait(delay)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for job in self.jobs:
            if job.wake is not None:
                job.wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            self.stop()


def jobs_for(gateway) -> list[Job]:
    """The periodic work of one gateway; the watcher and webhook jobs join as they land."""
    jobs = []
    rates = gateway.rates
    if hasattr(rates, "poll_and_store"):
        jobs.append(Job("rates", gateway.settings.rate_poll_seconds, rates.poll_and_store))
    from chain.jobs import jobs as chain_jobs

    jobs.extend(chain_jobs(gateway))
    from lightning.jobs import jobs as lightning_jobs

    jobs.extend(lightning_jobs(gateway))
    for extra in gateway.extras.get("jobs", []):
        jobs.append(extra)
    return jobs
