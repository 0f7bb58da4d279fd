"""The ``Publisher`` seam, its aiokafka implementation and an in-memory twin.

:class:`KafkaPublisher` publishes to Kafka and turns every ``KafkaError`` into
:class:`~services.core.errors.Unavailable`. :class:`InMemoryPublisher` keeps each record it
is asked to publish, in order, and can be told to fail the next publishes with the same
``Unavailable`` (as httpx ships ``MockTransport`` beside its real transports), for tests
that run the router, the dispatcher or the outbox relay without Kafka.

An idempotent producer (Apache Kafka) that loses its sequence (``OutOfOrderSequenceNumber``
after a broker or controller failover, a fenced or unknown producer id) is dead for good in
aiokafka: its sender task has ended and every later send fails the same way. Such a
producer is retired at once and the next publish starts a new one, with a new producer id;
the outbox relay publishes what failed again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from ..errors import Unavailable
from .config import KafkaProfile

log = logging.getLogger("isa_broker.kafka.publisher")

#: errors after which an idempotent producer never sends again
FATAL_TO_PRODUCER = (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    UnknownProducerId,
)


def _dead(producer: AIOKafkaProducer, error: KafkaError) -> bool:
    if isinstance(error, FATAL_TO_PRODUCER):
        return True
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    return task is not None and task.done()


class Publisher(Protocol):
    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None: ...

    async def reachable(self, timeout: float) -> bool:
        """Whether Kafka answers now (readiness), within ``timeout`` seconds."""
        ...


@dataclass(frozen=True)
class PublishedRecord:
    """One record as it was handed to :meth:`InMemoryPublisher.publish`."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class InMemoryPublisher:
    """A :class:`Publisher` that keeps records in memory instead of sending them.

    ``records`` holds every record published, in the order published (a copy of its
    headers, so a caller reusing its list changes nothing here). :meth:`fail_next`
    simulates an outage: the next ``count`` publishes raise ``Unavailable``, as
    :class:`KafkaPublisher` does when Kafka cannot take a record, and record nothing."""

    def __init__(self) -> None:
        self.records: list[PublishedRecord] = []
        self._failures = 0

    def fail_next(self, count: int = 1) -> None:
        """Fail the next ``count`` publishes with ``Unavailable`` (``0`` ends an outage)."""
        if count < 0:
            raise ValueError(f"fail_next: count must be 0 or more, not {count}")
        self._failures = count

    async def reachable(self, timeout: float) -> bool:
        """False while an outage simulated by :meth:`fail_next` lasts."""
        return not self._failures

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self._failures:
            self._failures -= 1
            raise Unavailable(f"publishing to {topic} failed: simulated outage")
        self.records.append(PublishedRecord(topic, key, value, tuple(headers)))


class KafkaPublisher:
    def __init__(self, profile: KafkaProfile) -> None:
        self.profile = profile
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        # sends in flight: a producer is stopped only once none is using it, or a send still
        # running on it would reconnect its closed client and leave that connection open
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        async with self._lock:
            if self._producer is not None:
                return
            producer = AIOKafkaProducer(**self.profile.producer_kwargs())
            try:
                await producer.start()
            except KafkaError as e:
                await producer.stop()
                raise Unavailable(f"cannot reach Kafka at {self.profile.bootstrap_servers}") from e
            self._producer = producer

    async def reachable(self, timeout: float) -> bool:
        """Whether a broker of the cluster answers a metadata request now."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def aclose(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_when_idle(producer)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _stop_when_idle(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 20)
        with contextlib.suppress(KafkaError):
            await producer.stop()

    async def _retire(self, producer: AIOKafkaProducer) -> None:
        """Stop using ``producer`` now; stop it once the sends still on it have ended."""
        async with self._lock:
            if self._producer is not producer:
                return
            self._producer = None
        task = asyncio.create_task(self._stop_when_idle(producer), name="retire-producer")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def reset(self) -> None:
        """Drop the producer and its cached metadata (the broker restarted); the next
        publish connects afresh."""
        await self.aclose()

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        producer = self._producer
        if producer is None:
            await self.start()
            producer = self._producer
        if producer is None:
            raise Unavailable(f"publishing to {topic} failed: the producer was closed")
        self._sending += 1
        self._idle.clear()
        try:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as e:
            if _dead(producer, e):
                log.warning(
                    "Kafka producer retired after %s; a new one takes over", type(e).__name__
                )
                await self._retire(producer)
            raise Unavailable(f"publishing to {topic} failed: {type(e).__name__}") from e
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()
