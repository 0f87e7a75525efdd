"""Greenfield API-key authentication: `Authorization: token <apiKey>`."""
from __future__ import annotations

from functools import wraps

from flask import current_app, g, jsonify, request

from merchants.service import find_api_key, has_permission


def api_error(status: int, code: str, message: str):
    response = jsonify({"code": code, "message": message})
    response.status_code = status
    return response


def presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        return None
    return token.strip()


def require_permission(permission: str | None, *, foreign_store: int = 403):
    """Authenticate the key; on store routes, the key must belong to that store.

    `permission` None: any live key will do (`/api-keys/current`). `foreign_store` is the
    status for another store's id: 404 on the store resources themselves (their existence
    is not disclosed), 403 on the older invoice routes (unchanged for their clients)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            token = presented_token()
            if token is None:
                return api_error(401, "unauthenticated",
                                 "Authentication is required: send 'Authorization: token <apiKey>'")
            gateway = current_app.extensions["busanpay"]
            with gateway.db.one_shot() as connection:
                key = find_api_key(connection, token)
            if key is None:
                return api_error(401, "unauthenticated", "The API key is unknown or revoked")
            store_id = kwargs.get("store_id")
            if store_id is not None and store_id != key.store_id and foreign_store == 404:
                return api_error(404, "store-not-found", "The store could not be found")
            if (store_id is not None and store_id != key.store_id) or (
                    permission is not None and not has_permission(key, permission)):
                return api_error(403, "missing-permission",
                                 f"The API key does not have the permission {permission}"
                                 + (f" on store {store_id}" if store_id else ""))
            g.api_key = key
            if "store_id" in kwargs and kwargs["store_id"] is None:
                kwargs["store_id"] = key.store_id  # the short path forms: the key's own store
            return view(*args, **kwargs)

        return wrapper

    return decorator
