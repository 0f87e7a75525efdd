"""The shop-authorization page in a real browser: it fits a phone and a tablet, passes
axe-core, and shows the asking shop's host. Screenshots: docs/screens/authorize-*.png."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import BROWSER_TEST
from tests.e2e.test_backoffice_browser import owner_signs_in
from tests.e2e.test_pos_browser import (SIZES, app, assert_accessible, assert_fits,  # noqa: F401
                                        new_page, server, shot, store)
from tests.integration.test_greenfield_authorize import authorize_url

pytestmark = BROWSER_TEST


@pytest.mark.parametrize("size", ["1280", "360"])
def test_the_authorize_page_fits_passes_axe_and_names_the_shop(browser, server, store, size):
    context, page, errors = new_page(browser, SIZES[size])
    try:
        owner_signs_in(page, server)
        page.goto(server + authorize_url())
        assert page.inner_text(".shop-host") == "shop.example"
        assert_fits(page)
        assert_accessible(page, f"the authorize page at {size} px")
        shot(page, f"authorize-{size}", full_page=True)
        assert not errors, errors
        page.goto(server + authorize_url(redirect="javascript:alert(1)"))
        assert "http or https" in page.inner_text("main")
        assert_accessible(page, f"the refused authorize page at {size} px")
    finally:
        context.close()
