"""Webhook verification beyond the shared vectors: key handling, header case, the clock,
and telling an encrypted body from a clear one."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook

from isa_broker_client import (
    WebhookKeyInvalid,
    WebhookSignatureInvalid,
    WebhookTimestampInvalid,
    WebhookVerifier,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = 1_800_000_000
BODY = b'{"id": "e1", "data": {}}'


def signed(body: bytes = BODY, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    when = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": Webhook(SECRET).sign(msg_id, when, body.decode()),
    }


def test_headers_in_any_case_and_the_injected_clock() -> None:
    verified = WebhookVerifier(SECRET, clock=lambda: NOW + 299).verify(BODY, signed())
    assert (verified.webhook_id, verified.timestamp) == ("msg_1", NOW)
    assert verified.event() == {"id": "e1", "data": {}}
    with pytest.raises(WebhookTimestampInvalid):
        WebhookVerifier(SECRET, clock=lambda: NOW + 301).verify(BODY, signed())
    with pytest.raises(WebhookTimestampInvalid):
        WebhookVerifier(SECRET, tolerance=10, clock=lambda: NOW - 11).verify(BODY, signed())


@pytest.mark.parametrize("stamp", ["", "1.8e9", "-5", "１８００"])
def test_a_timestamp_that_is_not_unix_seconds(stamp: str) -> None:
    headers = {**signed(), "Webhook-Timestamp": stamp}
    with pytest.raises(WebhookTimestampInvalid):
        WebhookVerifier(SECRET, clock=lambda: NOW).verify(BODY, headers)


@pytest.mark.parametrize("missing", ["Webhook-Id", "Webhook-Signature"])
def test_missing_headers(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(WebhookSignatureInvalid):
        WebhookVerifier(SECRET, clock=lambda: NOW).verify(BODY, headers)


def test_a_body_that_is_not_utf8_fails_v1_without_crashing() -> None:
    headers = signed()
    with pytest.raises(WebhookSignatureInvalid):
        WebhookVerifier(SECRET, clock=lambda: NOW).verify(b"\xff\xfe", headers)


def test_an_encrypted_body_is_recognised_by_its_content_type() -> None:
    body = b"eyJhbGciOi.a.b.c.d"
    headers = {**signed(body), "Content-Type": "application/jose"}
    verified = WebhookVerifier(SECRET, clock=lambda: NOW).verify(body, headers)
    assert verified.encrypted
    with pytest.raises(ValueError, match="encrypted"):
        verified.event()


def test_v1a_with_a_public_key() -> None:
    private = Ed25519PrivateKey.generate()
    public = "whpk_" + base64.b64encode(private.public_key().public_bytes_raw()).decode()
    signature = private.sign(f"msg_1.{NOW}.".encode() + BODY)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1a," + base64.b64encode(signature).decode(),
    }
    assert WebhookVerifier([SECRET, public], clock=lambda: NOW).verify(BODY, headers)


@pytest.mark.parametrize(
    "key",
    [
        "whsk_" + base64.b64encode(b"s" * 32).decode(),  # the signing half: refused
        "whpk_" + base64.b64encode(b"short").decode(),
        "whsec_not base64!",
        "whsec_",
    ],
    ids=["whsk", "whpk-short", "whsec-not-base64", "whsec-empty"],
)
def test_malformed_keys_are_refused_without_naming_them(key: str) -> None:
    with pytest.raises(WebhookKeyInvalid) as raised:
        WebhookVerifier(key)
    assert key.split("_", 1)[1] not in str(raised.value) or not key.split("_", 1)[1]


def test_no_keys_at_all() -> None:
    with pytest.raises(WebhookKeyInvalid):
        WebhookVerifier([])
