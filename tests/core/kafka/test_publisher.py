"""The publisher retires an idempotent producer that can never send again (unit test: the
aiokafka producer is replaced by a stand-in; the fault suite shows the same on a real
cluster, where a controller failover makes a producer lose its sequence). And the in-memory
twin keeps what it is given, in order, and fails as the real one does when told to."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from services.core.errors import Unavailable
from services.core.kafka import publisher as module
from services.core.kafka.config import KafkaProfile
from services.core.kafka.publisher import (
    InMemoryPublisher,
    KafkaPublisher,
    PublishedRecord,
    Publisher,
)


class StandInProducer:
    made: list[StandInProducer] = []
    fail_with: list[Exception] = []

    def __init__(self, **kwargs: Any) -> None:
        self.stopped = False
        self.sent: list[bytes] = []
        StandInProducer.made.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if StandInProducer.fail_with:
            raise StandInProducer.fail_with.pop(0)
        self.sent.append(value)


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> KafkaPublisher:
    StandInProducer.made, StandInProducer.fail_with = [], []
    monkeypatch.setattr(module, "AIOKafkaProducer", StandInProducer)
    return KafkaPublisher(KafkaProfile("kafka.example:9093", embedded=False))


async def test_a_producer_that_lost_its_sequence_is_replaced(publisher: KafkaPublisher) -> None:
    await publisher.publish("t", b"k", b"first", [])
    StandInProducer.fail_with = [OutOfOrderSequenceNumber()]
    with pytest.raises(Unavailable, match="OutOfOrderSequenceNumber"):
        await publisher.publish("t", b"k", b"second", [])
    await publisher.publish("t", b"k", b"second again", [])
    first, second = StandInProducer.made
    assert first.sent == [b"first"] and second.sent == [b"second again"]
    await publisher.aclose()
    assert first.stopped and second.stopped


async def test_a_passing_error_keeps_the_producer(publisher: KafkaPublisher) -> None:
    StandInProducer.fail_with = [KafkaTimeoutError()]
    with pytest.raises(Unavailable):
        await publisher.publish("t", b"k", b"v", [])
    await publisher.publish("t", b"k", b"v", [])
    assert len(StandInProducer.made) == 1
    await publisher.aclose()


# -- the in-memory twin ---------------------------------------------------------------------------


async def test_the_twin_keeps_each_record_in_order() -> None:
    twin = InMemoryPublisher()
    publisher: Publisher = twin
    headers = [("content-type", b"application/json")]
    await publisher.publish("a", b"k1", b"one", headers)
    headers.append(("later", b"x"))  # the caller's list is its own
    await publisher.publish("b", b"k2", b"two", [])
    assert twin.records == [
        PublishedRecord("a", b"k1", b"one", (("content-type", b"application/json"),)),
        PublishedRecord("b", b"k2", b"two", ()),
    ]


async def test_the_twin_fails_the_next_publishes_as_kafka_does() -> None:
    twin = InMemoryPublisher()
    twin.fail_next(2)
    for value in (b"one", b"two"):
        with pytest.raises(Unavailable, match="publishing to t failed"):
            await twin.publish("t", b"k", value, [])
    await twin.publish("t", b"k", b"three", [])
    assert [r.value for r in twin.records] == [b"three"]
    twin.fail_next()
    twin.fail_next(0)  # the outage ends before any publish
    await twin.publish("t", b"k", b"four", [])
    assert [r.value for r in twin.records] == [b"three", b"four"]
    with pytest.raises(ValueError, match="count"):
        twin.fail_next(-1)
