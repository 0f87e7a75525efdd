"""The OpenAPI 3.1 document of the merchant API, served at GET /api/v1/openapi.json.

Built from small functions rather than one literal: each group of routes is a function
that returns its paths (see `ROUTE_GROUPS`); schemas live in `schemas()`. To document a new
route, write (or extend) a group function and list it in `ROUTE_GROUPS`;
tests/integration/test_openapi.py fails while a Flask route under /api/v1 is missing here.

Enums and limits come from the modules that enforce them, so the document cannot drift from
the validation code. OpenAPI 3.1 is used so schemas are plain JSON Schema 2020-12 (nullable
as `"type": [..., "null"]`) and security requirements may name the permissions they need.
"""
from __future__ import annotations

from typing import Callable

from flask import Blueprint, current_app, jsonify

from merchants.service import (ALL_PERMISSIONS, CAN_CREATE_INVOICE, CAN_MODIFY_INVOICES,
                               CAN_VIEW_INVOICES)
from payments.invoice_request import (LANGUAGES, MAX_EXPIRATION_MINUTES, MAX_METADATA_BYTES,
                                      MAX_MONITORING_MINUTES)
from payments.invoice_status import AdditionalStatus, InvoiceStatus
from payments.quoting import CURRENCIES
from untrusted import MAX_JSON_DEPTH

API = "/api/v1"
OPENAPI_PATH = f"{API}/openapi.json"
JSON = "application/json"
SPEED_POLICIES = ("HighSpeed", "MediumSpeed", "LowMediumSpeed", "LowSpeed")
STATUS_MARKS = ("Settled", "Invalid")
MAX_TAKE = 1000
DEFAULT_TAKE = 50
IDEMPOTENCY_KEY_MAX = 200

bp = Blueprint("openapi", __name__)


@bp.get(OPENAPI_PATH)
def openapi_json():
    """The document; public, like Greenfield's own swagger.json."""
    settings = current_app.extensions["busanpay"].settings
    response = jsonify(build_document(max_body_bytes=settings.max_body_bytes,
                                      max_invoice_krw=settings.max_invoice_krw))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# -- small helpers ------------------------------------------------------------------------
def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def nullable(schema: dict) -> dict:
    """`schema` or JSON null (OpenAPI 3.1 style)."""
    if "type" in schema and "$ref" not in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*kinds, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict, *, required: tuple[str, ...] | bool = (), closed: bool = True,
        description: str | None = None) -> dict:
    """An object schema. required=True: every property is always present (responses)."""
    schema: dict = {"type": "object", "properties": properties}
    names = list(properties) if required is True else list(required or ())
    if names:
        schema["required"] = names
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def decimal_string(description: str, example: str, *, signed: bool = False) -> dict:
    return {"type": "string", "format": "decimal", "description": description,
            "pattern": ("^-?" if signed else "^") + r"[0-9]+(\.[0-9]+)?$", "examples": [example]}


def enum(values, description: str) -> dict:
    return {"type": "string", "enum": list(values), "description": description}


def json_body(schema: dict, description: str, **extra) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def problem(description: str, *codes: str, headers: dict | None = None) -> dict:
    """A `{"code","message"}` response whose code is one of `codes`."""
    schema = {"allOf": [ref("ProblemDetails")], "properties": {"code": {"enum": list(codes)}}}
    return json_body(schema, description, **({"headers": headers} if headers else {}))


def path_param(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def query_param(name: str, description: str, schema: dict, **extra) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


# -- components ---------------------------------------------------------------------------
def status_schemas() -> dict:
    return {
        "InvoiceStatus": enum([s.value for s in InvoiceStatus], "Where the invoice is in its life."),
        "InvoiceAdditionalStatus": enum(
            [s.value for s in AdditionalStatus],
            "Why the invoice has its status: `Marked` when a person set it by hand; "
            "`PaidPartial`, `PaidOver`, `PaidLate` describe the money received."),
        "InvoiceStatusMark": enum(STATUS_MARKS, "A status an invoice may be marked as by hand."),
        "InvoiceType": enum(("Standard", "TopUp"),
                            "`TopUp` when created without an amount: any payment counts as full."),
        "PaymentStatus": enum(("Invalid", "Processing", "Settled"),
                              "`Invalid` once the transaction left the chain view (replaced or "
                              "conflicted)."),
        "SpeedPolicy": enum(SPEED_POLICIES,
                            "Confirmations needed before an invoice is Settled: HighSpeed 0, "
                            "MediumSpeed 1, LowMediumSpeed 2, LowSpeed 6."),
    }


def basic_schemas() -> dict:
    return {
        "StoreId": {"type": "string", "description": "A store (merchant) identifier.",
                    "examples": ["7Kc2fjGvX4bS9yQ1mNpR3tUwZ8aE5hLd"]},
        "InvoiceId": {"type": "string", "description": "An invoice identifier (base58).",
                      "examples": ["Hq3v9XbT2kLm8PzR4sYw6c"]},
        "UnixTimestamp": {"type": "integer", "format": "int64",
                          "description": "A moment as unix time in seconds.",
                          "examples": [1795316400]},
        "ProblemDetails": obj({
            "code": {"type": "string", "description": "A stable, machine-readable error code."},
            "message": {"type": "string", "description": "What went wrong, for people."},
        }, required=True, description="An error that is not about a single request field."),
        "ValidationError": {
            "type": "array", "description": "Every problem found in the request, at once.",
            "items": obj({
                "path": {"type": "string", "description":
                         "The offending field as a dotted path (`amount`, "
                         "`checkout.expirationMinutes`), a query parameter or header name, "
                         "or empty for the body as a whole."},
                "message": {"type": "string", "description": "What is wrong with it."},
            }, required=True),
        },
    }


def request_schemas(max_invoice_krw: int | None) -> dict:
    limit = f" A KRW amount is at most {max_invoice_krw} won." if max_invoice_krw else ""
    return {
        "InvoiceMetadata": obj({
            "orderId": {"type": ["string", "integer"], "maxLength": 200,
                        "description": "The shop's order reference; the list can filter by it."},
        }, closed=False, description=(
            "A free JSON object kept with the invoice and returned exactly as sent (at most "
            f"{MAX_METADATA_BYTES} bytes; numbers finite and within a double's range, as "
            "JSON has no NaN or Infinity). Greenfield's well-known fields (`orderUrl`, "
            "`buyerEmail`, `itemDesc`, …) may be used. Create and update check it alike.")),
        "CheckoutOptions": obj({
            "speedPolicy": nullable({**ref("SpeedPolicy"), "description":
                                     "Matched in any case. Defaults to the store's."}),
            "paymentMethods": nullable({"type": "array", "items": {
                "type": "string", "enum": ["BTC", "BTC-CHAIN", "BTC-ONCHAIN"]},
                "description": "Only on-chain bitcoin is offered (any case)."}),
            "defaultPaymentMethod": nullable({"type": "string", "description": "Accepted, ignored."}),
            "lazyPaymentMethods": nullable({"type": "boolean", "description": "Accepted, ignored."}),
            "expirationMinutes": nullable({
                "type": ["integer", "string"], "minimum": 1, "maximum": MAX_EXPIRATION_MINUTES,
                "description": "Minutes until the invoice expires (whole; default: "
                               "the server's, 15)."}),
            "monitoringMinutes": nullable({
                "type": ["integer", "string"], "minimum": 1, "maximum": MAX_MONITORING_MINUTES,
                "description": "Minutes after expiry during which payments are still watched."}),
            "paymentTolerance": nullable({
                "type": ["number", "string"], "minimum": 0, "maximum": 100,
                "description": "Percent underpayment still counted as paid (default: the store's). "
                               "At most the city's maximum (BUSANPAY_MAX_PAYMENT_TOLERANCE, 5 by "
                               "default), else 422. It forgives the status only: the merchant is "
                               "credited the value received."}),
            "redirectURL": nullable({"type": "string", "format": "uri",
                                     "description": "An http(s) URL for the return-to-shop button."}),
            "redirectAutomatically": nullable({"type": "boolean"}),
            "defaultLanguage": nullable({"type": "string", "description":
                                         f"One of {', '.join(LANGUAGES)}; regional forms such as "
                                         "`zh-CN` or `ja_JP` are accepted."}),
            "requiresRefundEmail": nullable({"type": "boolean", "description": "Accepted, ignored."}),
            "checkoutType": nullable({"type": "string", "description": "Accepted, ignored."}),
        }, description="Checkout settings for a new invoice; unknown fields are refused (422)."),
        "ReceiptOptions": obj({
            "enabled": nullable({"type": "boolean"}),
            "showQR": nullable({"type": "boolean"}),
            "showPayments": nullable({"type": "boolean"}),
        }, description="Public receipt settings."),
        "CreateInvoiceRequest": obj({
            "amount": nullable({
                "type": ["string", "number"], "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$",
                "description": "The price as a decimal string (preferred: exact) or a JSON "
                               "number. KRW in whole won, BTC with at most 8 decimals, SATS in "
                               "whole satoshis. Absent or null: a top-up invoice." + limit,
                "examples": ["15000", "0.0015"]}),
            "currency": nullable({"type": "string", "description":
                                  f"One of {', '.join(CURRENCIES)} (any case); default KRW.",
                                  "examples": ["KRW"]}),
            "metadata": nullable(ref("InvoiceMetadata")),
            "checkout": nullable(ref("CheckoutOptions")),
            "receipt": {"description": "Accepted for Greenfield compatibility; not used."},
            "additionalSearchTerms": {"description": "Accepted for Greenfield compatibility; "
                                                     "not used."},
        }, description="A new invoice. Unknown fields are refused (422)."),
        "UpdateInvoiceRequest": obj({"metadata": ref("InvoiceMetadata")}, required=("metadata",),
                                    closed=False,
                                    description="Replaces the invoice's metadata as a whole."),
        "MarkInvoiceStatusRequest": obj({
            "status": {**ref("InvoiceStatusMark"), "description": "Matched in any case."},
        }, required=("status",), closed=False),
    }


INVOICE_FIELDS = ("id", "storeId", "amount", "paidAmount", "currency", "type", "checkoutLink",
                  "createdTime", "expirationTime", "monitoringExpiration", "status",
                  "additionalStatus", "availableStatusesForManualMarking", "archived",
                  "metadata", "checkout", "receipt", "incident")


def response_schemas() -> dict:
    return {
        "InvoiceCheckout": obj({
            "speedPolicy": ref("SpeedPolicy"),
            "paymentMethods": {"type": "array", "items": {"type": "string"}},
            "defaultPaymentMethod": {"type": "string"},
            "expirationMinutes": {"type": "integer"},
            "monitoringMinutes": {"type": "integer"},
            "paymentTolerance": {"type": "number", "minimum": 0, "maximum": 100},
            "redirectURL": {"type": ["string", "null"]},
            "redirectAutomatically": {"type": "boolean"},
            "defaultLanguage": {"type": ["string", "null"], "enum": [*LANGUAGES, None]},
            "lazyPaymentMethods": {"type": "boolean", "const": False, "description":
                                   "Always false: the address is made with the invoice."},
        }, required=True, description="The checkout settings in effect for the invoice."),
        "Invoice": obj({
            "id": ref("InvoiceId"),
            "storeId": ref("StoreId"),
            "amount": decimal_string("The price in `currency`; \"0\" for a top-up invoice.",
                                     "15000"),
            "paidAmount": decimal_string(
                "What the payer paid so far, in `currency`: for KRW the counted bitcoin at the "
                "locked rate, rounded down to whole won.", "15000"),
            "currency": enum(CURRENCIES, "The currency of `amount`."),
            "type": ref("InvoiceType"),
            "checkoutLink": {"type": "string", "format": "uri",
                             "description": "The payment page to send the buyer to."},
            "createdTime": ref("UnixTimestamp"),
            "expirationTime": ref("UnixTimestamp"),
            "monitoringExpiration": {**ref("UnixTimestamp"),
                                     "description": "Until when late payments are still seen."},
            "status": ref("InvoiceStatus"),
            "additionalStatus": ref("InvoiceAdditionalStatus"),
            "availableStatusesForManualMarking": {"type": "array",
                                                  "items": ref("InvoiceStatusMark")},
            "archived": {"type": "boolean"},
            "metadata": {"type": "object", "description": "The metadata exactly as sent."},
            "checkout": ref("InvoiceCheckout"),
            "receipt": obj({"enabled": {"type": "boolean"}, "showQR": {"type": "boolean"},
                            "showPayments": {"type": "boolean"}}, required=True),
            "paymentMethods": {"type": "array", "items": ref("PaymentMethod"), "description":
                               "Only with `includePaymentMethods=true`: as `/payment-methods` "
                               "returns them."},
            "incident": nullable(obj({
                "kind": enum(("deep-reorg", "zero-conf-loss", "paid-after-monitoring"), (
                    "`deep-reorg`: settled, but the payments no longer carry the confirmed "
                    "value it settled on (a reorg, or a double spend after settlement); the "
                    "merchant's credit is held. `zero-conf-loss`: the same for an invoice settled at 0 "
                    "confirmations under the city's limit: the merchant keeps its credit, the "
                    "city books the loss. `paid-after-monitoring`: money came after "
                    "monitoring ended (never credited; owed back).")),
                "since": {**ref("UnixTimestamp"), "description": "When it opened."},
            }, required=True, description=(
                "Not in Greenfield: an open incident that needs a person, or null. It closes "
                "by itself when its facts are gone (e.g. the payment confirms again)."))),
        }, required=INVOICE_FIELDS, description="An invoice."),
        "InvoiceList": {"type": "array", "items": ref("Invoice")},
        "Payment": obj({
            "id": {"type": "string", "description": "`<txid>-<vout>` on-chain; the payment "
                                                    "hash (64 hex) for a Lightning payment."},
            "receivedDate": ref("UnixTimestamp"),
            "value": decimal_string("The output's (or Lightning payment's) value in BTC.",
                                    "0.0001"),
            "fee": decimal_string("Always \"0\".", "0"),
            "status": ref("PaymentStatus"),
            "destination": {"type": "string", "description": "The address paid; `lightning` "
                                                             "for a Lightning payment."},
        }, required=True, description="One transaction output, or one settled Lightning "
                                      "invoice, paying the invoice (a Lightning payment is "
                                      "final: always `Settled`)."),
        "PaymentMethod": obj({
            "paymentMethodId": enum(("BTC-CHAIN", "BTC-LN"), (
                "`BTC-CHAIN`: on-chain bitcoin. `BTC-LN`: Lightning, listed while the city's "
                "node is configured (see `activated`).")),
            "currency": {"type": "string", "const": "BTC"},
            "destination": {"type": "string", "description":
                            "The bitcoin address to pay (`BTC-CHAIN`); the BOLT11 to pay "
                            "(`BTC-LN`: the current one, or the last one the invoice had when "
                            "none can be paid now; empty when it never had one)."},
            "paymentLink": {"type": ["string", "null"], "description":
                            "A BIP21 `bitcoin:` URI (`BTC-CHAIN`); `lightning:<BOLT11>` "
                            "(`BTC-LN`; null without a BOLT11)."},
            "rate": decimal_string("Won per bitcoin, locked when the invoice was created.",
                                   "150000000"),
            "paymentMethodPaid": decimal_string("BTC received by this method so far.", "0"),
            "totalPaid": decimal_string("BTC received so far by every method.", "0"),
            "due": decimal_string("BTC still to pay (every method counted); negative when "
                                  "overpaid.", "0.0001", signed=True),
            "amount": decimal_string("The invoice price in BTC.", "0.0001"),
            "paymentMethodFee": decimal_string("Always \"0\".", "0"),
            "activated": {"type": "boolean", "description":
                          "`BTC-LN`: true while its BOLT11 can be paid now; false when the "
                          "invoice is on-chain only (`additionalData.reason` says why)."},
            "payments": {"type": "array", "items": ref("Payment"),
                         "description": "This method's payments."},
            "additionalData": {"anyOf": [obj({
                "keyIndex": {"type": "integer", "description": "Derivation index of the address."},
                "rateSource": {"type": "string"},
                "rateFetchedTime": ref("UnixTimestamp"),
            }, required=True, description="`BTC-CHAIN`."), obj({
                "paymentHash": {"type": ["string", "null"], "description":
                                "The current BOLT11's payment hash (null when not activated)."},
                "expirationTime": nullable({**ref("UnixTimestamp"), "description":
                                            "When the current BOLT11 expires (never after "
                                            "the invoice)."}),
                "unavailable": {"type": ["string", "null"], "enum": [
                    None, "unreachable", "no-inbound-liquidity", "refused", "btc-direct",
                    "top-up", "expired", "not-due"],
                    "description": "Why no BOLT11 can be paid now (null when activated)."},
                "reason": {"type": ["string", "null"], "description": "The same in words."},
            }, required=True, description="`BTC-LN`.")]},
        }, required=True, description="How to pay an invoice, and what was paid."),
        "PaymentMethodList": {"type": "array", "items": ref("PaymentMethod")},
    }


def schemas(max_invoice_krw: int | None = None) -> dict:
    return {**basic_schemas(), **status_schemas(), **request_schemas(max_invoice_krw),
            **response_schemas(), **webhook_schemas(), **store_schemas(),
            **pull_payment_schemas()}


def parameters() -> dict:
    return {
        "StoreId": path_param("storeId", "The store; the API key must belong to it.",
                              ref("StoreId")),
        "InvoiceId": path_param("invoiceId", "The invoice.", ref("InvoiceId")),
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
            "description": "Makes retries safe: a repeat with the same key and the same body "
                           "gets the first answer again (with `Idempotent-Replayed: true`) and "
                           "creates nothing; the same key with a different body is 409. Keys "
                           f"are per store, at most {IDEMPOTENCY_KEY_MAX} characters."},
    }


STRICT_JSON = (f"JSON is read as UTF-8, at most {MAX_JSON_DEPTH} levels of objects and arrays "
               "deep, with no NUL (`\\u0000`) or lone surrogate in any string (`invalid-json`).")


def responses(max_body_bytes: int | None) -> dict:
    size = f" ({max_body_bytes} bytes)" if max_body_bytes else ""
    return {
        "BadBody": problem("The body is missing, not JSON, or not sent as application/json. "
                           + STRICT_JSON, "missing-body", "invalid-json", "unsupported-content-type"),
        "BadOptionalBody": problem("A body was sent but is not JSON, or not sent as "
                                   "application/json (an empty or `null` body is fine). "
                                   + STRICT_JSON,
                                   "invalid-json", "unsupported-content-type"),
        "Unauthenticated": problem("No `Authorization: token <apiKey>` header, or the key is "
                                   "unknown or revoked.", "unauthenticated"),
        "MissingPermission": problem("The key lacks the permission, or belongs to another store.",
                                     "missing-permission"),
        "InvoiceNotFound": problem("No such invoice (in this store).", "invoice-not-found"),
        "StoreNotFound": problem("The store no longer exists.", "store-not-found"),
        "IdempotencyKeyReused": problem("The Idempotency-Key was used with a different body.",
                                        "idempotency-key-reused"),
        "BodyTooLarge": problem(f"The body is larger than the server accepts{size}.",
                                "body-too-large"),
        "ValidationFailed": json_body(ref("ValidationError"),
                                      "The request is well-formed but has invalid fields."),
        "RateLimited": problem("Too many requests for this API key; retry later.", "rate-limited",
                               headers={"Retry-After": {"description": "Seconds to wait.",
                                                        "schema": {"type": "integer"}}}),
        "RateUnavailable": problem("No fresh exchange rate: the invoice cannot be priced now. "
                                   "Nothing was created; retry shortly.", "rate-unavailable"),
    }


def security_schemes() -> dict:
    return {"API_Key": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "Send `Authorization: token <apiKey>`. Each operation lists the "
                       "permission it needs: " + ", ".join(f"`{p}`" for p in ALL_PERMISSIONS)
                       + ". `btcpay.store.canmodifyinvoices` includes viewing and creating; "
                         "`btcpay.store.canmodifystoresettings` includes everything."}}


# -- operations ---------------------------------------------------------------------------
STANDARD_ERRORS = ("401", "403")
ERROR_RESPONSES = {
    "400": "BadBody", "400?": "BadOptionalBody", "401": "Unauthenticated",
    "403": "MissingPermission", "404": "InvoiceNotFound", "404store": "StoreNotFound",
    "409": "IdempotencyKeyReused", "413": "BodyTooLarge", "422": "ValidationFailed",
    "429": "RateLimited", "503": "RateUnavailable",
}


def operation(operation_id: str, summary: str, *, permission: str, ok: dict,
              errors: tuple[str, ...] = (), description: str = "", parameters: list | None = None,
              body: dict | None = None, tag: str = "Invoices") -> dict:
    """One authenticated operation. `errors` are keys of ERROR_RESPONSES."""
    responses_ = {"200": ok}
    for key in (*STANDARD_ERRORS, *errors):
        responses_[key[:3]] = ref(ERROR_RESPONSES[key], "responses")
    op = {
        "operationId": operation_id, "summary": summary, "tags": [tag],
        "description": (description + "\n\n" if description else "")
        + f"Needs the permission `{permission}`.",
        "security": [{"API_Key": [permission]}],
        "x-permission": permission,
        "responses": dict(sorted(responses_.items())),
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    return op


def invoice_ok(description: str = "The invoice.") -> dict:
    return json_body(ref("Invoice"), description)


def request_body(schema: dict, description: str, *, required: bool = True) -> dict:
    return {"required": required, "description": description, "content": {JSON: {"schema": schema}}}


def per_invoice(suffix: str, methods: dict[str, dict]) -> dict:
    """The two path forms of an invoice route: with and without /stores/{storeId}."""
    short = {m: {**op, "parameters": [ref("InvoiceId", "parameters"), *op.get("parameters", [])]}
             for m, op in methods.items()}
    in_store = {m: {**op, "operationId": op["operationId"] + "InStore",
                    "parameters": [ref("StoreId", "parameters"), *short[m]["parameters"]]}
                for m, op in methods.items()}
    return {f"{API}/invoices/{{invoiceId}}{suffix}": short,
            f"{API}/stores/{{storeId}}/invoices/{{invoiceId}}{suffix}": in_store}


def list_parameters() -> list[dict]:
    return [
        ref("StoreId", "parameters"),
        query_param("status", "Only invoices in these statuses; repeat the parameter for several "
                    "(`?status=New&status=Processing`); matched in any case.",
                    {"type": "array", "items": ref("InvoiceStatus")},
                    style="form", explode=True),
        query_param("orderId", "Only invoices with these `metadata.orderId` values; repeat for "
                    "several.", {"type": "array", "items": {"type": "string"}},
                    style="form", explode=True),
        query_param("startDate", "Only invoices created at or after this unix time (seconds).",
                    ref("UnixTimestamp")),
        query_param("endDate", "Only invoices created at or before this unix time (seconds).",
                    ref("UnixTimestamp")),
        query_param("skip", "How many invoices to skip (newest first).",
                    {"type": "integer", "minimum": 0, "default": 0}),
        query_param("take", f"How many invoices to return, at most {MAX_TAKE}.",
                    {"type": "integer", "minimum": 0, "maximum": MAX_TAKE,
                     "default": DEFAULT_TAKE}),
        query_param("includeArchived", "Include archived invoices (`true`).",
                    {"type": "boolean", "default": False}),
        query_param("textSearch", "Only invoices this term names: their id, `orderId`, address "
                    "or a payment's txid, or any text in their metadata (buyer email, order "
                    "number…), in any case.", {"type": "string", "maxLength": 200}),
        include_payment_methods(),
    ]


def include_payment_methods() -> dict:
    return query_param("includePaymentMethods", "Add each invoice's `paymentMethods` (`true`).",
                       {"type": "boolean", "default": False})


def store_invoice_paths() -> dict:
    create = operation(
        "Invoices_CreateInvoice", "Create an invoice", permission=CAN_CREATE_INVOICE,
        description="Prices the invoice at the current exchange rate (locked for the invoice) "
                    "and assigns it a fresh bitcoin address.",
        parameters=[ref("StoreId", "parameters"), ref("IdempotencyKey", "parameters")],
        body=request_body(ref("CreateInvoiceRequest"), "The invoice to create."),
        ok=invoice_ok("The new invoice (or, for a repeated Idempotency-Key, the first answer).")
        | {"headers": {"Idempotent-Replayed": {
            "description": "`true` when this is the stored answer to an earlier identical request.",
            "schema": {"type": "string", "enum": ["true"]}}}},
        errors=("400", "404store", "409", "413", "422", "429", "503"))
    listing = operation(
        "Invoices_GetInvoices", "List invoices", permission=CAN_VIEW_INVOICES,
        description="Newest first. Archived invoices are left out unless asked for.",
        parameters=list_parameters(),
        ok=json_body(ref("InvoiceList"), "The matching invoices."), errors=("422",))
    return {f"{API}/stores/{{storeId}}/invoices": {"get": listing, "post": create}}


def invoice_paths() -> dict:
    return per_invoice("", {
        "get": operation("Invoices_GetInvoice", "Get an invoice", permission=CAN_VIEW_INVOICES,
                         parameters=[include_payment_methods()], ok=invoice_ok(),
                         errors=("404",)),
        "put": operation("Invoices_UpdateInvoice", "Replace an invoice's metadata",
                         permission=CAN_MODIFY_INVOICES,
                         body=request_body(ref("UpdateInvoiceRequest"), "The new metadata."),
                         ok=invoice_ok("The updated invoice."),
                         errors=("400", "404", "413", "422")),
        "delete": operation("Invoices_ArchiveInvoice", "Archive an invoice",
                            permission=CAN_MODIFY_INVOICES,
                            description="Hides the invoice from the list; it keeps working.",
                            ok={"description": "Archived (empty body)."}, errors=("404",)),
    })


def invoice_action_paths() -> dict:
    return {
        **per_invoice("/unarchive", {"post": operation(
            "Invoices_UnarchiveInvoice", "Unarchive an invoice", permission=CAN_MODIFY_INVOICES,
            body=request_body({}, "Ignored; may be empty or `null`.", required=False),
            ok=invoice_ok(), errors=("400?", "404", "413"))}),
        **per_invoice("/payment-methods", {"get": operation(
            "Invoices_GetInvoicePaymentMethods", "Get how to pay an invoice",
            permission=CAN_VIEW_INVOICES,
            description="The address, BIP21 link, locked rate and amounts (decimal BTC strings) "
                        "and the payments seen.",
            ok=json_body(ref("PaymentMethodList"), "One entry: on-chain bitcoin."),
            errors=("404",))}),
        **per_invoice("/status", {"post": operation(
            "Invoices_MarkInvoiceStatus", "Mark an invoice Settled or Invalid",
            permission=CAN_MODIFY_INVOICES,
            description="Only to a status in the invoice's `availableStatusesForManualMarking`; "
                        "otherwise 422 on `status`. The mark changes the status the shop sees "
                        "(and sends the webhook), never the money: the merchant is credited "
                        "what the invoice received on chain, whatever it is marked.",
            body=request_body(ref("MarkInvoiceStatusRequest"), "The status to set."),
            ok=invoice_ok("The marked invoice."), errors=("400?", "404", "413", "422"))}),
    }


def document_paths() -> dict:
    return {OPENAPI_PATH: {"get": {
        "operationId": "Meta_GetOpenApiDocument", "summary": "This OpenAPI document",
        "tags": ["Meta"], "security": [],
        "responses": {"200": json_body({"type": "object"}, "The OpenAPI 3.1 document.")},
    }}}


# -- webhooks -----------------------------------------------------------------------------
WEBHOOKS = f"{API}/stores/{{storeId}}/webhooks"


def webhook_schemas() -> dict:
    from webhooks.rules import (ALL_EVENT_TYPES, DELIVERY_STATUSES, MAX_SECRET_LENGTH,
                                MAX_URL_LENGTH)

    url = {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH,
           "description": "Where each event is POSTed: an absolute http or https URL.",
           "examples": ["https://shop.example/btcpay/webhook"]}
    secret_text = ("The shared secret for the `BTCPay-Sig` header: "
                   "`sha256=<hex HMAC-SHA256(UTF-8 secret, raw body)>`.")
    return {
        "WebhookId": {"type": "string", "description": "A webhook identifier (base58).",
                      "examples": ["4fJ8kQz2mNpR3tUwZ8aE5h"]},
        "WebhookDeliveryId": {"type": "string", "description": "A delivery identifier (base58).",
                              "examples": ["9xTq2LmV8bS4yQ1mNpR3tU"]},
        "WebhookEventType": enum(ALL_EVENT_TYPES, (
            "An invoice event a webhook can receive. `BusanPayInvoiceIncident` (not in "
            "Greenfield: an incident opened or closed, see `Invoice.incident`) is sent only "
            "when named in `specificEvents`.")),
        "WebhookAuthorizedEvents": obj({
            "everything": {"type": "boolean",
                           "description": "Every Greenfield event type, including ones added "
                                          "later (Busan Pay's own only when named)."},
            "specificEvents": {"type": "array", "items": ref("WebhookEventType"),
                               "description": "The events sent when `everything` is false."},
        }, required=True, description="Which events the endpoint receives."),
        "WebhookData": obj({
            "id": ref("WebhookId"),
            "enabled": {"type": "boolean", "description": "Disabled webhooks receive nothing."},
            "automaticRedelivery": {"type": "boolean", "description":
                                    "Retry failed deliveries (5xx, 408, 429, no answer) after "
                                    "10 s, 1 min, then 6 times every 10 min."},
            "url": url,
            "authorizedEvents": ref("WebhookAuthorizedEvents"),
        }, required=True, description="A webhook. The secret is never shown again after "
                                      "creation."),
        "WebhookDataList": {"type": "array", "items": ref("WebhookData")},
        "WebhookDataCreateResult": obj({
            "id": ref("WebhookId"),
            "enabled": {"type": "boolean"},
            "automaticRedelivery": {"type": "boolean"},
            "url": url,
            "authorizedEvents": ref("WebhookAuthorizedEvents"),
            "secret": {"type": "string", "description": secret_text + " Shown only here: keep it."},
        }, required=True, description="The new webhook, with its secret (the only time it is "
                                      "shown)."),
        "WebhookDataRequest": obj({
            "id": {"type": ["string", "null"], "description": "Accepted and ignored."},
            "enabled": nullable({"type": "boolean", "description": "Default true."}),
            "automaticRedelivery": nullable({"type": "boolean", "description": "Default true."}),
            "url": url,
            "authorizedEvents": nullable(obj({
                "everything": nullable({"type": "boolean", "description": "Default true."}),
                "specificEvents": nullable({"type": "array", "items": ref("WebhookEventType")}),
            }, description="Default: everything.")),
            "secret": nullable({"type": "string", "maxLength": MAX_SECRET_LENGTH, "description":
                                secret_text + " On create, left out, null or empty: one is "
                                "generated; on update: the secret is kept."}),
        }, required=("url",), description="A webhook to create, or the full new state of one "
                                          "(update). Unknown fields are refused (422)."),
        "WebhookDeliveryStatus": enum(DELIVERY_STATUSES, (
            "`HttpSuccess`: a 2xx answer; `HttpError`: another HTTP status (see `httpCode`); "
            "`Failed`: no HTTP answer (see `errorMessage`). `Pending` (not in Greenfield): "
            "not attempted yet. A delivery waiting for a retry shows its last attempt.")),
        "WebhookDeliveryData": obj({
            "id": ref("WebhookDeliveryId"),
            "timestamp": {**ref("UnixTimestamp"), "description": "When the delivery was created."},
            "deliveryTime": nullable({**ref("UnixTimestamp"),
                                      "description": "When it was last attempted."}),
            "httpCode": {"type": ["integer", "null"],
                         "description": "The last attempt's HTTP status, if it got one."},
            "errorMessage": {"type": ["string", "null"],
                             "description": "Why the last attempt failed, if it did."},
            "status": ref("WebhookDeliveryStatus"),
        }, required=True, description="One event sent (or to send) to one webhook."),
        "WebhookDeliveryList": {"type": "array", "items": ref("WebhookDeliveryData")},
        "WebhookEvent": obj({
            "deliveryId": ref("WebhookDeliveryId"),
            "webhookId": ref("WebhookId"),
            "originalDeliveryId": {**ref("WebhookDeliveryId"), "description":
                                   "The first delivery of this event; receivers deduplicate "
                                   "by `deliveryId` (at-least-once delivery)."},
            "isRedelivery": {"type": "boolean"},
            "type": ref("WebhookEventType"),
            "timestamp": ref("UnixTimestamp"),
            "storeId": ref("StoreId"),
            "invoiceId": ref("InvoiceId"),
            "metadata": {"type": "object"},
        }, required=True, closed=False, description=(
            "The JSON body POSTed to the webhook URL with `Content-Type: application/json` and "
            "`BTCPay-Sig: sha256=<hex HMAC-SHA256(secret, raw body)>`; events add their own "
            "fields (`manuallyMarked`, `overPaid`, `partiallyPaid`, `afterExpiration`, "
            "`payment`, …; `InvoiceReceivedPayment` and `InvoicePaymentSettled` name the "
            "payment's method in `paymentMethodId`: `BTC-CHAIN` or `BTC-LN`, whose `payment.id` "
            "is the payment hash; `BusanPayInvoiceIncident`: `incident` (the open one, as on the "
            "invoice, or null), `closedIncident` (`kind`, `since`, `until`, or null) and "
            "`reason`).")),
    }


def webhook_params(*names: str) -> list[dict]:
    params = {
        "storeId": ref("StoreId", "parameters"),
        "webhookId": path_param("webhookId", "The webhook (of this store).", ref("WebhookId")),
        "deliveryId": path_param("deliveryId", "The delivery (of this webhook).",
                                 ref("WebhookDeliveryId")),
    }
    return [params[n] for n in names]


def webhook_operation(operation_id: str, summary: str, *, not_found: tuple[str, ...] = (),
                      **kwargs) -> dict:
    from merchants.service import CAN_MODIFY_WEBHOOKS

    op = operation(operation_id, summary, permission=CAN_MODIFY_WEBHOOKS, tag="Webhooks",
                   **kwargs)
    if not_found:
        op["responses"]["404"] = problem("No such webhook in this store, or no such delivery "
                                         "of it.", *not_found)
        op["responses"] = dict(sorted(op["responses"].items()))
    return op


def webhook_paths() -> dict:
    from webhooks.rules import DEFAULT_DELIVERY_COUNT, MAX_DELIVERY_COUNT

    hook, delivery = ("webhook-not-found",), ("webhook-not-found", "webhookdelivery-not-found")
    webhook_ok = json_body(ref("WebhookData"), "The webhook.")
    body = request_body(ref("WebhookDataRequest"), "The webhook.")
    return {
        WEBHOOKS: {
            "get": webhook_operation("Webhooks_GetWebhooks", "List the store's webhooks",
                                     parameters=webhook_params("storeId"),
                                     ok=json_body(ref("WebhookDataList"), "Oldest first.")),
            "post": webhook_operation(
                "Webhooks_CreateWebhook", "Create a webhook", parameters=webhook_params("storeId"),
                description="Events from now on are POSTed to `url`, signed with the secret.",
                body=body, ok=json_body(ref("WebhookDataCreateResult"), "The new webhook."),
                errors=("400", "413", "422")),
        },
        f"{WEBHOOKS}/{{webhookId}}": {
            "get": webhook_operation("Webhooks_GetWebhook", "Get a webhook", not_found=hook,
                                     parameters=webhook_params("storeId", "webhookId"),
                                     ok=webhook_ok),
            "put": webhook_operation(
                "Webhooks_UpdateWebhook", "Update a webhook", not_found=hook,
                parameters=webhook_params("storeId", "webhookId"),
                description="Replaces the webhook's settings; the secret changes only when a "
                            "new one is sent.",
                body=body, ok=json_body(ref("WebhookData"), "The updated webhook."),
                errors=("400", "413", "422")),
            "delete": webhook_operation(
                "Webhooks_DeleteWebhook", "Delete a webhook", not_found=hook,
                parameters=webhook_params("storeId", "webhookId"),
                description="Deletes the webhook and its delivery log.",
                ok={"description": "Deleted (empty body)."}),
        },
        f"{WEBHOOKS}/{{webhookId}}/deliveries": {"get": webhook_operation(
            "Webhooks_GetWebhookDeliveries", "List a webhook's deliveries", not_found=hook,
            parameters=[*webhook_params("storeId", "webhookId"), query_param(
                "count", "How many of the latest deliveries to return.",
                {"type": "integer", "minimum": 0, "maximum": MAX_DELIVERY_COUNT,
                 "default": DEFAULT_DELIVERY_COUNT})],
            ok=json_body(ref("WebhookDeliveryList"), "Newest first."), errors=("422",))},
        f"{WEBHOOKS}/{{webhookId}}/deliveries/{{deliveryId}}": {"get": webhook_operation(
            "Webhooks_GetWebhookDelivery", "Get a delivery", not_found=delivery,
            parameters=webhook_params("storeId", "webhookId", "deliveryId"),
            ok=json_body(ref("WebhookDeliveryData"), "The delivery."))},
        f"{WEBHOOKS}/{{webhookId}}/deliveries/{{deliveryId}}/request": {"get": webhook_operation(
            "Webhooks_GetWebhookDeliveryRequest", "Get the body a delivery sends",
            not_found=delivery, parameters=webhook_params("storeId", "webhookId", "deliveryId"),
            ok=json_body({**ref("WebhookEvent"), "description": "The exact bytes POSTed."},
                         "The delivery's JSON body."))},
        f"{WEBHOOKS}/{{webhookId}}/deliveries/{{deliveryId}}/redeliver": {"post": webhook_operation(
            "Webhooks_RedeliverWebhookDelivery", "Send a delivery again", not_found=delivery,
            parameters=webhook_params("storeId", "webhookId", "deliveryId"),
            description="Creates a new delivery of the same event (`isRedelivery: true`, "
                        "`originalDeliveryId` = the first delivery), sent shortly after.",
            body=request_body({}, "Ignored; may be empty or `null`.", required=False),
            ok=json_body(ref("WebhookDeliveryId"), "The new delivery's id."),
            errors=("400?", "413"))},
    }


# -- stores, API keys, server ---------------------------------------------------------------
def store_schemas() -> dict:
    from merchants.greenfield import (LEGACY_LIGHTNING_METHOD, LEGACY_PAYMENT_METHOD,
                                      LIGHTNING_METHOD_ID, PAYMENT_METHOD_ID)

    nullable_url = {"type": ["string", "null"], "format": "uri"}
    seconds = {"type": "integer", "minimum": 0}
    return {
        "ApiKeyData": obj({
            "apiKey": {"type": "string", "description": "The key presented (echoed: only its "
                                                        "hash is stored)."},
            "label": {"type": "string", "description": "The name given to the key (for a "
                                                       "key made by a shop plugin: its name)."},
            "permissions": {"type": "array", "items": {
                "type": "string", "pattern": r"^btcpay\.store\.[a-z.]+:[A-Za-z0-9]+$"},
                "description": "The permissions as granted, each scoped to the key's store "
                               "(`btcpay.store.canviewinvoices:<storeId>`)."},
        }, required=True, description="The API key making the request."),
        "StoreData": obj({
            "id": ref("StoreId"),
            "name": {"type": "string"},
            "website": {**nullable_url, "description": "The shop's origin; the only page allowed "
                                                        "to show the checkout in a frame."},
            "supportUrl": nullable_url, "logoUrl": nullable_url, "cssUrl": nullable_url,
            "paymentSoundUrl": nullable_url,
            "brandColor": {"type": ["string", "null"]},
            "applyBrandColorToBackend": {"type": "boolean"},
            "defaultCurrency": {"type": "string", "const": "KRW",
                                "description": "Prices are in won."},
            "additionalTrackedRates": {"type": "array", "items": {"type": "string"}},
            "invoiceExpiration": {**seconds, "description": "Seconds until a new invoice "
                                                            "expires."},
            "refundBOLT11Expiration": {"type": "integer"},
            "displayExpirationTimer": seconds,
            "monitoringExpiration": {**seconds, "description": "Seconds after expiry during "
                                                               "which payments are watched."},
            "speedPolicy": ref("SpeedPolicy"),
            "lightningDescriptionTemplate": {"type": ["string", "null"]},
            "paymentTolerance": {"type": "number", "minimum": 0, "maximum": 100},
            "archived": {"type": "boolean"},
            "anyoneCanCreateInvoice": {"type": "boolean", "const": False},
            "receipt": obj({"enabled": {"type": "boolean"}, "showQR": {"type": "boolean"},
                            "showPayments": {"type": "boolean"}}, required=True),
            "lightningAmountInSatoshi": {"type": "boolean"},
            "lightningPrivateRouteHints": {"type": "boolean"},
            "onChainWithLnInvoiceFallback": {"type": "boolean"},
            "redirectAutomatically": {"type": "boolean"},
            "showRecommendedFee": {"type": "boolean"},
            "recommendedFeeBlockTarget": {"type": "integer"},
            "defaultLang": {"type": "string", "enum": list(LANGUAGES)},
            "htmlTitle": {"type": ["string", "null"]},
            "networkFeeMode": {"type": "string", "enum": ["MultiplePaymentsOnly", "Always",
                                                          "Never"],
                               "description": "Always `Never`: no network fee is added."},
            "payJoinEnabled": {"type": "boolean"},
            "autoDetectLanguage": {"type": "boolean"},
            "showPayInWalletButton": {"type": "boolean"},
            "showStoreHeader": {"type": "boolean"},
            "celebratePayment": {"type": "boolean"},
            "playSoundOnPayment": {"type": "boolean"},
            "lazyPaymentMethods": {"type": "boolean"},
            "defaultPaymentMethod": {"type": "string", "const": PAYMENT_METHOD_ID},
            "paymentMethodCriteria": {"type": "null", "description": "No criteria."},
        }, required=True, description="A store (merchant)."),
        "StoreDataList": {"type": "array", "items": ref("StoreData")},
        "StorePaymentMethod": obj({
            "enabled": {"type": "boolean"},
            "paymentMethodId": enum((PAYMENT_METHOD_ID, LIGHTNING_METHOD_ID),
                                    "`BTC-LN` only while the city's Lightning node is "
                                    "configured."),
            "paymentMethod": enum((LEGACY_PAYMENT_METHOD, LEGACY_LIGHTNING_METHOD),
                                  "BTCPay 1.x's name, kept because the WooCommerce plugin "
                                  "builds its payment gateways from it."),
            "config": {"anyOf": [obj({
                "derivationScheme": {"type": ["string", "null"], "description":
                                     "The store's own account key when it settles in BTC; "
                                     "null for the city treasury's (not the store's to see)."},
                "label": {"type": "string"},
                "accountKeyPath": {"type": ["string", "null"]},
            }, required=True, description="`BTC-CHAIN`."), obj({
                "connectionString": {"type": "null", "description":
                                     "Never shown: the node is the city's."},
                "label": {"type": "string"},
                "disableBOLT11PaymentOption": {"type": "boolean", "const": False},
            }, required=True, description="`BTC-LN`.")],
                "description": "Only with `includeConfig=true`."},
        }, required=("enabled", "paymentMethodId", "paymentMethod"),
            description="A payment method of the store: on-chain bitcoin, or Lightning (not "
                        "enabled for a store paid in BTC to its own wallet)."),
        "StorePaymentMethodList": {"type": "array", "items": ref("StorePaymentMethod")},
        "ServerInfo": obj({
            "version": {"type": "string", "description": "The Greenfield version followed."},
            "onion": {"type": "string", "description": "Empty: no Tor address."},
            "supportedPaymentMethods": {"type": "array", "items": {"type": "string"},
                                        "description": "`BTC-CHAIN`; and `BTC-LN` while "
                                                       "the Lightning node is configured."},
            "fullySynched": {"type": "boolean", "description":
                             "True while the chain watcher is up and has processed every "
                             "block up to the backend's tip."},
            "syncStatus": {"type": "array", "items": obj({
                "paymentMethodId": {"type": "string"},
                "nodeInformation": nullable(obj({
                    "headers": {"type": "integer"}, "blocks": {"type": "integer"},
                    "verificationProgress": {"type": "number", "minimum": 0, "maximum": 1},
                }, required=True)),
                "chainHeight": {"type": "integer"},
                "syncHeight": {"type": ["integer", "null"]},
                "available": {"type": "boolean"},
            }, required=True)},
        }, required=True, description="About this server."),
        "Health": obj({"synchronized": {"type": "boolean", "description":
                                        "The same as `fullySynched` in the server info."}},
                      required=True, description="Whether invoices will be seen paid now."),
    }


STORES = f"{API}/stores"


def store_paths() -> dict:
    from merchants.service import CAN_MODIFY_STORE, CAN_VIEW_STORE

    store_missing = problem("No such store for this key (another store's id is 404 too).",
                            "store-not-found")

    def store_op(operation_id, summary, **kwargs):
        op = operation(operation_id, summary, permission=CAN_VIEW_STORE, tag="Stores", **kwargs)
        op["responses"] = dict(sorted({**op["responses"], "404": store_missing}.items()))
        return op

    flag = {"type": "boolean"}
    return {
        STORES: {"get": operation(
            "Stores_GetStores", "The stores the key can see", permission=CAN_VIEW_STORE,
            tag="Stores", description="A key belongs to one store: a list of that store.",
            ok=json_body(ref("StoreDataList"), "The key's store."))},
        f"{STORES}/{{storeId}}": {"get": store_op(
            "Stores_GetStore", "Get a store", parameters=[ref("StoreId", "parameters")],
            ok=json_body(ref("StoreData"), "The store."))},
        f"{STORES}/{{storeId}}/payment-methods": {"get": store_op(
            "StorePaymentMethods_GetStorePaymentMethods", "The store's payment methods",
            parameters=[ref("StoreId", "parameters"),
                        query_param("onlyEnabled", "Only enabled (`true`) or disabled "
                                    "(`false`) methods.", flag),
                        query_param("includeConfig", "Include each method's config; needs "
                                    f"`{CAN_MODIFY_STORE}` too (else 403).", flag)],
            ok=json_body(ref("StorePaymentMethodList"), "On-chain bitcoin."), errors=("422",))},
    }


def any_key_operation(operation_id: str, summary: str, *, ok: dict, tag: str,
                      description: str) -> dict:
    """An operation any live API key may call, whatever its permissions."""
    return {"operationId": operation_id, "summary": summary, "tags": [tag],
            "description": description + "\n\nAny valid API key.",
            "security": [{"API_Key": []}],
            "responses": {"200": ok, "401": ref("Unauthenticated", "responses")}}


def key_and_server_paths() -> dict:
    return {
        f"{API}/api-keys/current": {
            "get": any_key_operation(
                "ApiKeys_GetCurrentApiKey", "The key making the request", tag="API keys",
                description="Its label and its permissions, scoped to its store.",
                ok=json_body(ref("ApiKeyData"), "The key.")),
            "delete": any_key_operation(
                "ApiKeys_DeleteCurrentApiKey", "Revoke the key making the request",
                tag="API keys", description="The key stops working at once.",
                ok={"description": "Revoked (empty body)."}),
        },
        f"{API}/server/info": {"get": any_key_operation(
            "ServerInfo_GetServerInfo", "About this server", tag="Server",
            description="Version, payment methods, and whether the chain watcher is in sync.",
            ok=json_body(ref("ServerInfo"), "The server's information."))},
        f"{API}/health": {"get": {
            "operationId": "Health_GetHealth", "summary": "Is the server in sync",
            "tags": ["Server"], "security": [],
            "description": "No authentication.",
            "responses": {"200": json_body(ref("Health"), "Whether the watcher is in sync.")}}},
    }


def webhook_short_paths() -> dict:
    """The per-webhook routes again without `/stores/{storeId}` (the key's own store), the
    form Greenfield's reference documents."""
    store_param = ref("StoreId", "parameters")
    paths = {}
    for path, methods in webhook_paths().items():
        if not path.startswith(f"{WEBHOOKS}/{{webhookId}}"):
            continue
        short = path.replace(WEBHOOKS, f"{API}/webhooks")
        paths[short] = {m: {**op, "operationId": op["operationId"] + "ById",
                            "parameters": [p for p in op["parameters"] if p != store_param]}
                        for m, op in methods.items()}
    return paths


# -- refunds: pull payments ---------------------------------------------------------------
def pull_payment_schemas() -> dict:
    from settlement.pull_payments import VARIANTS

    nullable_text = {"type": ["string", "null"]}
    amount = {"type": ["string", "number"], "description": "A decimal string (preferred) or "
              "number. KRW in whole won (round: KRW has no minor unit), BTC with at most 8 "
              "decimals, SATS in whole satoshis.", "examples": ["15000"]}
    return {
        "PullPaymentId": {"type": "string", "description": "A pull payment (refund) identifier."},
        "PullPaymentData": obj({
            "id": ref("PullPaymentId"),
            "name": {"type": "string"},
            "description": {"type": "string"},
            "currency": enum(CURRENCIES, "The currency of `amount`."),
            "amount": decimal_string("The refund in `currency`.", "15000"),
            "period": {"type": "null"},
            "BOLT11Expiration": {"type": "string", "description": "No Lightning refunds: \"0\"."},
            "autoApproveClaims": {"type": "boolean", "const": False,
                                  "description": "The city treasury approves every refund."},
            "archived": {"type": "boolean"},
            "viewLink": {"type": "string", "format": "uri", "description":
                         "The claim page: give it to the payer, who enters a bitcoin address "
                         "there. In the answer that creates the refund it ends with the "
                         "claim's key (`#key=…`; anyone with the whole link can give the "
                         "address, so share it only with the payer). The gateway keeps only "
                         "the key's hash: later answers give the page without the key."},
        }, required=True, description="A refund to a payer (one refund claim)."),
        "PullPaymentDataList": {"type": "array", "items": ref("PullPaymentData")},
        "CreatePullPaymentRequest": obj({
            "name": nullable_text, "description": nullable_text,
            "amount": amount,
            "currency": {"type": ["string", "null"], "description":
                         f"One of {', '.join(CURRENCIES)}; another currency is 422 (convert "
                         "to KRW and round to whole won)."},
            "autoApproveClaims": {"type": ["boolean", "null"], "description":
                                  "Only false or null: the treasury approves."},
            "paymentMethods": {"type": ["array", "null"], "items": {"type": "string"},
                               "description": "`BTC` or `BTC-CHAIN` (on-chain) only."},
            "payoutMethods": {"type": ["array", "null"], "items": {"type": "string"}},
            "period": {"description": "Accepted, ignored."},
            "BOLT11Expiration": {"description": "Accepted, ignored."},
            "startsAt": {"description": "Accepted, ignored."},
            "expiresAt": {"description": "Accepted, ignored."},
        }, required=("amount",), closed=False, description=(
            "A refund the merchant pays for from its won balance, to a payer who gives an "
            "address on the claim page (`viewLink`).")),
        "RefundInvoiceRequest": obj({
            "name": nullable_text, "description": nullable_text,
            "paymentMethod": nullable_text,
            "payoutMethods": {"type": ["array", "null"], "items": {"type": "string"}},
            "refundVariant": {"type": "string", "enum": list(VARIANTS), "description": (
                "`RateThen`: the bitcoin the invoice cost, at its locked rate. `CurrentRate` "
                "and `Fiat`: the invoice's won price in bitcoin at the current rate (locked "
                "when the refund opens). `OverpaidAmount`: what the payer paid too much (no "
                "cost to the merchant). `Custom`: `customAmount` in `customCurrency`.")},
            "subtractPercentage": {"type": ["string", "number", "null"],
                                   "description": "Percent kept back (0 to under 100)."},
            "customAmount": {**amount, "type": ["string", "number", "null"]},
            "customCurrency": nullable_text,
        }, required=("refundVariant",), closed=False,
            description="Refund an invoice's payer. Only a Settled invoice that was paid "
                        "(except `OverpaidAmount`); refunds of one invoice stay within its "
                        "price."),
        "PayoutData": obj({
            "id": {"type": "string", "description": "The refund claim's id."},
            "revision": {"type": "integer"},
            "pullPaymentId": ref("PullPaymentId"),
            "date": {"type": "string", "format": "date-time"},
            "destination": {"type": "string", "description": "The payer's address."},
            "originalCurrency": {"type": "string"},
            "originalAmount": {"type": "string"},
            "payoutCurrency": {"type": "string", "const": "BTC"},
            "payoutAmount": decimal_string("Bitcoin sent to the payer.", "0.0001"),
            "payoutMethodId": {"type": "string", "const": "BTC-CHAIN"},
            "state": enum(("AwaitingApproval", "AwaitingPayment", "Completed", "Cancelled"),
                          "AwaitingApproval until the treasury approves, AwaitingPayment "
                          "until it records the transaction, Completed once sent."),
            "paymentProof": nullable(obj({"proofType": {"type": "string"},
                                          "transactionId": {"type": "string"}}, required=True)),
            "metadata": {"type": "object"},
        }, required=True, description="The payer's claim once it has an address."),
        "PayoutDataList": {"type": "array", "items": ref("PayoutData")},
    }


def pull_payment_paths() -> dict:
    from merchants.service import CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, CAN_VIEW_PULL_PAYMENTS

    pull_param = path_param("pullPaymentId", "The pull payment (of the key's store).",
                            ref("PullPaymentId"))
    missing = problem("No such pull payment for this key's store.", "pullpayment-not-found")
    store_missing = problem("Another store's id.", "store-not-found")

    def op(operation_id, summary, permission, *, not_found=None, **kwargs):
        built = operation(operation_id, summary, permission=permission, tag="Refunds", **kwargs)
        if not_found:
            built["responses"] = dict(sorted({**built["responses"], "404": not_found}.items()))
        return built

    refund = op("Invoices_Refund", "Refund an invoice's payer",
                CAN_CREATE_NONAPPROVED_PULL_PAYMENTS,
                description="Opens a refund claim for the invoice's payer; the response's "
                            "`viewLink` is the page where they enter their address.",
                body=request_body(ref("RefundInvoiceRequest"), "The refund."),
                ok=json_body(ref("PullPaymentData"), "The refund."),
                errors=("400", "404", "413", "422", "503"))
    return {
        f"{STORES}/{{storeId}}/pull-payments": {
            "post": op("PullPayments_CreatePullPayment", "Open a refund to a payer",
                       CAN_CREATE_NONAPPROVED_PULL_PAYMENTS, not_found=store_missing,
                       parameters=[ref("StoreId", "parameters")],
                       description="What a shop's refund button calls (no invoice named): "
                                   "the merchant's won pays for it at the current rate.",
                       body=request_body(ref("CreatePullPaymentRequest"), "The refund."),
                       ok=json_body(ref("PullPaymentData"), "The refund."),
                       errors=("400", "413", "422", "503")),
            "get": op("PullPayments_GetPullPayments", "The store's refunds",
                      CAN_VIEW_PULL_PAYMENTS, not_found=store_missing,
                      parameters=[ref("StoreId", "parameters"), query_param(
                          "includeArchived", "Include archived ones.", {"type": "boolean"})],
                      ok=json_body(ref("PullPaymentDataList"), "Newest first.")),
        },
        f"{API}/pull-payments/{{pullPaymentId}}": {"get": op(
            "PullPayments_GetPullPayment", "Get a refund", CAN_VIEW_PULL_PAYMENTS,
            not_found=missing, parameters=[pull_param],
            ok=json_body(ref("PullPaymentData"), "The refund."))},
        f"{API}/pull-payments/{{pullPaymentId}}/payouts": {"get": op(
            "PullPayments_GetPayouts", "A refund's progress", CAN_VIEW_PULL_PAYMENTS,
            not_found=missing, parameters=[pull_param],
            ok=json_body(ref("PayoutDataList"), "Empty until the payer gave an address."))},
        **per_invoice("/refund", {"post": refund}),
    }


# Each group returns {path: {method: operation}}; add a function here for new routes.
ROUTE_GROUPS: list[Callable[[], dict]] = [
    store_invoice_paths,
    invoice_paths,
    invoice_action_paths,
    webhook_paths,
    webhook_short_paths,
    store_paths,
    pull_payment_paths,
    key_and_server_paths,
    document_paths,
]


def build_paths() -> dict:
    paths: dict = {}
    for group in ROUTE_GROUPS:
        for path, methods in group().items():
            clash = set(methods) & set(paths.get(path, {}))
            if clash:
                raise ValueError(f"{path} {sorted(clash)} documented twice")
            paths.setdefault(path, {}).update(methods)
    return paths


def build_document(*, max_body_bytes: int | None = None, max_invoice_krw: int | None = None) -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Busan Pay merchant API",
            "version": "v1",
            "description": (
                "Bitcoin invoices for Busan's merchants, compatible with a subset of BTCPay "
                "Server's Greenfield API so existing clients and shop plugins work unchanged "
                "(a merchant is a *store*).\n\n"
                "* Authenticate with `Authorization: token <apiKey>`.\n"
                "* Money is sent and returned as decimal strings (`\"15000\"`, `\"0.0001\"`); "
                "times are unix seconds.\n"
                "* Invalid fields are 422 with `[{\"path\", \"message\"}]`; other errors are "
                "`{\"code\", \"message\"}`.\n"
                "* Paths work with or without a trailing slash; invoice routes exist with and "
                "without `/stores/{storeId}`."),
            "license": {"name": "AGPL-3.0-or-later",
                        "identifier": "AGPL-3.0-or-later"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "Invoices", "description": "Create, read and manage invoices."},
                 {"name": "Webhooks", "description": "Signed event notifications to a URL."},
                 {"name": "Stores", "description": "The key's store and its payment methods."},
                 {"name": "API keys", "description": "The key itself; `/api-keys/authorize` "
                  "(a web page, not an API call) lets a shop ask the owner for one."},
                 {"name": "Server", "description": "Version and sync state."},
                 {"name": "Refunds", "description": "Refunds to payers (Greenfield pull "
                  "payments), approved by the city treasury."},
                 {"name": "Meta", "description": "About the API itself."}],
        "security": [{"API_Key": []}],
        "paths": build_paths(),
        "components": {
            "securitySchemes": security_schemes(),
            "schemas": schemas(max_invoice_krw),
            "parameters": parameters(),
            "responses": responses(max_body_bytes),
        },
    }
