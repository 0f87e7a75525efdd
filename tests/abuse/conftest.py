"""What the login abuse tests share: a store with an owner and a cashier, served over real
HTTP on 127.0.0.1."""
from __future__ import annotations

from typing import NamedTuple

import pytest

PIN = "583920"
OWNER_EMAIL, OWNER_PW = "owner@cafe.kr", "correct horse 1"


class LiveShop(NamedTuple):
    url: str
    store_id: str
    code: str  # the store code a tablet signs in with


@pytest.fixture
def live_shop(app, request):
    from accounts.service import create_user
    from merchants.models import Store
    from tests.conftest import make_merchant
    from tests.e2e.conftest import live_server

    store_id, _ = make_merchant(app)
    with app.extensions["busanpay"].db.write() as s:
        create_user(s, role="owner", email=OWNER_EMAIL, password=OWNER_PW, store_id=store_id)
        create_user(s, role="cashier", store_id=store_id, pin=PIN, display_name="Minji")
        code = s.get(Store, store_id).pos_code
    with live_server(app, "abuse-" + request.module.__name__.rsplit(".", 1)[-1]) as url:
        yield LiveShop(url, store_id, code)
