"""The OpenAPI document at /api/v1/openapi.json: valid, complete, and true to the server.

Completeness runs both ways against app.url_map, so adding a route under /api/v1 without
documenting it (or documenting one that does not exist) fails here. Real responses are
validated with jsonschema against the schema the document gives for their status code.
"""
from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from merchants.service import ALL_PERMISSIONS, IMPLIED
from tests.conftest import auth, make_merchant

DOC_URI = "urn:busanpay:openapi"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
PUBLIC_PATHS = {"/api/v1/openapi.json", "/api/v1/health"}


# -- helpers ------------------------------------------------------------------------------
@pytest.fixture
def doc(client) -> dict:
    res = client.get("/api/v1/openapi.json")
    assert res.status_code == 200
    return res.get_json()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def openapi_path(rule: str) -> str:
    """Flask `/stores/<store_id>/x/<int:n>` -> OpenAPI `/stores/{storeId}/x/{n}`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", lambda m: "{" + camel(m.group(1)) + "}", rule)


def flask_operations(app) -> set[tuple[str, str]]:
    return {(openapi_path(rule.rule), method.lower())
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
            for method in rule.methods - IGNORED_METHODS}


def documented_operations(doc) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch"}
    return {(path, method) for path, item in doc["paths"].items()
            for method in item if method in methods}


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def deref(doc, node: dict, pointer: str) -> tuple[dict, str]:
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#")
        node = doc
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def check_response(doc, path: str, method: str, res) -> None:
    """The status is documented for the operation and the JSON body fits its schema."""
    op = doc["paths"][path][method]
    status = str(res.status_code)
    assert status in op["responses"], \
        f"{method.upper()} {path} answered {status}, undocumented: {res.get_data(as_text=True)[:300]}"
    response, pointer = deref(doc, op["responses"][status],
                              f"/paths/{escape(path)}/{method}/responses/{status}")
    content = response.get("content", {})
    if "application/json" not in content:
        assert not res.get_data(), f"{method.upper()} {path} {status}: documented without a body"
        return
    assert res.is_json, f"{method.upper()} {path} {status} is not JSON"
    registry = Registry().with_resource(DOC_URI, Resource(doc, specification=DRAFT202012))
    schema = {"$ref": f"{DOC_URI}#{pointer}/content/application~1json/schema"}
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in Draft202012Validator(schema, registry=registry).iter_errors(res.get_json())]
    assert not errors, f"{method.upper()} {path} {status} does not match the document: {errors}"


STORE = "/api/v1/stores/{storeId}/invoices"
INVOICE = "/api/v1/invoices/{invoiceId}"
STORE_INVOICE = "/api/v1/stores/{storeId}/invoices/{invoiceId}"


class Api:
    """Calls a documented path template and checks the answer against the document."""

    def __init__(self, client, doc, store_id: str, token: str | None):
        self.client, self.doc, self.store_id, self.token = client, doc, store_id, token

    def __call__(self, method: str, template: str, invoice_id: str = "", *, token="default",
                 expect: int | None = None, **kwargs):
        token = self.token if token == "default" else token
        url = template.replace("{storeId}", self.store_id).replace("{invoiceId}", invoice_id)
        headers = {**(auth(token) if token else {}), **kwargs.pop("headers", {})}
        res = self.client.open(url, method=method.upper(), headers=headers, **kwargs)
        if expect is not None:
            assert res.status_code == expect, (method, url, res.status_code, res.get_data()[:300])
        check_response(self.doc, template, method, res)
        return res


@pytest.fixture
def api(client, doc, merchant) -> Api:
    store_id, token = merchant
    return Api(client, doc, store_id, token)


# -- (1) the document is valid OpenAPI ----------------------------------------------------
def test_the_document_is_valid_openapi(doc):
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")


def test_the_document_needs_no_auth_and_is_the_built_one(client, app):
    from payments.openapi import build_document

    res = client.get("/api/v1/openapi.json")
    assert res.status_code == 200 and res.mimetype == "application/json"
    settings = app.extensions["busanpay"].settings
    assert res.get_json() == json.loads(json.dumps(build_document(
        max_body_bytes=settings.max_body_bytes, max_invoice_krw=settings.max_invoice_krw)))
    assert client.get("/api/v1/openapi.json/").status_code == 200  # trailing slash too


# -- (2) the document and the routes agree, both ways -------------------------------------
def test_every_route_is_documented_and_every_documented_route_exists(app, doc):
    routes, documented = flask_operations(app), documented_operations(doc)
    assert routes - documented == set(), "routes missing from payments/openapi.py"
    assert documented - routes == set(), "documented operations the app does not serve"
    for path, method in documented:  # path templates name their parameters
        op = doc["paths"][path][method]
        declared = {deref(doc, p, "")[0]["name"] for p in op.get("parameters", [])
                    if deref(doc, p, "")[0]["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_operations_are_authenticated_with_a_known_permission(doc):
    for path, method in documented_operations(doc):
        op = doc["paths"][path][method]
        if path in PUBLIC_PATHS:
            assert op["security"] == []
            continue
        [requirement] = op["security"]
        if requirement["API_Key"] == []:  # any live key (api-keys/current, server/info)
            assert {"200", "401"} <= set(op["responses"]), (method, path)
            continue
        [permission] = requirement["API_Key"]
        assert permission in ALL_PERMISSIONS and permission in op["description"]
        assert {"200", "401", "403"} <= set(op["responses"]), (method, path)


def test_each_operation_needs_exactly_its_documented_permission(app, client, doc):
    keys: dict[str, tuple] = {}  # permission -> (store and key lacking it, store and key with only it)
    for path, method in sorted(documented_operations(doc)):
        op = doc["paths"][path][method]
        if not op["security"] or not op["security"][0]["API_Key"]:
            continue
        [permission] = op["security"][0]["API_Key"]
        if permission not in keys:
            lacking = [p for p in ALL_PERMISSIONS
                       if p != permission and permission not in IMPLIED.get(p, ())]
            keys[permission] = (make_merchant(app, name="Lacking", permissions=lacking),
                                make_merchant(app, name="Exact", permissions=[permission]))
        (lacking_store, lacking_key), (exact_store, exact_key) = keys[permission]
        body = {"json": {}} if method in ("post", "put") else {}
        res = Api(client, doc, lacking_store, lacking_key)(method, path, "NoSuchInvoice", **body)
        assert res.status_code == 403 and permission in res.get_json()["message"], (method, path)
        res = Api(client, doc, exact_store, exact_key)(method, path, "NoSuchInvoice", **body)
        assert res.status_code not in (401, 403), (method, path, res.get_json())


# -- (3) real responses match the documented schemas ---------------------------------------
def test_invoice_lifecycle_responses_match_the_document(api):
    created = api("post", STORE, json={
        "amount": "15000", "currency": "KRW", "metadata": {"orderId": "A-1", "note": 1.5},
        "checkout": {"speedPolicy": "highspeed", "expirationMinutes": 30,
                     "redirectURL": "https://shop.example/done", "defaultLanguage": "en-US"}},
        expect=200).get_json()
    top_up = api("post", STORE, json={"metadata": {"orderId": 7}}, expect=200).get_json()
    assert top_up["type"] == "TopUp" and top_up["amount"] == "0"
    api("post", STORE, json={"amount": 2500, "currency": "sats"}, expect=200)
    invoice_id = created["id"]
    for template in (INVOICE, STORE_INVOICE):
        assert api("get", template, invoice_id, expect=200).get_json()["id"] == invoice_id
        methods = api("get", template + "/payment-methods", invoice_id, expect=200).get_json()
        assert methods[0]["amount"] == "0.0001" and methods[0]["due"] == "0.0001"
    listed = api("get", STORE, query_string=[("status", "new"), ("status", "Processing"),
                                             ("orderId", "A-1"), ("take", "1000"),
                                             ("startDate", str(created["createdTime"])),
                                             ("includeArchived", "true")], expect=200).get_json()
    assert [i["id"] for i in listed] == [invoice_id]
    api("put", INVOICE, invoice_id, json={"metadata": {"orderId": "A-2"}}, expect=200)
    api("delete", STORE_INVOICE, invoice_id, expect=200)
    api("post", INVOICE + "/unarchive", invoice_id, data=b"", expect=200)
    api("post", STORE_INVOICE + "/unarchive", invoice_id, json=None, expect=200)
    marked = api("post", INVOICE + "/status", invoice_id, json={"status": "settled"},
                 expect=200).get_json()
    assert marked["status"] == "Settled" and marked["additionalStatus"] == "Marked"
    assert marked["availableStatusesForManualMarking"] == ["Invalid"]
    again = api("post", STORE_INVOICE + "/status", invoice_id, json={"status": "Settled"}, expect=422)
    assert again.get_json()[0]["path"] == "status"


def test_validation_errors_are_documented_arrays(api):
    res = api("post", STORE, json={"amount": "12.5", "currency": "USD",
                                   "checkout": {"speedPolicy": "Warp", "colour": "red"}}, expect=422)
    assert {e["path"] for e in res.get_json()} >= {"currency", "checkout.speedPolicy",
                                                   "checkout.colour"}
    api("post", STORE, json={"amount": 1000}, headers={"Idempotency-Key": "k" * 201}, expect=422)
    for query in ("status=Paid", "take=1001", "skip=-1", "startDate=yesterday"):
        api("get", STORE, query_string=query, expect=422)
    invoice_id = api("post", STORE, json={"amount": 1000}, expect=200).get_json()["id"]
    api("put", INVOICE, invoice_id, json={"metadata": "no"}, expect=422)
    api("post", INVOICE + "/status", invoice_id, json={"status": "Expired"}, expect=422)
    api("post", INVOICE + "/status", invoice_id, data=b"null",
        headers={"Content-Type": "application/json"}, expect=422)


def test_not_found_forbidden_and_unauthenticated_are_documented_problems(app, api):
    invoice_id = api("post", STORE, json={"amount": 1000}, expect=200).get_json()["id"]
    for template in (INVOICE, STORE_INVOICE, INVOICE + "/payment-methods", INVOICE + "/status"):
        method = "post" if template.endswith("/status") else "get"
        res = api(method, template, "NoSuchInvoice", json={"status": "Settled"}, expect=404)
        assert res.get_json()["code"] == "invoice-not-found"
    api("delete", INVOICE, "x" * 40, expect=404)
    _, other_token = make_merchant(app, name="Jagalchi Fish")
    api("get", INVOICE, invoice_id, token=other_token, expect=404)  # not their invoice
    res = api("get", STORE, token=other_token, expect=403)
    assert res.get_json()["code"] == "missing-permission"
    api("post", STORE_INVOICE + "/status", invoice_id, token=other_token,
        json={"status": "Settled"}, expect=403)
    for token in (None, "not-a-key"):
        res = api("get", INVOICE, invoice_id, token=token, expect=401)
        assert res.get_json()["code"] == "unauthenticated"
    api("post", STORE, token=None, json={"amount": 1}, expect=401)


@pytest.mark.parametrize("data,content_type,code", [
    (b"{not json", "application/json", "invalid-json"),
    (b'{"amount": 100}', "text/plain", "unsupported-content-type"),
    (b"", "application/json", "missing-body"),
])
def test_malformed_bodies_are_documented_400s(api, data, content_type, code):
    res = api("post", STORE, data=data, headers={"Content-Type": content_type}, expect=400)
    assert res.get_json()["code"] == code


def test_conflict_body_too_large_and_missing_store_are_documented(api, app):
    body = {"amount": 1000}
    first = api("post", STORE, json=body, headers={"Idempotency-Key": "order-9"}, expect=200)
    again = api("post", STORE, json=body, headers={"Idempotency-Key": "order-9"}, expect=200)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    res = api("post", STORE, json={"amount": 2000}, headers={"Idempotency-Key": "order-9"},
              expect=409)
    assert res.get_json()["code"] == "idempotency-key-reused"
    big = json.dumps({"amount": 100, "metadata": {"x": "y" * 100_000}})
    res = api("post", STORE, data=big, headers={"Content-Type": "application/json"}, expect=413)
    assert res.get_json()["code"] == "body-too-large"
    api("post", INVOICE + "/status", first.get_json()["id"], data=big,
        headers={"Content-Type": "application/json"}, expect=413)

    from merchants.models import Store

    gateway = app.extensions["busanpay"]
    with gateway.db.write() as session:
        store = session.get(Store, api.store_id)
        store.archived = True
        session.add(store)
    res = api("post", STORE, json=body, expect=404)
    assert res.get_json()["code"] == "store-not-found"


def test_rate_unavailable_is_a_documented_503(api, gateway, monkeypatch):
    from payments.rates import RateUnavailable

    class NoRates:
        def current(self):
            raise RateUnavailable("every rate source is stale")

    monkeypatch.setattr(gateway.invoices, "rates", NoRates())
    res = api("post", STORE, json={"amount": 1000}, expect=503)
    assert res.get_json()["code"] == "rate-unavailable"


def test_rate_limited_is_a_documented_429(app_config, merchant, doc, app):
    from app import create_app

    limited = create_app({**app_config, "invoice_rate_limit": "2 per minute"})
    try:
        store_id, token = merchant
        api = Api(limited.test_client(), doc, store_id, token)
        for _ in range(2):
            api("post", STORE, json={"amount": 1000}, expect=200)
        res = api("post", STORE, json={"amount": 1000}, expect=429)
        assert res.get_json()["code"] == "rate-limited" and int(res.headers["Retry-After"]) > 0
    finally:
        limited.extensions["busanpay"].close()


def test_a_fractional_payment_tolerance_is_a_number(api):
    api("post", STORE, json={"amount": 1000, "checkout": {"paymentTolerance": "0.5"}}, expect=200)
