"""The city's Lightning panel (/city/lightning): the node's health and liquidity against the
day's expected Lightning volume, the listener's state, and the share of payments by method
(today and the selected period; `?format=csv` downloads the shares).

The node is never asked while a page renders (a hung node must not hang the dashboard): its
health and liquidity come from the last background check (lightning/node_watch.py), the
listener's from its state row. Same access rules as the rest of /city (its guard)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from dashboard import charts
from dashboard.csvout import csv_response
from dashboard.fmt import btc, compact_won, count, seoul_day, won
from dashboard.lightning_figures import expected_volume, method_share
from dashboard.queries import preset_period
from dashboard.web import _lang, _period, bp
from lightning.backend import MSAT_PER_SAT

METHOD_NAMES = {"BTC-CHAIN": _l("On-chain"), "BTC-LN": _l("Lightning")}
BACKEND_NAMES = {"lnd": "LND", "cln": "Core Lightning", "demo": _l("Demo node (offline)")}
LISTENER_STATES = {"ok": _l("Following the node"), "down": _l("Cannot reach the node"),
                   "starting": _l("Starting"), "off": _l("Off")}


def share_rows(shares) -> list[dict]:
    """Each method with its share of the payments and of the won (whole per cent)."""
    total_n = sum(s.payments for s in shares)
    total_krw = sum(s.krw for s in shares)
    return [{"method": s.method, "name": str(METHOD_NAMES.get(s.method, s.method)),
             "payments": s.payments, "sats": s.sats, "krw": s.krw,
             "payments_pct": _percent(s.payments, total_n),
             "krw_pct": _percent(s.krw, total_krw)} for s in shares]


def _percent(part: int, whole: int) -> int | None:
    return None if not whole else (200 * part + whole) // (2 * whole)  # half up


def _method_chart(chart_id: str, rows: list[dict], period) -> str:
    lang = _lang()
    return charts.bar_list_chart(
        chart_id, _("Won received by method"),
        _("Won received by payment method, %(start)s to %(end)s: %(list)s.",
          start=period.start.isoformat(), end=period.end.isoformat(),
          list="; ".join(f"{r['name']} {won(r['krw'])}" for r in rows)),
        [charts.Bar(r["name"], r["krw"], _("%(name)s: %(amount)s in %(n)s payments",
                                           name=r["name"], amount=won(r["krw"]),
                                           n=count(r["payments"])))
         for r in rows], lambda v: compact_won(v, lang))


@bp.context_processor
def _overview_card():
    """The overview's card: payments by method in its period, the node's last check."""
    if request.endpoint != "city.overview" or request.args.get("format") == "csv":
        return {}
    from dashboard.queries import parse_period
    from lightning.node_watch import snapshot
    from untrusted import UntrustedInput

    gateway = current_app.extensions["busanpay"]
    try:
        period, _error = parse_period(request.args, gateway.clock())
    except UntrustedInput:
        return {}
    with gateway.db.read() as s:
        rows = share_rows(method_share(s, period.utc_start, period.utc_end))
        expected = expected_volume(s, gateway.clock()) if gateway.lightning else None
    node = snapshot(gateway.db) if gateway.lightning else None
    inbound = node.info.inbound_msat // MSAT_PER_SAT if node and node.info.reachable else None
    return {"ln_card": {"rows": rows, "chart": _method_chart("chart-methods", rows, period),
                        "on": gateway.lightning is not None, "node": node,
                        "short": inbound is not None and inbound < expected.sats}}


@bp.get("/lightning")
def lightning():
    from lightning.listener import health
    from lightning.node_watch import STALE_SECONDS, snapshot

    gateway = current_app.extensions["busanpay"]
    period = _period()
    now = gateway.clock()
    today = seoul_day(now)
    with gateway.db.read() as s:
        in_period = share_rows(method_share(s, period.utc_start, period.utc_end))
        today_period = preset_period("today", today)
        in_today = share_rows(method_share(s, today_period.utc_start, today_period.utc_end))
        expected = expected_volume(s, now)
    if request.args.get("format") == "csv":
        rows = [["today", today, today, r["method"], r["payments"], r["sats"], r["krw"]]
                for r in in_today]
        rows += [["period", period.start, period.end, r["method"], r["payments"], r["sats"],
                  r["krw"]] for r in in_period]
        return csv_response(f"busanpay-city-methods-{period.slug()}.csv",
                            ["scope", "from", "to", "method", "payments", "sats", "krw"], rows)
    on = gateway.lightning is not None
    node = snapshot(gateway.db) if on else None
    stale = node is not None and now - node.checked_at > timedelta(seconds=STALE_SECONDS)
    listener = health(gateway)
    lag, last_settlement = None, None
    if listener.get("lastSettlement") is not None:
        last_settlement = datetime.fromtimestamp(listener["lastSettlement"], timezone.utc)
    if listener.get("lastSuccess") is not None:
        lag = max(0, int(now.timestamp()) - listener["lastSuccess"])
    inbound_sats = node.info.inbound_msat // MSAT_PER_SAT if node and node.info.reachable else None
    short = inbound_sats is not None and inbound_sats < expected.sats
    chart = _method_chart("chart-methods", in_period, period)
    gauge = None
    if inbound_sats is not None:
        gauge = charts.gauge("chart-inbound", _("Expected Lightning volume against inbound "
                                                "liquidity"),
                             _("%(expected)s expected today; the node can receive %(inbound)s.",
                               expected=btc(expected.sats), inbound=btc(inbound_sats)),
                             expected.sats, inbound_sats)
    return render_template(
        "dashboard/lightning.html", period=period, on=on, node=node, stale=stale,
        backend_names=BACKEND_NAMES, listener=listener, listener_states=LISTENER_STATES,
        lag=lag, last_settlement=last_settlement, expected=expected, inbound_sats=inbound_sats,
        short=short, in_today=in_today, in_period=in_period, chart=chart, gauge=gauge, now=now,
        msat=MSAT_PER_SAT, active="lightning")
