"""Abuse: the Greenfield routes a shop plugin uses, attacked by an outsider, a cashier, a
malicious merchant with its own API key and another store (issue 11, after issue 9).

Money first: a merchant's refund is paid from the won the city holds for it, never from
the city's own money: no pull payment or invoice refund takes a store's payable below
zero, not even two at once. After every attack `ledger check` still passes.
"""
from __future__ import annotations

import re
import threading
from datetime import date
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from sqlalchemy import func, select

from accounts.service import create_user
from merchants.models import ApiKey, Store
from settlement.models import RefundClaim
from tests.conftest import auth, make_merchant
from tests.integration.test_greenfield_authorize import (OWNER, authorize_url, form_csrf,
                                                         hidden_fields, owner_store, signed_in)  # noqa: F401
from tests.integration.test_greenfield_refunds import PULL, as_php_client, settled
from tests.integration.test_payment_scenarios import demo_chain  # noqa: F401
from tests.integration.test_refund_pages import world  # noqa: F401
from tests.integration.test_settlement_support import balance_of


def payable_of(world) -> int:
    """Won the city holds for the store (its payable's credit balance)."""
    return -balance_of(world.gateway, f"merchant_payable:{world.store_id}")


def claims(world) -> int:
    with world.gateway.db.read() as session:
        return session.execute(select(func.count()).select_from(RefundClaim)).scalar_one()


def ledger_ok(world) -> None:
    from settlement.reconcile import check_ledger

    result = check_ledger(world.gateway)
    assert result["ok"], result["problems"]
    assert payable_of(world) >= 0


def post(world, url, body, token=None):
    return world.client.post(url.replace("{storeId}", world.store_id),
                             headers=auth(token or world.token), json=body)


def twice_at_once(app, world, url: str, body: dict) -> list[int]:
    """POST the same body from two threads released together; their status codes."""
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def send():
        client = app.test_client()
        barrier.wait()
        codes.append(client.post(url, headers=auth(world.token), json=body).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


# -- money -----------------------------------------------------------------------------
def test_a_shop_with_no_balance_cannot_make_the_city_fund_a_pull_payment(world):  # noqa: F811
    assert payable_of(world) == 0
    res = post(world, PULL, as_php_client("99000000", "KRW"))
    assert res.status_code == 422, res.get_data(as_text=True)
    assert res.get_json()[0]["path"] == "amount" and "balance" in res.get_json()[0]["message"]
    assert payable_of(world) == 0 and claims(world) == 0
    ledger_ok(world)


def test_pull_payments_stop_at_the_stores_balance(world):  # noqa: F811
    settled(world)  # ₩15,000 less the 1 % fee: ₩14,850 held for the store
    assert payable_of(world) == 14850
    assert post(world, PULL, as_php_client("14851", "KRW")).status_code == 422
    assert post(world, PULL, as_php_client("10000", "KRW")).status_code == 200
    res = post(world, PULL, as_php_client("0.0001", "BTC"))  # ₩15,000 at the current rate
    assert res.status_code == 422 and "4850 won" in res.get_json()[0]["message"]
    assert post(world, PULL, as_php_client("4850", "KRW")).status_code == 200
    assert payable_of(world) == 0
    ledger_ok(world)


def test_a_refund_after_the_payout_cannot_make_the_payable_negative(world):  # noqa: F811
    from settlement.daily import create_payouts

    invoice = settled(world)
    world.clock.advance(seconds=1)
    assert create_payouts(world.gateway, date(2026, 11, 23), world.clock()), "no payout made"
    assert payable_of(world) == 0
    for body in ({"refundVariant": "RateThen"}, {"refundVariant": "CurrentRate"},
                 {"refundVariant": "Fiat"},
                 {"refundVariant": "Custom", "customAmount": "1", "customCurrency": "KRW"}):
        res = post(world, f"/api/v1/invoices/{invoice['id']}/refund", body)
        assert res.status_code == 422, (body, res.get_data(as_text=True))
        assert res.get_json()[0]["path"] == "amount"
    assert payable_of(world) == 0 and claims(world) == 0
    ledger_ok(world)


def test_two_refunds_at_once_cannot_together_exceed_the_balance(app, world):  # noqa: F811
    settled(world)
    codes = twice_at_once(app, world, PULL.replace("{storeId}", world.store_id),
                          as_php_client("10000", "KRW"))
    assert sorted(codes) == [200, 422]
    assert payable_of(world) == 4850 and claims(world) == 1
    ledger_ok(world)


# -- /api-keys/authorize ---------------------------------------------------------------
def test_the_authorize_page_does_not_hand_framing_to_the_asking_site_by_default(
        app, owner_store):  # noqa: F811
    """A link from an attacker's "shop" that the owner approves without reading must not
    make the attacker's origin the only site allowed to frame the payment page."""
    owner = signed_in(app)
    url = authorize_url(redirect="https://attacker.example/cb")
    page = owner.get(url).get_data(as_text=True)
    box = re.search(r'<input type="checkbox" name="allow_frame"[^>]*>', page).group(0)
    assert "checked" not in box
    data = {"csrf_token": form_csrf(page), "store_id": owner_store, "decision": "approve"}
    assert owner.post(url, data=data).status_code == 200  # the form as sent, box unticked
    with app.extensions["busanpay"].db.read() as session:
        assert session.get(Store, owner_store).website is None


def test_the_authorize_page_says_which_website_a_ticked_box_replaces(app, owner_store):
    with app.extensions["busanpay"].db.write() as session:
        session.get(Store, owner_store).website = "https://real-shop.example"
    page = signed_in(app).get(authorize_url(redirect="https://other.example/cb"))
    assert "https://real-shop.example" in page.get_data(as_text=True)


def test_a_shop_host_too_long_for_the_store_website_is_refused_not_a_500(app, owner_store):
    host = ".".join(["a" * 63] * 4) + ".example"  # 264 characters: a valid URL, no website
    owner = signed_in(app)
    url = authorize_url(redirect=f"https://{host}/cb")
    res = owner.get(url)
    assert res.status_code == 422, res.status_code
    res = owner.post(url, data={"csrf_token": form_csrf(owner.get(authorize_url()).get_data(
        as_text=True)), "store_id": owner_store, "decision": "approve", "allow_frame": "1"})
    assert res.status_code == 422
    with app.extensions["busanpay"].db.read() as session:
        assert session.get(Store, owner_store).website is None
        assert session.execute(select(func.count()).select_from(ApiKey).where(
            ApiKey.store_id == owner_store)).scalar_one() == 1  # make_merchant's own key


@pytest.mark.parametrize("redirect", [
    "javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "//evil.example/",
    "https://shop.example@evil.example/", "https:/\\evil.example/", "ftp://evil.example/",
    "https:evil.example", "vbscript:msgbox", " javascript:alert(1)"])
def test_the_key_is_never_posted_to_a_non_web_or_disguised_address(app, owner_store, redirect):
    owner = signed_in(app)
    url = authorize_url(redirect=redirect)
    assert owner.get(url).status_code == 422
    token = form_csrf(owner.get(authorize_url()).get_data(as_text=True))
    res = owner.post(url, data={"csrf_token": token, "store_id": owner_store,
                                "decision": "approve"})
    assert res.status_code == 422 and "apiKey" not in res.get_data(as_text=True)


def test_only_the_stores_owner_approves_and_only_for_its_own_store(app, client, owner_store):
    from tests.integration.test_pos import CASHIER_PIN

    other_store, _ = make_merchant(app, name="Jagalchi Fish")
    with app.extensions["busanpay"].db.write() as session:
        create_user(session, role="cashier", store_id=owner_store, pin=CASHIER_PIN,
                    display_name="Minji")
        create_user(session, role="city_admin", email="admin@busan.example",
                    password="admin pass phrase 1", display_name="Admin")
    admin = signed_in(app, "admin@busan.example", "admin pass phrase 1")
    assert admin.get(authorize_url()).status_code == 403
    owner = signed_in(app)
    url = authorize_url()
    token = form_csrf(owner.get(url).get_data(as_text=True))
    # another owner's store, no CSRF token, a forged decision: nothing is issued
    assert owner.post(url, data={"csrf_token": token, "store_id": other_store,
                                 "decision": "approve"}).status_code == 403
    assert owner.post(url, data={"store_id": owner_store, "decision": "approve"}).status_code == 400
    with app.extensions["busanpay"].db.read() as session:
        assert session.execute(select(func.count()).select_from(ApiKey)).scalar_one() == 2


def test_a_request_for_more_than_a_shop_can_have_is_refused_or_left_out(app, owner_store):
    owner = signed_in(app)
    for asked in (["unrestricted"], ["btcpay.server.canmodifyserversettings"],
                  ["btcpay.user.canmodifyprofile", "btcpay.store.canviewinvoices"]):
        assert owner.get(authorize_url(permissions=asked)).status_code == 422
    page = owner.get(authorize_url(permissions=["unrestricted", "btcpay.store.canviewinvoices"],
                                   strict="false"))
    # (strict=false is added after strict=true: the last value counts)
    assert page.status_code == 200
    data = {"csrf_token": form_csrf(page.get_data(as_text=True)), "store_id": owner_store,
            "decision": "approve"}
    res = owner.post(authorize_url(permissions=["unrestricted", "btcpay.store.canviewinvoices"],
                                   strict="false"), data=data)
    assert ("permissions[]", f"btcpay.store.canviewinvoices:{owner_store}") in \
        hidden_fields(res.get_data(as_text=True))
    assert not any("unrestricted" in v for _, v in hidden_fields(res.get_data(as_text=True)))


@pytest.mark.parametrize("target", ["/\\evil.example/", "/\t/evil.example/", "//evil.example",
                                    "https://evil.example/", "/%5Cevil.example"])
def test_signing_in_never_sends_the_owner_to_another_site(app, owner_store, target):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    res = client.post("/login?" + urlencode({"next": target}),
                      data={"email": OWNER[0], "password": OWNER[1], "csrf_token": token})
    assert res.status_code == 302
    location = res.headers["Location"]
    # as a browser reads it: tabs and newlines dropped, a backslash is a slash
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    assert urlsplit(urljoin("https://pay.busan.example/login", seen)).hostname == \
        "pay.busan.example", location


def test_an_overpayment_is_refunded_once_and_never_alongside_another_claim(app, world):  # noqa: F811
    # Claims stand side by side (docs/ARCHITECTURE.md, "Refunds"): two OverpaidAmount
    # refunds at once both open a claim, but the treasury can approve and pay only one.
    from tests.integration.test_refund_pages import EXTRA, overpaid

    invoice_id = overpaid(world)
    before = payable_of(world)
    refund = f"/api/v1/invoices/{invoice_id}/refund"
    assert sorted(twice_at_once(app, world, refund, {"refundVariant": "OverpaidAmount"})) == \
        [200, 200]
    from settlement.refunds import RefundError, approve, record_sent
    from tests.integration.test_refund_pages import REGTEST_ADDRESS, TXID

    with world.gateway.db.write() as session:
        first, second = session.execute(select(RefundClaim)).scalars()
        assert first.amount_sats == second.amount_sats == EXTRA
        for claim in (first, second):  # the payer's page did this
            claim.address, claim.status = REGTEST_ADDRESS, "submitted"
        session.flush()
        approve(session, first.id, "treasurer", world.clock())
        with pytest.raises(RefundError):
            approve(session, second.id, "treasurer", world.clock())
        record_sent(session, first.id, TXID, world.clock())
    with world.gateway.db.read() as session:
        statuses = sorted(c.status for c in session.execute(select(RefundClaim)).scalars())
    assert statuses == ["rejected", "sent"]
    for body in ({"refundVariant": "OverpaidAmount"},
                 {"refundVariant": "OverpaidAmount", "subtractPercentage": "-50"},
                 {"refundVariant": "Custom", "customAmount": "-1", "customCurrency": "KRW"},
                 {"refundVariant": "Custom", "customAmount": "0", "customCurrency": "SATS"},
                 {"refundVariant": "Custom", "customAmount": "1e30", "customCurrency": "BTC"},
                 {"refundVariant": "RateThen", "subtractPercentage": "NaN"},
                 {"refundVariant": "RateThen", "subtractPercentage": "100"}):
        res = post(world, refund, body)
        assert res.status_code == 422, (body, res.get_data(as_text=True))
    assert payable_of(world) == before and claims(world) == 2


def test_unpaid_expired_and_marked_invoices_cannot_be_refunded(world):  # noqa: F811
    new = world.invoice(15000)
    marked = world.invoice(15000)
    res = post(world, f"/api/v1/stores/{{storeId}}/invoices/{marked['id']}/status",
               {"status": "Settled"})
    assert res.status_code == 200, res.get_data(as_text=True)
    expired = world.invoice(15000)
    world.clock.advance(hours=2)
    world.run()
    for invoice in (new, marked, expired):
        for variant in ("RateThen", "CurrentRate", "Fiat", "OverpaidAmount"):
            res = post(world, f"/api/v1/invoices/{invoice['id']}/refund",
                       {"refundVariant": variant})
            assert res.status_code == 422, (variant, res.get_data(as_text=True))
    assert claims(world) == 0


# -- textSearch, api-keys/current, health ------------------------------------------------
def test_text_search_never_reaches_another_stores_invoices(app, world):  # noqa: F811
    mine = world.invoice(15000)
    other_store, other = make_merchant(app, name="Jagalchi Fish")
    res = world.client.post(f"/api/v1/stores/{other_store}/invoices", headers=auth(other),
                            json={"amount": "1000", "metadata": {"orderId": "SECRET-1"}})
    theirs = res.get_json()["id"]
    url = f"/api/v1/stores/{world.store_id}/invoices"
    for term in (theirs, "SECRET-1", "%", "_", "%%", "\\", "' OR 1=1 --", "x" * 100_000,
                 "a\x00b"):
        res = world.client.get(url, headers=auth(world.token), query_string={"textSearch": term})
        assert res.status_code in (200, 400, 422), (term[:20], res.status_code)
        if res.status_code == 200:
            assert theirs not in res.get_data(as_text=True), term[:20]
            assert all(i["id"] == mine["id"] for i in res.get_json())


def test_a_key_revokes_only_itself(app, world):  # noqa: F811
    from merchants.service import CAN_VIEW_STORE, issue_api_key

    with world.gateway.db.write() as session:
        second = issue_api_key(session, world.store_id, [CAN_VIEW_STORE]).token
    res = world.client.delete("/api/v1/api-keys/current", headers=auth(second))
    assert res.status_code == 200
    assert world.client.get("/api/v1/api-keys/current", headers=auth(second)).status_code == 401
    assert world.client.get("/api/v1/api-keys/current",
                            headers=auth(world.token)).status_code == 200
    assert world.client.delete("/api/v1/api-keys/current").status_code == 401


def test_health_and_server_info_say_nothing_internal(world):  # noqa: F811
    health = world.client.get("/api/v1/health")
    assert health.status_code == 200 and set(health.get_json()) == {"synchronized"}
    assert world.client.get("/api/v1/server/info").status_code == 401
    info = world.client.get("/api/v1/server/info", headers=auth(world.token)).get_data(as_text=True)
    for secret in ("http://", "127.0.0.1", "postgres", "sqlite", "Traceback"):
        assert secret not in info


# -- the checkout page in a shop's frame ------------------------------------------------
@pytest.mark.parametrize("website", [
    "*", "https:", "https://*.example", "https://a.example; script-src *",
    "https://a.example https://evil.example", "https://a.example\r\nX-Evil: 1",
    "javascript:alert(1)", "https://a.example/path", "'self'", " https://a.example"])
def test_no_stored_website_can_widen_the_frame_ancestors(app, world, website):  # noqa: F811
    invoice = world.invoice(15000)
    with world.gateway.db.write() as session:
        session.get(Store, world.store_id).website = website
    res = world.client.get(f"/i/{invoice['id']}")
    csp = res.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "\n" not in csp and "X-Evil" not in res.headers
    assert "data-parent-origin" not in res.get_data(as_text=True)
