"""Prometheus metrics: event counters recorded where things happen, state read at scrape time.

Counters and the request histogram live in each process. Under gunicorn (several web
processes) and beside `flask worker` / the webhook consumers on the same host they are
kept in prometheus_client's multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, by default
`<instance>/prometheus`, emptied by `gunicorn.conf.py` when the web server starts), so a
scrape of any web process sums every process of the host. Labels are bounded: route
templates, statuses, outcomes, configured rate sources and venues; never a store or an
invoice id.

State (chain tip, watcher lag, rate ages, 0-conf exposure, exchange holdings, the last
ledger check) is not a per-process number: `StateCollector` reads it from the database
when Prometheus scrapes, so every process answers the same.

A counter that reports a database change counts after the commit (`count_after_commit`):
a rolled-back transaction counts nothing.
"""
from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.orm import Session

from operations import MULTIPROC_ENV

# prometheus_client decides between per-process and multiprocess values on import:
# `operations.prepare_multiprocess` runs before this module is first imported.
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_DURATION = Histogram(
    "busanpay_http_request_duration_seconds", "HTTP requests by route template and status",
    ["route", "method", "status"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
INVOICES_CREATED = Counter("busanpay_invoices_created_total", "Invoices created",
                           registry=REGISTRY)
INVOICE_TRANSITIONS = Counter("busanpay_invoice_transitions_total",
                              "Invoice status changes, by the new status", ["status"],
                              registry=REGISTRY)
RATE_REFUSALS = Counter("busanpay_rate_refusals_total",
                        "Invoices refused for want of a fresh, agreeing rate", registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter("busanpay_webhook_deliveries_total",
                             "Merchant webhook delivery attempts, by outcome", ["outcome"],
                             registry=REGISTRY)
PAYOUTS = Counter("busanpay_payouts_total", "Payouts entering a status", ["status"],
                  registry=REGISTRY)

_PENDING = "busanpay_metrics_pending"


def count_after_commit(session: Session, counter, amount: int = 1, **labels) -> None:
    """Increment `counter` once the session's transaction commits (never on rollback)."""
    if amount:
        session.info.setdefault(_PENDING, []).append((counter, labels, amount))


@event.listens_for(Session, "after_commit")
def _count_committed(session) -> None:
    for counter, labels, amount in session.info.pop(_PENDING, ()):
        (counter.labels(**labels) if labels else counter).inc(amount)


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session) -> None:
    session.info.pop(_PENDING, None)


def count_transition(instance, status: str) -> None:
    """An ORM-loaded invoice moves to `status`: counted when its session commits."""
    from sqlalchemy.orm import object_session

    session = object_session(instance)
    if session is None:
        INVOICE_TRANSITIONS.labels(status=status).inc()
    else:
        count_after_commit(session, INVOICE_TRANSITIONS, status=status)


# -- state read at scrape time ---------------------------------------------------------------

LEDGER_CHECK_SETTING = "ledger_check_ok"  # city_setting row: 1/0, updated_at = when checked


class StateCollector:
    """Gauges read from the database at scrape time (a handful of indexed queries)."""

    def __init__(self, gateway):
        self.gateway = gateway

    def describe(self):
        return []

    def collect(self):
        gateway = self.gateway
        now: datetime = gateway.clock()
        yield from self._chain(now)
        yield from self._rates(now)
        with gateway.db.read() as session:
            yield from self._exposure(session, now)
            yield from self._exchange(session)
            yield from self._ledger_check(session, now)

    def _chain(self, now):
        from chain.models import ChainWatcherState

        with self.gateway.db.read() as session:
            state = session.get(ChainWatcherState, 1)
        up = GaugeMetricFamily("busanpay_chain_backend_up",
                               "1 when the watcher's last pass reached the chain backend")
        tip = GaugeMetricFamily("busanpay_chain_tip_height", "The backend's best block height")
        lag = GaugeMetricFamily("busanpay_watcher_lag_seconds",
                                "Seconds since the watcher last covered chain and mempool")
        if state is not None:
            up.add_metric([], 1 if state.last_success_at is not None and not state.failures
                          else 0)
            if state.tip_height is not None:
                tip.add_metric([], state.tip_height)
            covered = state.covered_at or state.last_success_at
            if covered is not None:
                lag.add_metric([], max((now - covered).total_seconds(), 0.0))
        else:
            up.add_metric([], 0)
        yield from (up, tip, lag)

    def _rates(self, now):
        age = GaugeMetricFamily("busanpay_rate_age_seconds",
                                "Age of each configured rate source's last good quote",
                                labels=["source"])
        for row in self.gateway.rates.health():  # the sources configured: a bounded label
            if row.get("age_seconds") is not None:
                age.add_metric([row["name"]], row["age_seconds"])
        yield age

    def _exposure(self, session, now):
        from dashboard.queries import exposure

        found = exposure(session, self.gateway.settings.zero_conf_limit_krw, now, limit=None)
        total = GaugeMetricFamily("busanpay_zero_conf_exposure_krw",
                                  "Won the city stands to lose to double spends of "
                                  "0-confirmation payments")
        total.add_metric([], found.total_krw)
        cap = GaugeMetricFamily("busanpay_zero_conf_exposure_cap_krw",
                                "The city's cap on open 0-confirmation exposure")
        cap.add_metric([], found.cap_krw)
        yield from (total, cap)

    def _exchange(self, session):
        from settlement.venues import exposures

        per_venue = {
            "holdings": ("busanpay_exchange_holdings_krw",
                         "Won the treasury holds at each conversion venue, with the BTC "
                         "deposited there and not sold yet at the current rate (ledger)"),
            "cap": ("busanpay_exchange_cap_krw", "The city's cap on holdings at each venue"),
            "up": ("busanpay_exchange_venue_up", "1 when the venue's last balance call answered"),
            "mismatch": ("busanpay_exchange_balance_mismatch",
                         "1 when the venue's own balance disagrees with the ledger"),
        }
        families = {key: GaugeMetricFamily(name, text, labels=["venue"])
                    for key, (name, text) in per_venue.items()}
        for row in exposures(self.gateway, session):
            families["holdings"].add_metric([row.venue], row.holdings_krw)
            if row.cap_krw is not None:
                families["cap"].add_metric([row.venue], row.cap_krw)
            families["up"].add_metric([row.venue], int(row.up))
            families["mismatch"].add_metric([row.venue], int(row.mismatch))
        yield from families.values()

    def _ledger_check(self, session, now):
        from dashboard.models import CitySetting

        row = session.get(CitySetting, LEDGER_CHECK_SETTING)
        ok = GaugeMetricFamily("busanpay_ledger_check_ok",
                               "1 when the last `ledger check` found the books in agreement")
        age = GaugeMetricFamily("busanpay_ledger_check_age_seconds",
                                "Seconds since the last ledger check")
        if row is not None:
            ok.add_metric([], row.value)
            age.add_metric([], max((now - row.updated_at).total_seconds(), 0.0))
        yield from (ok, age)


def render(gateway) -> tuple[bytes, str]:
    """The exposition text: this host's counters (every process in multiprocess mode) and
    the database's state."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_ENV in os.environ:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(StateCollector(gateway))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()
