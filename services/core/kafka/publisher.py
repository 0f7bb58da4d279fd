"""The ``Publisher`` seam and its aiokafka implementation."""

from __future__ import annotations

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

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self.profile.producer_kwargs())
        try:
            await self._producer.start()
        except KafkaError as e:
            await self._producer.stop()
            self._producer = None
            raise Unavailable(f"cannot reach Kafka at {self.profile.bootstrap_servers}") from e

    async def aclose(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None  # noqa: S101
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except KafkaError as e:
            raise Unavailable(f"publishing to {topic} failed: {type(e).__name__}") from e
