"""Greenfield's store webhook API: /api/v1/stores/{storeId}/webhooks… (thin edge)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from merchants.api_auth import api_error, require_permission
from merchants.service import CAN_MODIFY_WEBHOOKS
from payments.api import handle_body_errors, query_int, read_json
from webhooks.rules import (DEFAULT_DELIVERY_COUNT, MAX_DELIVERY_COUNT, delivery_json,
                            parse_webhook, webhook_json)
from webhooks.service import DeliveryNotFound, WebhookNotFound
from webhooks.worker import service_for

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/stores/<store_id>/webhooks")


def service():
    return service_for(current_app.extensions["busanpay"])


def parse(body):
    return parse_webhook(body, allow_private=current_app.extensions[
        "busanpay"].settings.webhook_allow_private)


handle_body_errors(bp)


@bp.errorhandler(WebhookNotFound)
def _webhook_not_found(_err):
    return api_error(404, "webhook-not-found", "The webhook could not be found")


@bp.errorhandler(DeliveryNotFound)
def _delivery_not_found(_err):
    return api_error(404, "webhookdelivery-not-found", "The webhook delivery could not be found")


@bp.get("")
@require_permission(CAN_MODIFY_WEBHOOKS)
def list_webhooks(store_id: str):
    return jsonify([webhook_json(h) for h in service().list(store_id)])


@bp.post("")
@require_permission(CAN_MODIFY_WEBHOOKS)
def create_webhook(store_id: str):
    spec = parse(read_json())
    hook, secret = service().create(store_id, spec)
    return jsonify(webhook_json(hook, secret=secret))


@bp.get("/<webhook_id>")
@require_permission(CAN_MODIFY_WEBHOOKS)
def get_webhook(store_id: str, webhook_id: str):
    return jsonify(webhook_json(service().get(store_id, webhook_id)))


@bp.put("/<webhook_id>")
@require_permission(CAN_MODIFY_WEBHOOKS)
def update_webhook(store_id: str, webhook_id: str):
    service().get(store_id, webhook_id)  # 404 before 422: the webhook must be ours
    spec = parse(read_json())
    return jsonify(webhook_json(service().update(store_id, webhook_id, spec)))


@bp.delete("/<webhook_id>")
@require_permission(CAN_MODIFY_WEBHOOKS)
def delete_webhook(store_id: str, webhook_id: str):
    service().delete(store_id, webhook_id)
    return Response(status=200)


def _count() -> int:
    count = query_int("count", MAX_DELIVERY_COUNT)
    return DEFAULT_DELIVERY_COUNT if count is None else count


@bp.get("/<webhook_id>/deliveries")
@require_permission(CAN_MODIFY_WEBHOOKS)
def list_deliveries(store_id: str, webhook_id: str):
    count = _count()
    return jsonify([delivery_json(d) for d in service().deliveries(store_id, webhook_id, count)])


@bp.get("/<webhook_id>/deliveries/<delivery_id>")
@require_permission(CAN_MODIFY_WEBHOOKS)
def get_delivery(store_id: str, webhook_id: str, delivery_id: str):
    return jsonify(delivery_json(service().delivery(store_id, webhook_id, delivery_id)))


@bp.get("/<webhook_id>/deliveries/<delivery_id>/request")
@require_permission(CAN_MODIFY_WEBHOOKS)
def get_delivery_request(store_id: str, webhook_id: str, delivery_id: str):
    delivery = service().delivery(store_id, webhook_id, delivery_id)
    return Response(delivery.body, mimetype="application/json")  # the bytes as sent


@bp.post("/<webhook_id>/deliveries/<delivery_id>/redeliver")
@require_permission(CAN_MODIFY_WEBHOOKS)
def redeliver(store_id: str, webhook_id: str, delivery_id: str):
    read_json(optional=True)  # no body expected; empty or null is fine
    return jsonify(service().redeliver(store_id, webhook_id, delivery_id))


# The same routes without the store (the form Greenfield's reference documents): the key's
# own store; another store's webhook is 404 as on the long form.
by_id = Blueprint("webhooks_by_id", __name__, url_prefix="/api/v1/webhooks")
handle_body_errors(by_id)
by_id.register_error_handler(WebhookNotFound, _webhook_not_found)
by_id.register_error_handler(DeliveryNotFound, _delivery_not_found)
for _rule, _view, _methods in (
        ("/<webhook_id>", get_webhook, ["GET"]), ("/<webhook_id>", update_webhook, ["PUT"]),
        ("/<webhook_id>", delete_webhook, ["DELETE"]),
        ("/<webhook_id>/deliveries", list_deliveries, ["GET"]),
        ("/<webhook_id>/deliveries/<delivery_id>", get_delivery, ["GET"]),
        ("/<webhook_id>/deliveries/<delivery_id>/request", get_delivery_request, ["GET"]),
        ("/<webhook_id>/deliveries/<delivery_id>/redeliver", redeliver, ["POST"])):
    by_id.add_url_rule(_rule, view_func=_view, methods=_methods, defaults={"store_id": None})
