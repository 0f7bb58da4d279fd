"""The outbox relay: publishes accepted messages from the store to Kafka. A message is stored
before the gateway answers 202, so a broker that is down at intake loses nothing; the relay
keeps retrying until the broker takes it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .errors import Unavailable
from .kafka.cloudevents import to_record
from .kafka.publisher import Publisher
from .store import Store

log = logging.getLogger("isa_broker.outbox")


class OutboxRelay:
    def __init__(self, store: Store, publisher: Publisher, poll_seconds: float = 1.0) -> None:
        self.store = store
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Called after intake so the relay publishes at once instead of at the next poll."""
        self._wake.set()

    async def publish_pending(self) -> int:
        published = 0
        for row in await self.store.unpublished():
            key, value, headers = to_record(
                row["id"],
                row["sender"],
                row["message_type"],
                row["accepted_at"],
                row["person"],
                row["payload"],
            )
            try:
                await self.publisher.publish(row["topic"], key, value, headers)
            except Unavailable as e:
                log.warning("outbox publish failed message_id=%s: %s", row["id"], e)
                await self.store.mark_publish_failed(row["id"], str(e))
                break
            await self.store.mark_published(row["id"])
            published += 1
        return published

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.publish_pending()
            except Unavailable as e:
                log.warning("outbox relay: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
