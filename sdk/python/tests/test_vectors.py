"""Every case of the shared test vectors: webhook signatures, sealed deliveries and problem
answers, as the broker's own code produced them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from vectors import cases, load_vectors

from isa_broker_client import (
    BrokerKeys,
    DeliveryDecryptError,
    ProblemError,
    Recipient,
    WebhookVerificationError,
    WebhookVerifier,
)
from isa_broker_client.errors import error_from_response, problem_class


@pytest.mark.parametrize("case", cases("webhooks.json"))
def test_webhook_vector(case: dict[str, Any]) -> None:
    verifier = WebhookVerifier(case["keys"], tolerance=case["tolerance"], clock=lambda: case["now"])
    body = case["body"].encode("utf-8")
    if case["valid"]:
        verified = verifier.verify(body, case["headers"])
        assert verified.webhook_id == case["headers"]["webhook-id"]
        assert verified.timestamp == int(case["headers"]["webhook-timestamp"])
        assert verified.body == body
        assert not verified.encrypted
        assert verified.event()["id"]
    else:
        with pytest.raises(WebhookVerificationError) as raised:
            verifier.verify(body, case["headers"])
        assert raised.value.kind == case["error"]


RECORDS = load_vectors("records.json")


@pytest.mark.parametrize("case", cases("records.json"))
def test_record_vector(case: dict[str, Any]) -> None:
    recipient = Recipient(
        RECORDS["recipient"],
        RECORDS["recipient_private_jwks"]["keys"],
        BrokerKeys(RECORDS["broker_delivery_signing_jwks"]),
    )
    token = case["token"].encode("ascii")
    context = case["context"]

    def open_() -> Any:
        if case["kind"] == "webhook":  # the transport names the delivery only (webhook-id)
            return recipient.open_webhook(token, context["delivery_id"])
        headers = [
            ("content-type", b"application/jose"),
            ("isa_message_id", context["message_id"].encode()),
            ("isa_delivery_id", context["delivery_id"].encode()),
        ]
        return recipient.open_record(token, headers)

    if case["valid"]:
        opened = open_()
        assert opened.event == case["event"]
        assert opened.binding.message_id == context["message_id"]
        assert opened.binding.delivery_id == context["delivery_id"]
        assert opened.binding.recipient == RECORDS["recipient"]
        assert opened.signed_by in {
            k["kid"] for k in RECORDS["broker_delivery_signing_jwks"]["keys"]
        }
    else:
        with pytest.raises(DeliveryDecryptError) as raised:
            open_()
        assert raised.value.kind == case["error"]


@pytest.mark.parametrize("case", cases("records.json"))
async def test_record_vector_async(case: dict[str, Any]) -> None:
    """The async twin makes the same decisions."""
    recipient = Recipient(
        RECORDS["recipient"],
        RECORDS["recipient_private_jwks"]["keys"],
        RECORDS["broker_delivery_signing_jwks"],
    )
    context = case["context"]
    try:
        opened = await recipient.aopen(
            case["token"], message_id=context["message_id"], delivery_id=context["delivery_id"]
        )
    except DeliveryDecryptError as e:
        assert not case["valid"]
        assert e.kind == case["error"]
    else:
        assert case["valid"]
        assert opened.event == case["event"]


@pytest.mark.parametrize("case", cases("problems.json"))
def test_problem_vector(case: dict[str, Any]) -> None:
    response = httpx.Response(case["status"], headers=case["headers"], json=case["body"])
    error = error_from_response(response)
    expect = case["expect"]
    assert isinstance(error, ProblemError)
    assert isinstance(error, problem_class(expect["status"], expect["code"]))
    assert {
        "code": error.code,
        "status": error.status,
        "title": error.title,
        "detail": error.detail,
        "retry_after": error.retry_after,
        "fields": list(error.fields),
        "clause": error.clause,
    } == expect
    assert error.problem == case["body"]
