"""Greenfield store and API-key routes that shop plugins call when they are set up
(thin edge over merchants.greenfield):

GET /api/v1/api-keys/current, DELETE /api/v1/api-keys/current (a key revokes itself),
GET /api/v1/stores, GET /api/v1/stores/{storeId}, GET /api/v1/stores/{storeId}/payment-methods.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from merchants.api_auth import api_error, presented_token, require_permission
from merchants.greenfield import api_key_json, store_json, store_payment_methods_json
from merchants.models import ApiKey, Store
from merchants.service import CAN_MODIFY_STORE, CAN_VIEW_STORE, has_permission, revoke_api_key
from payments.api import handle_body_errors
from payments.invoice_request import FieldError, InvalidRequest

bp = Blueprint("greenfield_stores", __name__, url_prefix="/api/v1")
handle_body_errors(bp)


def _gateway():
    return current_app.extensions["busanpay"]


def _flag(name: str) -> bool | None:
    raw = (request.args.get(name) or "").strip().lower()
    if raw == "":
        return None
    if raw not in ("true", "false"):
        raise InvalidRequest([FieldError(name, "must be true or false")])
    return raw == "true"


def _store_json(store: Store) -> dict:
    settings = _gateway().settings
    return store_json(store, expiration_minutes=settings.expiration_minutes,
                      monitoring_minutes=settings.monitoring_minutes)


@bp.get("/api-keys/current")
@require_permission(None)
def current_key():
    with _gateway().db.read() as session:
        key = session.get(ApiKey, g.api_key.id)
        return jsonify(api_key_json(key, presented_token()))


@bp.delete("/api-keys/current")
@require_permission(None)
def revoke_current_key():
    with _gateway().db.write() as session:
        revoke_api_key(session, g.api_key.store_id, g.api_key.id)
    return Response(status=200)


@bp.get("/stores")
@require_permission(CAN_VIEW_STORE)
def list_stores():
    with _gateway().db.read() as session:
        store = session.get(Store, g.api_key.store_id)
        return jsonify([_store_json(store)] if store is not None and not store.archived else [])


@bp.get("/stores/<store_id>")
@require_permission(CAN_VIEW_STORE, foreign_store=404)
def get_store(store_id: str):
    with _gateway().db.read() as session:
        store = session.get(Store, store_id)
        if store is None:
            return api_error(404, "store-not-found", "The store could not be found")
        return jsonify(_store_json(store))


@bp.get("/stores/<store_id>/payment-methods")
@require_permission(CAN_VIEW_STORE, foreign_store=404)
def store_payment_methods(store_id: str):
    include_config = bool(_flag("includeConfig"))
    only_enabled = _flag("onlyEnabled")
    if include_config and not has_permission(g.api_key, CAN_MODIFY_STORE):
        return api_error(403, "missing-permission",
                         f"includeConfig=true needs the permission {CAN_MODIFY_STORE}")
    from payments.models import ExtendedKeyRecord

    with _gateway().db.read() as session:
        store = session.get(Store, store_id)
        if store is None:
            return api_error(404, "store-not-found", "The store could not be found")
        own = session.get(ExtendedKeyRecord, store.key_id) if store.key_id else None
        return jsonify(store_payment_methods_json(
            store, own.key_text if own else None, include_config=include_config,
            only_enabled=only_enabled, lightning=_gateway().lightning is not None))
