"""The city's view of its conversion venues (/city/venues): what the treasury holds at each,
from the ledger, against the cap the city admin sets (audited), and whether the venue
answers and agrees with our books. Problems are also shown first on the city overview and
at the head of the exceptions queue (`venue_alerts`), until the condition ends."""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from accounts.web import require_roles
from dashboard.fmt import won
from dashboard.web import bp


def _exposures():
    from settlement.venues import exposures

    gateway = current_app.extensions["busanpay"]
    with gateway.db.read() as session:
        return exposures(gateway, session)


@bp.context_processor
def _venue_alerts():
    """The venues needing attention, for the overview's banner and the exceptions queue
    (first there): computed from each venue's last balance check at read time."""
    if request.endpoint not in ("city.overview", "city.exceptions"):
        return {}
    return {"venue_alerts": [v for v in _exposures() if v.attention]}


@bp.get("/venues")
def venues():
    gateway = current_app.extensions["busanpay"]
    return render_template("dashboard/venues.html", venues=_exposures(), active="venues",
                           can_set_cap=current_user.role == "city_admin", now=gateway.clock())


@bp.post("/venues/cap")
@require_roles("city_admin")
def set_venue_cap():
    from settlement.venues import set_cap

    name = (request.form.get("venue") or "").strip()[:32]
    raw = (request.form.get("cap_krw") or "").replace(",", "").replace("₩", "").strip()
    if raw and (not raw.isdigit() or len(raw) > 13):
        flash(_("The cap is a whole number of won (0 to 9,999,999,999,999), or empty for "
                "no cap."), "error")
        return redirect(url_for("city.venues"))
    cap = int(raw) if raw else None
    try:
        set_cap(current_app.extensions["busanpay"], name, cap, current_user.actor())
    except ValueError:
        flash(_("No conversion venue has that name."), "error")
        return redirect(url_for("city.venues"))
    flash(_("The cap at %(venue)s is now %(cap)s.", venue=name,
            cap=won(cap) if cap is not None else _("none")), "ok")
    return redirect(url_for("city.venues"))
