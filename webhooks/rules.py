"""Pure rules for webhooks: parsing a Greenfield webhook body, the JSON shapes sent back, and
the event body a delivery carries. No database, no Flask."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from payments.invoice_status import EVENT_MONEY_FACTS
from payments.invoice_request import FieldError, InvalidRequest
from webhooks.destinations import literal_refusal

#: The events this gateway emits (Greenfield's invoice events).
EVENT_TYPES = ("InvoiceCreated", "InvoiceReceivedPayment", "InvoiceProcessing", "InvoiceExpired",
               "InvoiceSettled", "InvoiceInvalid", "InvoicePaymentSettled")
#: Busan Pay's own events, sent only to webhooks that name them in specificEvents (so a
#: Greenfield client subscribed to "everything" never meets a type it does not know):
#: BusanPayInvoiceIncident, an incident opened or closed on an invoice (chain/watcher.py).
OPT_IN_EVENT_TYPES = ("BusanPayInvoiceIncident",)
ALL_EVENT_TYPES = EVENT_TYPES + OPT_IN_EVENT_TYPES
#: Outbox events for the gateway's own consumers (the ledger), never delivered.
INTERNAL_EVENT_TYPES = (EVENT_MONEY_FACTS,)
DELIVERY_STATUSES = ("Pending", "HttpSuccess", "HttpError", "Failed")
MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 200
DEFAULT_DELIVERY_COUNT = 50
MAX_DELIVERY_COUNT = 1000
#: How a URL naming a non-public literal address is refused (the back office keys on it).
PUBLIC_ONLY = "must point at a public address"
KNOWN_FIELDS = {"id", "enabled", "automaticRedelivery", "url", "authorizedEvents", "secret"}


@dataclass(frozen=True)
class WebhookSpec:
    url: str
    enabled: bool = True
    automatic_redelivery: bool = True
    everything: bool = True
    events: tuple[str, ...] = ()
    secret: str | None = None  # None: generate (create) or keep (update)


def _bool(body: dict, name: str, default: bool, errors: list[FieldError], path: str = "") -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.append(FieldError(path + name, "must be true or false"))
        return default
    return value


def check_url(raw: Any, *, allow_private: bool = False) -> str | None:
    """The problem with a webhook URL, or None when it can be used. A literal non-public
    address is refused here already; names are checked when each delivery resolves them."""
    if not isinstance(raw, str) or not raw.strip():
        return "url is required: an absolute http or https URL"
    url = raw.strip()
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an absolute http or https URL"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "is not a valid URL"
    reason = None if allow_private else literal_refusal(parts.hostname)
    if reason:
        return (f"{PUBLIC_ONLY}: {reason} addresses are not allowed "
                "(webhooks are delivered only to public internet addresses)")
    return None


def parse_webhook(body: Any, *, allow_private: bool = False) -> WebhookSpec:
    """A create or update body (Greenfield's WebhookDataCreate/Update), or InvalidRequest with
    every problem. `id` is accepted and ignored so a fetched webhook can be sent back."""
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("", "the body must be a JSON object")])
    errors: list[FieldError] = []
    for name in sorted(set(body) - KNOWN_FIELDS):
        errors.append(FieldError(name, "unknown field"))
    problem = check_url(body.get("url"), allow_private=allow_private)
    if problem:
        errors.append(FieldError("url", problem))
    enabled = _bool(body, "enabled", True, errors)
    automatic = _bool(body, "automaticRedelivery", True, errors)
    everything, events = True, ()
    authorized = body.get("authorizedEvents")
    if authorized is not None:
        if not isinstance(authorized, dict):
            errors.append(FieldError("authorizedEvents", "must be an object"))
        else:
            for name in sorted(set(authorized) - {"everything", "specificEvents"}):
                errors.append(FieldError(f"authorizedEvents.{name}", "unknown field"))
            everything = _bool(authorized, "everything", True, errors, "authorizedEvents.")
            specific = authorized.get("specificEvents")
            if specific is not None:
                if not isinstance(specific, list):
                    errors.append(FieldError("authorizedEvents.specificEvents",
                                             "must be a list of event types"))
                else:
                    picked = []
                    for i, name in enumerate(specific):
                        if name not in ALL_EVENT_TYPES:
                            errors.append(FieldError(
                                f"authorizedEvents.specificEvents[{i}]",
                                f"unknown event {name!r}: use {', '.join(ALL_EVENT_TYPES)}"))
                        elif name not in picked:
                            picked.append(name)
                    events = tuple(picked)
    secret = body.get("secret")
    if secret is not None:
        if not isinstance(secret, str):
            errors.append(FieldError("secret", "must be a string"))
            secret = None
        elif len(secret) > MAX_SECRET_LENGTH:
            errors.append(FieldError("secret", f"at most {MAX_SECRET_LENGTH} characters"))
            secret = None
        elif not secret:
            secret = None
    if errors:
        raise InvalidRequest(errors)
    return WebhookSpec(url=body["url"].strip(), enabled=enabled, automatic_redelivery=automatic,
                       everything=everything, events=events, secret=secret)


def subscribed(everything: bool, events: tuple[str, ...] | list[str], event_type: str) -> bool:
    if event_type in INTERNAL_EVENT_TYPES:
        return False
    if event_type in OPT_IN_EVENT_TYPES:
        return event_type in events
    return everything or event_type in events


def unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def webhook_json(hook, *, secret: str | None = None) -> dict:
    data = {
        "id": hook.id,
        "enabled": hook.enabled,
        "automaticRedelivery": hook.automatic_redelivery,
        "url": hook.url,
        "authorizedEvents": {"everything": hook.everything,
                             "specificEvents": json.loads(hook.events)},
    }
    if secret is not None:
        data["secret"] = secret
    return data


def delivery_json(delivery) -> dict:
    return {
        "id": delivery.id,
        "timestamp": unix(delivery.created_at),
        "deliveryTime": unix(delivery.last_attempt_at),
        "httpCode": delivery.http_code,
        "errorMessage": delivery.error_message,
        "status": delivery.status,
    }


def event_body(payload_json: str, *, delivery_id: str, webhook_id: str,
               original_delivery_id: str, is_redelivery: bool) -> str:
    """The body sent: Greenfield's delivery fields first, then the outbox payload as stored
    (spliced as text, so the payload's numbers and key order are kept exactly)."""
    payload = payload_json.strip()
    if not (payload.startswith("{") and payload.endswith("}")):
        raise ValueError("an outbox payload must be a JSON object")
    head = json.dumps({"deliveryId": delivery_id, "webhookId": webhook_id,
                       "originalDeliveryId": original_delivery_id,
                       "isRedelivery": is_redelivery})
    rest = payload[1:].strip()
    return head if rest == "}" else head[:-1] + ", " + rest
