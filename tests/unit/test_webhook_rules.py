"""Pure webhook rules: request parsing, the event body, signatures, retry classification."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from payments.invoice_request import InvalidRequest
from webhooks.rules import EVENT_TYPES, check_url, event_body, parse_webhook, subscribed
from webhooks.sender import (MAX_ATTEMPTS, RETRY_DELAYS, classify, retries_left, retry_delay,
                             sign, signature_matches)


def paths(body) -> set[str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_webhook(body)
    return {e.path for e in caught.value.errors}


def test_a_minimal_body_subscribes_to_everything_enabled_with_automatic_redelivery():
    spec = parse_webhook({"url": " https://shop.example/hook "})
    assert spec.url == "https://shop.example/hook"
    assert spec.enabled and spec.automatic_redelivery and spec.everything
    assert spec.events == () and spec.secret is None


def test_specific_events_are_kept_once_in_order_and_an_empty_secret_means_generate():
    spec = parse_webhook({"url": "http://shop.example:9/x", "enabled": False, "secret": "",
                          "automaticRedelivery": False, "id": "ignored",
                          "authorizedEvents": {"everything": False, "specificEvents": [
                              "InvoiceSettled", "InvoiceCreated", "InvoiceSettled"]}})
    assert spec.events == ("InvoiceSettled", "InvoiceCreated")
    assert not spec.everything and not spec.enabled and not spec.automatic_redelivery
    assert spec.secret is None


def test_every_problem_is_reported_with_its_path_at_once():
    assert paths({"url": "ftp://x", "enabled": "yes", "colour": 1, "secret": 5,
                  "authorizedEvents": {"everything": 1, "specificEvents": ["InvoiceSettled",
                                                                           "PayoutCreated"],
                                       "extra": True}}) == {
        "url", "enabled", "colour", "secret", "authorizedEvents.everything",
        "authorizedEvents.specificEvents[1]", "authorizedEvents.extra"}
    assert paths([]) == {""}
    assert paths({}) == {"url"}
    assert paths({"url": "https://x.example", "authorizedEvents": []}) == {"authorizedEvents"}
    assert paths({"url": "https://x.example",
                  "authorizedEvents": {"specificEvents": "InvoiceSettled"}}) == {
        "authorizedEvents.specificEvents"}
    assert paths({"url": "https://x.example", "secret": "s" * 201}) == {"secret"}


@pytest.mark.parametrize("url", ["", "   ", None, 7, "shop.example/hook", "/hook", "mailto:a@b",
                                 "javascript:alert(1)", "https://", "http://exa mple.com/",
                                 "http://host:99999/", "https://x.example/" + "a" * 2000,
                                 "http://x.example/\nHost: evil"])
def test_urls_that_cannot_be_posted_to_are_refused(url):
    assert check_url(url) is not None


@pytest.mark.parametrize("url", ["https://shop.example/btcpay?key=1", "http://203.0.114.1:8080/h",
                                 "HTTPS://SHOP.EXAMPLE", "http://[2001:4860::1]:8000/",
                                 "http://u:p@h.example/"])
def test_absolute_http_and_https_urls_are_accepted(url):
    assert check_url(url) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/h", "http://[::1]:8000/",
                                 "http://localhost:5000/", "http://2130706433/"])
def test_loopback_urls_are_accepted_only_when_private_addresses_are_allowed(url):
    assert check_url(url, allow_private=True) is None
    assert check_url(url).startswith("must point at a public address: loopback")


def test_subscription_is_everything_or_the_listed_events():
    assert subscribed(True, (), "InvoiceExpired")
    assert subscribed(False, ("InvoiceExpired",), "InvoiceExpired")
    assert not subscribed(False, ("InvoiceSettled",), "InvoiceExpired")
    assert len(EVENT_TYPES) == 7


def test_the_ledgers_own_outbox_event_is_never_sent_to_a_webhook():
    assert not subscribed(True, (), "BusanPayMoneyFacts")
    assert not subscribed(False, ("BusanPayMoneyFacts",), "BusanPayMoneyFacts")


def test_the_event_body_puts_delivery_fields_first_and_keeps_the_payload_text_exactly():
    payload = '{"type": "InvoiceSettled", "timestamp": 1795316400, "storeId": "S", ' \
              '"invoiceId": "I", "metadata": {"price": 1.10, "name": "\\ud574\\uc6b4\\ub300"}, ' \
              '"manuallyMarked": true}'
    body = event_body(payload, delivery_id="D2", webhook_id="W", original_delivery_id="D1",
                      is_redelivery=True)
    data = json.loads(body)
    assert list(data)[:6] == ["deliveryId", "webhookId", "originalDeliveryId", "isRedelivery",
                              "type", "timestamp"]
    assert data["deliveryId"] == "D2" and data["originalDeliveryId"] == "D1"
    assert data["isRedelivery"] is True and data["manuallyMarked"] is True
    assert '"price": 1.10' in body  # not re-serialised through a float
    assert json.loads(event_body("{}", delivery_id="D", webhook_id="W", original_delivery_id="D",
                                 is_redelivery=False)) == {
        "deliveryId": "D", "webhookId": "W", "originalDeliveryId": "D", "isRedelivery": False}
    with pytest.raises(ValueError):
        event_body("[]", delivery_id="D", webhook_id="W", original_delivery_id="D",
                   is_redelivery=False)


def test_the_signature_is_hmac_sha256_of_the_raw_body_with_the_utf8_secret():
    body = b'{"deliveryId":"x"}'
    secret = "s\u00e9cret"
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) == "sha256=" + expected
    assert signature_matches(secret, body, "sha256=" + expected)
    assert not signature_matches("other", body, "sha256=" + expected)
    assert not signature_matches(secret, body + b" ", "sha256=" + expected)
    assert not signature_matches(secret, body, None)


@pytest.mark.parametrize("code,status,retryable", [
    (200, "HttpSuccess", False), (204, "HttpSuccess", False), (299, "HttpSuccess", False),
    (500, "HttpError", True), (502, "HttpError", True), (503, "HttpError", True),
    (408, "HttpError", True), (429, "HttpError", True),
    (400, "HttpError", False), (401, "HttpError", False), (404, "HttpError", False),
    (410, "HttpError", False), (301, "HttpError", False), (302, "HttpError", False),
])
def test_answers_are_classified_as_success_retry_or_final(code, status, retryable):
    result = classify(code)
    assert (result.status, result.http_code, result.retryable) == (status, code, retryable)
    assert (result.error is None) == (status == "HttpSuccess")


def test_retries_come_after_10_s_1_min_then_every_10_min_nine_attempts_in_all():
    assert [retry_delay(n) for n in range(1, 4)] == [timedelta(seconds=10), timedelta(minutes=1),
                                                     timedelta(minutes=10)]
    assert RETRY_DELAYS[2:] == (600,) * 6 and MAX_ATTEMPTS == 9
    assert retries_left(8, True) and not retries_left(9, True)
    assert not retries_left(1, False)


def test_a_retry_after_header_can_lengthen_the_wait_but_not_beyond_an_hour():
    assert retry_delay(1, retry_after=120) == timedelta(seconds=120)
    assert retry_delay(3, retry_after=5) == timedelta(minutes=10)
    assert retry_delay(1, retry_after=10**6) == timedelta(hours=1)
    assert classify(429, retry_after=30).retry_after == 30
    assert classify(404, retry_after=30).retry_after is None
