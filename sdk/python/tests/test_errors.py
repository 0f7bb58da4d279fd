"""Problem answers beyond the shared vectors: unknown codes, answers that are not problem
documents, Retry-After as a date, and the tree's builtin bases."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from isa_broker_client import (
    BadRequest,
    Conflict,
    DutyCleared,
    IsaBrokerClientError,
    NotFound,
    ProblemError,
    RequestTooLarge,
    ServerError,
    Unavailable,
    ValidationFailed,
)
from isa_broker_client.errors import error_from_response, retry_after_seconds


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (409, "duty_cleared", DutyCleared),
        (409, "notice_cancelled", Conflict),
        (409, "a_code_added_later", Conflict),
        (404, "unknown_message_type", NotFound),
        (422, "webhook_url_refused", ValidationFailed),
        (422, "encryption_key_required", ValidationFailed),
        (431, "header_too_large", RequestTooLarge),
        (400, "json_too_deep", BadRequest),
        (503, "kafka_access_control_failed", Unavailable),
        (502, "bad_gateway", ServerError),
        (418, "teapot", ProblemError),
    ],
)
def test_class_by_code_then_status(status: int, code: str, cls: type[ProblemError]) -> None:
    error = error_from_response(httpx.Response(status, json={"code": code, "status": status}))
    assert type(error) is cls
    assert isinstance(error, IsaBrokerClientError)


def test_an_answer_that_is_not_a_problem_document() -> None:
    error = error_from_response(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert isinstance(error, ServerError)
    assert (error.code, error.title, error.detail) == ("http_502", "Bad Gateway", "")
    assert error.problem == {}


def test_invalid_encryption_key_names_its_field() -> None:
    body = {"code": "invalid_encryption_key", "detail": "jwk.crv must be ...", "field": "jwk"}
    error = error_from_response(httpx.Response(422, json=body))
    assert isinstance(error, ValidationFailed)
    assert error.fields == ("jwk",)
    assert isinstance(error, ValueError)


def test_retry_after_as_seconds_or_a_date() -> None:
    now = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("5") == 5
    assert retry_after_seconds("Wed, 25 Nov 2026 10:00:30 GMT", now) == 30
    assert retry_after_seconds("Wed, 25 Nov 2026 09:00:00 GMT", now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
