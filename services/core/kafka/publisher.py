"""The ``Publisher`` seam and its aiokafka implementation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ..errors import Unavailable
from .config import KafkaProfile


class Publisher(Protocol):
    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None: ...


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

    async def aclose(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 20)
            with contextlib.suppress(KafkaError):
                await producer.stop()

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
            raise Unavailable(f"publishing to {topic} failed: {type(e).__name__}") from e
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()
