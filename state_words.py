"""Plain words, in the reader's language, for the state codes the pages show.

The codes themselves (Greenfield's ``Expired`` + ``PaidPartial``, a payout's ``sent``, a
webhook delivery's ``HttpError``) stay in the API, the CSV files and the tooltips for the
people who need them; a cashier, an owner or a city official reads "Expired — part paid".
Used by the back office, the city dashboard and the POS (a Jinja global, ``state_word``).
"""
from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

# Greenfield status → the word when no additional status says more.
_STATUS = {
    "New": _l("Waiting for payment"),
    "Processing": _l("Paid — waiting for confirmation"),
    "Settled": _l("Paid"),
    "Expired": _l("Expired — not paid"),
    "Invalid": _l("Failed — not confirmed"),
}
# (status, additional status) pairs that read better as one phrase.
_PAIRS = {
    ("New", "PaidPartial"): _l("Part paid — waiting for the rest"),
    ("Processing", "PaidOver"): _l("Overpaid — waiting for confirmation"),
    ("Processing", "PaidPartial"): _l("Paid (within tolerance) — waiting for confirmation"),
    ("Settled", "PaidOver"): _l("Paid — more than due"),
    ("Settled", "PaidPartial"): _l("Paid (a little under, within tolerance)"),
    ("Settled", "Marked"): _l("Marked paid by the merchant"),
    ("Expired", "PaidPartial"): _l("Expired — part paid"),
    ("Expired", "PaidLate"): _l("Expired — paid too late"),
    ("Expired", "PaidOver"): _l("Expired — paid too late"),
    ("Invalid", "Marked"): _l("Cancelled"),
    ("Invalid", "PaidPartial"): _l("Failed — part paid"),
    ("Invalid", "PaidOver"): _l("Failed — overpaid"),
    ("Invalid", "PaidLate"): _l("Failed — paid too late"),
}
# Any other pair: the status word and the additional word.
_ADDITIONAL = {
    "PaidPartial": _l("part paid"),
    "PaidOver": _l("overpaid"),
    "PaidLate": _l("paid late"),
    "Marked": _l("marked by the merchant"),
}
_PAYOUT = {
    "created": _l("Prepared"),
    "sent": _l("On its way"),
    "paid": _l("Paid out"),
    "failed": _l("Failed"),
    "returned": _l("Returned by the bank"),
}
_DELIVERY = {
    "Pending": _l("Waiting to be sent"),
    "Sending": _l("Being sent"),
    "HttpSuccess": _l("Delivered"),
    "HttpError": _l("Refused by your server"),
    "Failed": _l("Not delivered"),
}
_REFUND = {
    "open": _l("Waiting for the payer's address"),
    "submitted": _l("Waiting for approval"),
    "approved": _l("Approved, to be sent"),
    "sent": _l("Refund sent"),
    "credited": _l("Credited to the merchant"),
}
_CONVERSION = {
    "created": _l("Waiting to be sold"),
    "pending": _l("Being sold"),
    "done": _l("Sold"),
    "failed": _l("Failed"),
}
KINDS = {"payout": _PAYOUT, "delivery": _DELIVERY, "refund": _REFUND, "conversion": _CONVERSION}


def invoice_state(status: str, additional: str | None = None) -> str:
    """'Expired', 'PaidPartial' → 'Expired — part paid' (in the request's language)."""
    additional = additional if additional and additional != "None" else None
    if additional and (status, additional) in _PAIRS:
        return str(_PAIRS[(status, additional)])
    word = str(_STATUS.get(status, status))
    if additional:
        return _("%(state)s — %(detail)s", state=word,
                 detail=str(_ADDITIONAL.get(additional, additional)))
    return word


def greenfield_name(status: str, additional: str | None = None) -> str:
    """The technical name for a tooltip: 'Expired · PaidPartial'."""
    return f"{status} · {additional}" if additional and additional != "None" else status


def state_word(kind: str, code: str | None) -> str:
    """A payout's, webhook delivery's, refund claim's or conversion's code in plain words."""
    return str(KINDS[kind].get(code or "", code or ""))
