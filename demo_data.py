"""Demo data for the embedded default: stores with API keys (and, as the screens land,
people, invoices in every state, settlements)."""
from __future__ import annotations

from sqlmodel import func, select

from merchants.models import Store
from merchants.service import create_store, issue_api_key

DEMO_STORES = [
    ("Haeundae Beach Café", "haeundae-gu", "cafe"),
    ("Jagalchi Fish Market Stall 12", "jung-gu", "market"),
    ("Gamcheon Culture Village Gallery", "saha-gu", "culture"),
    ("Seomyeon Street Food", "busanjin-gu", "food"),
]


def seed(gateway, *, if_empty: bool = False) -> dict:
    with gateway.db.write() as session:
        existing = session.exec(select(func.count()).select_from(Store)).one()
        if existing and if_empty:
            return {"seeded": False, "reason": f"{existing} stores exist already"}
        stores = []
        for name, district, category in DEMO_STORES:
            store = create_store(session, name=name, district=district, category=category,
                                 speed_policy="MediumSpeed", zero_conf_limit_krw=30_000)
            issued = issue_api_key(session, store.id, label="demo")
            stores.append({"storeId": store.id, "name": name, "apiKey": issued.token})
    return {"seeded": True, "stores": stores}
