"""Charging from the POS is rate limited per cashier, with the app's limiter."""
from __future__ import annotations

import pytest

from tests.integration.test_pos import (OTHER_PIN, app, charge, invoice_count,  # noqa: F401
                                        shop, sign_in_cashier)


@pytest.fixture
def app_config(app_config):
    app_config["invoice_rate_limit"] = "3 per minute"
    return app_config


def test_a_cashier_charging_too_fast_is_slowed_down_without_stopping_the_other_cashier(app, shop):
    minji, jun = app.test_client(), app.test_client()
    csrf_minji = sign_in_cashier(minji, shop["store"])
    csrf_jun = sign_in_cashier(jun, shop["store"], OTHER_PIN)
    codes = [charge(minji, csrf_minji, "1000").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    refused = charge(minji, csrf_minji, "1000")
    assert refused.status_code == 429 and "Too many sales" in refused.get_json()["message"]
    assert charge(jun, csrf_jun, "1000").status_code == 201  # per cashier, not per shop
    assert invoice_count(app) == 1 + 3 + 1
