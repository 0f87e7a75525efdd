"""Prometheus metrics at /metrics: the bearer token, and counters that move by exactly what a
journey did (invoice, demo-chain payment, settlement, webhook, daily payout)."""
from __future__ import annotations

from datetime import date

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import auth, make_merchant
from tests.fakes.webhook_receiver import WebhookReceiver

TOKEN = "metrics-token-for-tests"
ROUTE = "/api/v1/stores/<store_id>/invoices"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "metrics_token": TOKEN, "webhook_allow_private": True}  # receivers on 127.0.0.1


def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    res = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 200, res.get_data(as_text=True)
    assert res.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(res.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_the_bearer_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"token {TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_configured_token_there_are_no_metrics(app_config):
    from app import create_app

    app = create_app({**app_config, "metrics_token": ""})
    try:
        res = app.test_client().get("/metrics", headers={"Authorization": "Bearer "})
        assert res.status_code == 404
    finally:
        app.extensions["busanpay"].close()


def test_a_journey_moves_each_counter_by_what_happened(app, client, gateway, clock):
    from chain.runtime import demo_chain_for, watcher_for
    from operations.checks import record_ledger_check
    from settlement.config import SettlementConfig
    from settlement.daily import run_settlement
    from settlement.install import install
    from settlement.posting_job import run_once as post_all
    from webhooks.worker import service_for

    install(app)
    gateway.extras["settlement_config"] = SettlementConfig(payout_rail="bankfile",
                                                           auto_settlement=False)
    store_id, token = make_merchant(app)
    client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "x"}, headers=auth(token))
    before = scrape(client)
    with WebhookReceiver() as receiver:
        hook = client.post(f"/api/v1/stores/{store_id}/webhooks", headers=auth(token),
                           json={"url": receiver.url}).get_json()
        receiver.secret = hook["secret"]
        res = client.post(f"/api/v1/stores/{store_id}/invoices", headers=auth(token),
                          json={"amount": "15000", "checkout": {"speedPolicy": "MediumSpeed"}})
        assert res.status_code == 200
        invoice_id = res.get_json()["id"]
        method = client.get(f"/api/v1/stores/{store_id}/invoices/{invoice_id}/payment-methods",
                            headers=auth(token)).get_json()[0]
        chain, watcher = demo_chain_for(gateway), watcher_for(gateway)
        chain.pay(method["destination"], int(round(float(method["due"]) * 100_000_000)))
        watcher.run_once()
        chain.mine()
        watcher.run_once()
        assert client.get(f"/api/v1/invoices/{invoice_id}", headers=auth(token)
                          ).get_json()["status"] == "Settled"
        delivered = service_for(gateway).run_once()
        assert delivered >= 3 and len(receiver.requests) == delivered
        post_all(gateway)
        clock.advance(days=1)
        settled = run_settlement(gateway, date(2026, 11, 23))
        assert [p["status"] for p in settled["created"]] == ["sent"]
        assert record_ledger_check(gateway) is True
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("busanpay_invoices_created_total") == 1
    assert moved("busanpay_invoice_transitions_total", status="Processing") == 1
    assert moved("busanpay_invoice_transitions_total", status="Settled") == 1
    assert moved("busanpay_invoice_transitions_total", status="Expired") == 0
    assert moved("busanpay_webhook_deliveries_total", outcome="HttpSuccess") == delivered
    assert moved("busanpay_webhook_deliveries_total", outcome="HttpError") == 0
    assert moved("busanpay_payouts_total", status="created") == 1
    assert moved("busanpay_payouts_total", status="sent") == 1
    assert moved("busanpay_payouts_total", status="paid") == 0
    assert moved("busanpay_rate_refusals_total") == 0
    # The request histogram is labelled by route template: one 200 and the earlier 422.
    assert moved("busanpay_http_request_duration_seconds_count",
                 route=ROUTE, method="POST", status="200") == 1
    assert value(after, "busanpay_http_request_duration_seconds_count",
                 route=ROUTE, method="POST", status="422") >= 1
    # No unbounded label: no store or invoice id appears anywhere in the exposition.
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True)
    assert store_id not in text and invoice_id not in text
    # State read from the database at scrape time.
    assert value(after, "busanpay_chain_backend_up") == 1
    assert value(after, "busanpay_chain_tip_height") == chain.tip().height
    assert value(after, "busanpay_zero_conf_exposure_krw") == 0
    assert value(after, "busanpay_ledger_check_ok") == 1
    [(source, age)] = [(dict(labels)["source"], v) for (name, labels), v in after.items()
                       if name == "busanpay_rate_age_seconds"]
    assert (source, age) == ("fixed", 0.0)  # a fixed rate is always fresh


def test_a_refused_quote_counts_as_a_rate_refusal(app_config, merchant):
    from app import create_app
    from payments.rates import RateUnavailable

    class NoRate:
        def current(self):
            raise RateUnavailable("no fresh primary rate")

        def health(self):
            return []

    app = create_app({**app_config, "rates": NoRate()})
    try:
        client = app.test_client()
        store_id, token = make_merchant(app, name="Nampo Books")
        before = scrape(client)
        res = client.post(f"/api/v1/stores/{store_id}/invoices", json={"amount": "15000"},
                          headers=auth(token))
        assert res.status_code == 503
        after = scrape(client)
        assert value(after, "busanpay_rate_refusals_total") - \
            value(before, "busanpay_rate_refusals_total") == 1
        assert value(after, "busanpay_invoices_created_total") == \
            value(before, "busanpay_invoices_created_total")
    finally:
        app.extensions["busanpay"].close()


def test_the_sample_alerts_and_dashboard_use_only_metrics_the_app_exports(client):
    import json
    import re
    from pathlib import Path

    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    rules = yaml.safe_load((deploy / "prometheus-alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((deploy / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"busanpay_[a-z_]+", e)}
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True)
    exported = set(re.findall(r"^# TYPE (busanpay_[a-z_]+)", text, re.MULTILINE))
    suffixed = {n + s for n in exported for s in ("", "_total", "_bucket", "_count", "_sum")}
    assert used and used <= suffixed, used - suffixed
    assert {"busanpay_invoices_created_total", "busanpay_ledger_check_ok"} <= used
