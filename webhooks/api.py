"""Greenfield's store webhook API: /api/v1/stores/{storeId}/webhooks… (thin edge)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from merchants.api_auth import api_error, require_permission
from merchants.service import CAN_MODIFY_WEBHOOKS
from payments.api import handle_body_errors, read_json
from payments.invoice_request import FieldError, InvalidRequest
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
    raw = request.args.get("count")
    if raw in (None, ""):
        return DEFAULT_DELIVERY_COUNT
    if not raw.isdigit() or int(raw) > MAX_DELIVERY_COUNT:
        raise InvalidRequest([FieldError("count",
                                         f"must be a whole number from 0 to {MAX_DELIVERY_COUNT}")])
    return int(raw)


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
