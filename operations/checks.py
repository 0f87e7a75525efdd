"""The periodic ledger check: `ledger check`'s verdict kept where every process can read it
(the `city_setting` row `ledger_check_ok`: 1 or 0, `updated_at` = when it ran), for the
`busanpay_ledger_check_ok` metric and its alert."""
from __future__ import annotations

import logging

from background import Job
from database import upsert
from operations.metrics import LEDGER_CHECK_SETTING

log = logging.getLogger(__name__)


def record_ledger_check(gateway) -> bool:
    from dashboard.models import CitySetting
    from settlement.reconcile import check_ledger

    report = check_ledger(gateway)
    ok = bool(report["ok"])
    with gateway.db.write() as session:
        upsert(session, CitySetting.__table__,
               {"name": LEDGER_CHECK_SETTING, "value": int(ok), "updated_by": None,
                "updated_at": gateway.clock()},
               key=["name"], update=["value", "updated_at"])
    if not ok:
        log.error("ledger check found %d problem(s)", len(report.get("problems", [])))
    return ok


def jobs(gateway) -> list[Job]:
    seconds = gateway.settings.ledger_check_seconds
    if seconds <= 0:
        return []
    return [Job("ledger-check", float(seconds), lambda: record_ledger_check(gateway))]
