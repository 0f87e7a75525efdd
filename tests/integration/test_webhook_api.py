"""The store webhook API: CRUD, validation, the secret shown once, isolation, permission."""
from __future__ import annotations

import pytest

from merchants.service import CAN_CREATE_INVOICE, CAN_MODIFY_STORE, CAN_VIEW_INVOICES
from tests.conftest import auth, make_merchant

HOOK = {"url": "https://shop.example/btcpay/webhook"}


@pytest.fixture
def app(app):
    from webhooks import init_webhooks

    init_webhooks(app)  # a no-op once app.py registers the webhooks itself
    return app


def base(store_id: str) -> str:
    return f"/api/v1/stores/{store_id}/webhooks"


def create(client, merchant, **body):
    store_id, token = merchant
    res = client.post(base(store_id), json={**HOOK, **body}, headers=auth(token))
    assert res.status_code == 200, res.get_data(as_text=True)
    return res.get_json()


def stored_secret(gateway, webhook_id: str) -> str:
    from webhooks.models import Webhook

    with gateway.db.read() as session:
        return session.get(Webhook, webhook_id).secret


def test_a_webhook_is_created_listed_fetched_updated_and_deleted(client, merchant):
    store_id, token = merchant
    created = create(client, merchant, authorizedEvents={
        "everything": False, "specificEvents": ["InvoiceSettled", "InvoiceExpired"]})
    hook_id = created["id"]
    assert created == {"id": hook_id, "enabled": True, "automaticRedelivery": True,
                       "url": HOOK["url"], "secret": created["secret"],
                       "authorizedEvents": {"everything": False,
                                            "specificEvents": ["InvoiceSettled", "InvoiceExpired"]}}
    listed = client.get(base(store_id), headers=auth(token)).get_json()
    assert [h["id"] for h in listed] == [hook_id]
    fetched = client.get(f"{base(store_id)}/{hook_id}", headers=auth(token)).get_json()
    assert fetched == {k: v for k, v in created.items() if k != "secret"}

    res = client.put(f"{base(store_id)}/{hook_id}", headers=auth(token), json={
        "id": hook_id, "url": "http://shop.example:9/other", "enabled": False,
        "automaticRedelivery": False})
    assert res.status_code == 200
    assert res.get_json() == {"id": hook_id, "enabled": False, "automaticRedelivery": False,
                              "url": "http://shop.example:9/other",
                              "authorizedEvents": {"everything": True, "specificEvents": []}}
    assert client.get(f"{base(store_id)}/{hook_id}", headers=auth(token)).get_json() == \
        res.get_json()

    res = client.delete(f"{base(store_id)}/{hook_id}", headers=auth(token))
    assert res.status_code == 200 and res.get_data() == b""
    res = client.get(f"{base(store_id)}/{hook_id}", headers=auth(token))
    assert res.status_code == 404 and res.get_json()["code"] == "webhook-not-found"
    assert client.get(base(store_id), headers=auth(token)).get_json() == []
    res = client.delete(f"{base(store_id)}/{hook_id}", headers=auth(token))
    assert res.status_code == 404


def test_the_secret_is_shown_only_at_creation_and_kept_unless_a_new_one_is_sent(
        client, merchant, gateway):
    store_id, token = merchant
    generated = create(client, merchant)
    assert len(generated["secret"]) >= 32
    assert stored_secret(gateway, generated["id"]) == generated["secret"]
    chosen = create(client, merchant, secret="my-own-shared-secret")
    assert chosen["secret"] == "my-own-shared-secret"
    assert create(client, merchant, secret=None)["secret"] not in ("", None)

    url = f"{base(store_id)}/{chosen['id']}"
    for res in (client.get(base(store_id), headers=auth(token)),
                client.get(url, headers=auth(token)),
                client.put(url, headers=auth(token), json={**HOOK, "secret": None}),
                client.put(url, headers=auth(token), json={**HOOK, "secret": ""})):
        assert res.status_code == 200 and "secret" not in res.get_data(as_text=True)
    assert stored_secret(gateway, chosen["id"]) == "my-own-shared-secret"
    res = client.put(url, headers=auth(token), json={**HOOK, "secret": "rotated"})
    assert res.status_code == 200 and "secret" not in res.get_json()
    assert stored_secret(gateway, chosen["id"]) == "rotated"


def test_invalid_bodies_are_422_with_the_path_of_each_problem(client, merchant):
    store_id, token = merchant
    res = client.post(base(store_id), headers=auth(token), json={
        "url": "ftp://shop.example/hook", "enabled": "yes", "mystery": 1,
        "authorizedEvents": {"everything": False, "specificEvents": ["InvoiceSettled", "Nope"]}})
    assert res.status_code == 422
    errors = res.get_json()
    assert {e["path"] for e in errors} == {"url", "enabled", "mystery",
                                           "authorizedEvents.specificEvents[1]"}
    assert all(set(e) == {"path", "message"} and e["message"] for e in errors)
    for body in ({}, {"url": "shop.example/hook"}, {"url": "https://"}, {"url": ""}):
        res = client.post(base(store_id), headers=auth(token), json=body)
        assert res.status_code == 422 and [e["path"] for e in res.get_json()] == ["url"]
    res = client.post(base(store_id), headers=auth(token), json=["https://shop.example"])
    assert res.status_code == 422 and res.get_json()[0]["path"] == ""

    hook_id = create(client, merchant)["id"]
    res = client.put(f"{base(store_id)}/{hook_id}", headers=auth(token),
                     json={"url": "https://shop.example", "automaticRedelivery": 1})
    assert res.status_code == 422 and res.get_json()[0]["path"] == "automaticRedelivery"
    res = client.post(base(store_id), headers={**auth(token), "Content-Type": "application/json"},
                      data=b"{nope")
    assert res.status_code == 400 and res.get_json()["code"] == "invalid-json"
    res = client.post(base(store_id), headers={**auth(token), "Content-Type": "text/plain"},
                      data=b'{"url": "https://shop.example"}')
    assert res.status_code == 400 and res.get_json()["code"] == "unsupported-content-type"
    assert client.get(base(store_id), headers=auth(token)).get_json()[0]["id"] == hook_id


def test_another_stores_webhook_is_not_found_and_another_stores_path_is_forbidden(app, client,
                                                                                  merchant):
    store_id, token = merchant
    other = make_merchant(app, name="Jagalchi Fish")
    theirs = create(client, other)["id"]
    mine = f"{base(store_id)}/{theirs}"
    for method, path, body in (("get", mine, None), ("put", mine, HOOK), ("delete", mine, None),
                               ("get", mine + "/deliveries", None),
                               ("get", mine + "/deliveries/x", None),
                               ("get", mine + "/deliveries/x/request", None),
                               ("post", mine + "/deliveries/x/redeliver", None)):
        res = client.open(path, method=method.upper(), headers=auth(token), json=body)
        assert res.status_code == 404, (method, path)
        assert res.get_json()["code"] == "webhook-not-found"
    res = client.get(f"{base(other[0])}/{theirs}", headers=auth(token))
    assert res.status_code == 403 and res.get_json()["code"] == "missing-permission"
    res = client.post(base(other[0]), headers=auth(token), json=HOOK)
    assert res.status_code == 403
    assert client.get(base(store_id), headers=auth(token)).get_json() == []
    assert len(client.get(base(other[0]), headers=auth(other[1])).get_json()) == 1


def test_the_webhooks_permission_is_needed_and_the_store_settings_permission_includes_it(
        app, client):
    store_id, token = make_merchant(app, permissions=[CAN_CREATE_INVOICE, CAN_VIEW_INVOICES])
    for res in (client.get(base(store_id), headers=auth(token)),
                client.post(base(store_id), headers=auth(token), json=HOOK)):
        assert res.status_code == 403
        assert "btcpay.store.webhooks.canmodifywebhooks" in res.get_json()["message"]
    store_id, token = make_merchant(app, permissions=[CAN_MODIFY_STORE])
    assert client.post(base(store_id), headers=auth(token), json=HOOK).status_code == 200
    res = client.get(base(store_id))
    assert res.status_code == 401 and res.get_json()["code"] == "unauthenticated"
    assert client.get(base(store_id), headers=auth("not-a-key")).status_code == 401


def test_paths_work_with_and_without_a_trailing_slash(client, merchant):
    store_id, token = merchant
    res = client.post(base(store_id) + "/", headers=auth(token), json=HOOK)
    assert res.status_code == 200
    hook_id = res.get_json()["id"]
    assert client.get(base(store_id) + "/", headers=auth(token)).status_code == 200
    assert client.get(f"{base(store_id)}/{hook_id}/", headers=auth(token)).status_code == 200
    res = client.get(f"{base(store_id)}/{hook_id}/deliveries/", headers=auth(token))
    assert res.status_code == 200 and res.get_json() == []


def test_the_delivery_count_must_be_a_whole_number_up_to_1000(client, merchant):
    store_id, token = merchant
    hook_id = create(client, merchant)["id"]
    for count in ("-1", "1001", "ten", "1.5"):
        res = client.get(f"{base(store_id)}/{hook_id}/deliveries?count={count}",
                         headers=auth(token))
        assert res.status_code == 422 and res.get_json()[0]["path"] == "count"
    res = client.get(f"{base(store_id)}/{hook_id}/deliveries?count=1000", headers=auth(token))
    assert res.status_code == 200
    res = client.get(f"{base(store_id)}/{hook_id}/deliveries/NoSuchDelivery", headers=auth(token))
    assert res.status_code == 404 and res.get_json()["code"] == "webhookdelivery-not-found"


def test_a_deleted_webhooks_deliveries_go_with_it(client, merchant, gateway):
    from sqlmodel import select

    from webhooks.models import WebhookDelivery
    from webhooks.worker import service_for

    store_id, token = merchant
    hook_id = create(client, merchant, url="http://shop.example:9/never", enabled=True)["id"]
    assert client.post(f"/api/v1/stores/{store_id}/invoices", headers=auth(token),
                       json={"amount": "1000"}).status_code == 200
    service_for(gateway).fan_out()
    with gateway.db.read() as session:
        assert len(session.exec(select(WebhookDelivery)).all()) == 1
    assert client.delete(f"{base(store_id)}/{hook_id}", headers=auth(token)).status_code == 200
    with gateway.db.read() as session:
        assert session.exec(select(WebhookDelivery)).all() == []
