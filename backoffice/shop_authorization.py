"""A shop plugin asks the owner for an API key (`/api-keys/authorize`); the owner approves.

No Flask here. One transaction creates the key with exactly the permissions the shop asked
for, on the store the owner picked, optionally records the shop's origin as the store's
website (the only page then allowed to show the checkout in a frame), and audits both.
"""
from __future__ import annotations

from sqlmodel import Session

from accounts.service import Actor, audit
from backoffice.service import NotFound, create_key
from merchants.greenfield import AuthorizeRequest
from merchants.models import Store
from merchants.service import IssuedKey


def owner_stores(session: Session, store_id: str | None) -> list[Store]:
    """The stores an owner may grant keys for (an owner account has one store)."""
    store = session.get(Store, store_id) if store_id else None
    return [store] if store is not None and not store.archived else []


def approve(session: Session, store_id: str, request: AuthorizeRequest, actor: Actor, *,
            allow_frame: bool) -> IssuedKey:
    store = session.get(Store, store_id)
    if store is None or store.archived:
        raise NotFound(store_id)
    issued = create_key(session, store_id, label=request.application_name,
                        permissions=list(request.permissions), actor=actor)
    audit(session, actor, "apikey.authorize", target=issued.key.id, store_id=store_id,
          shop=request.shop_host or "", application=request.application_name)
    if allow_frame and request.shop_origin and store.website != request.shop_origin:
        audit(session, actor, "store.settings", target=store_id, store_id=store_id,
              changes={"website": [store.website or "", request.shop_origin]})
        store.website = request.shop_origin
        session.add(store)
    return issued
