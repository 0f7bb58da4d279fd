"""The router opens a shared topic's record before reading it; a record that does not open
is logged by its id only and skipped (the reconciler publishes the stored message again)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from services.core.kafka.cloudevents import to_record
from services.core.kafka.publisher import InMemoryPublisher
from services.core.runtime import Runtime
from services.router.router import Router
from tests.factories import release_notice

MESSAGE_ID = "5d0c2f3e-9a41-4f65-8d7e-0c1d2e3f4a5b"


def _record(runtime: Runtime, topic: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    accepted = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
    _, value, headers = to_record(
        MESSAGE_ID, "hmp-northgate", "release-notice", accepted, "psn_x", release_notice()
    )
    return runtime.topic_encryption.seal(topic, value, headers)


def _flip_last(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 1])


@pytest.mark.parametrize("fault", ["clear", "tampered", "other-topic", "unknown-kek", "no-dek"])
async def test_a_record_that_does_not_open_is_skipped_by_id(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    publisher = InMemoryPublisher()
    router = Router(runtime, publisher)
    topic = runtime.kafka.topic("release-notice")
    value, headers = _record(runtime, topic)
    if fault == "clear":
        _, value, headers = to_record(
            MESSAGE_ID,
            "hmp-northgate",
            "release-notice",
            dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC),
            "psn_x",
            release_notice(),
        )
    elif fault == "tampered":
        value = _flip_last(value)
    elif fault == "other-topic":
        topic = runtime.kafka.topic("licence-recall")
    elif fault == "unknown-kek":
        headers = [(k, b"kek-00" if k == "isa_kek" else v) for k, v in headers]
    elif fault == "no-dek":
        headers = [(k, v) for k, v in headers if k != "isa_dek"]
    with caplog.at_level(logging.WARNING, logger="isa_broker.router"):
        await router.handle(headers, value, topic)
    [line] = [r.getMessage() for r in caplog.records if r.name == "isa_broker.router"]
    assert line.startswith(f"skipping record ce_id={MESSAGE_ID} on {topic}: ")
    for personal in ("Alexis", "Testperson", "A1234BC", "24/123456X", "1990-01-01"):
        assert personal not in line
    assert publisher.records == [], "nothing is published while handling a record"


async def test_a_record_that_opens_is_read(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = InMemoryPublisher()
    router = Router(runtime, publisher)
    topic = runtime.kafka.topic("release-notice")
    value, headers = _record(runtime, topic)
    with caplog.at_level(logging.WARNING, logger="isa_broker.router"):
        await router.handle(headers, value, topic)
    # decrypted and parsed: it got as far as the store, which does not know the message
    assert [r.getMessage() for r in caplog.records if r.name == "isa_broker.router"] == [
        f"record for unknown message_id={MESSAGE_ID} skipped"
    ]
    assert publisher.records == [], "nothing is published while handling a record"
