"""The outbox relay and the reconciler.

A message is stored (with its outbox row) before the gateway answers 202, so a broker that is
down at intake loses nothing: the relay keeps publishing until the broker takes it.

A broker's acknowledgement is not the end of the promise: the embedded broker loses
everything when it restarts (and acknowledges writes to topics that no longer exist), and any
broker or consumer fault can lose a record. So the reconciler, which runs beside the relay,
publishes again every message that the router has not routed ``reconcile_after_seconds``
after it was published, recreating missing topics first. Routing is idempotent, so a
message published twice is routed once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import tracing
from .errors import Unavailable
from .kafka.cloudevents import to_record
from .kafka.publisher import Publisher
from .metrics import REPUBLISHED
from .runtime import Runtime

log = logging.getLogger("isa_broker.outbox")


class OutboxRelay:
    def __init__(self, runtime: Runtime, publisher: Publisher) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.publisher = publisher
        self.poll_seconds = runtime.settings.delivery.relay_poll_seconds
        self._wake = asyncio.Event()
        self._last_reconcile = 0.0

    def notify(self) -> None:
        """Called after intake so the relay publishes at once instead of at the next poll."""
        self._wake.set()

    async def publish_pending(self) -> int:
        published = 0
        while True:
            rows = await self.store.unpublished()
            for row in rows:
                key, value, headers = to_record(
                    row["id"],
                    row["sender"],
                    row["message_type"],
                    row["accepted_at"],
                    row["person"],
                    row["payload"],
                )
                # the message-type topics hold complete messages: encrypted (see
                # services.core.kafka.encryption); a republished message is sealed afresh
                value, headers = self.runtime.topic_encryption.seal(row["topic"], value, headers)
                with tracing.span(
                    f"{row['topic']} publish",
                    parent=tracing.context_of(row.get("trace_context")),
                    kind=tracing.SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.operation.type": "send",
                        "messaging.destination.name": row["topic"],
                        "isa.message.id": row["id"],
                        "isa.message.type": row["message_type"],
                    },
                ) as span:
                    try:
                        await self.publisher.publish(
                            row["topic"], key, value, tracing.headers_with_trace(headers)
                        )
                    except Unavailable as e:
                        tracing.failed(span, "kafka unavailable")
                        log.warning("outbox publish failed message_id=%s: %s", row["id"], e)
                        await self.store.mark_publish_failed(row["id"], str(e))
                        return published
                await self.store.mark_published(row["id"], self.runtime.clock())
                published += 1
            if len(rows) < 100:
                return published

    async def reconcile(self, *, everything: bool = False) -> int:
        """Queue for publishing again the messages left unrouted too long (all of them when
        ``everything``: the broker is known to have lost its data). Returns how many."""
        settings = self.runtime.settings
        requeued = await self.store.requeue_unrouted(
            self.runtime.clock(), settings.delivery.reconcile_after_seconds, everything=everything
        )
        if requeued:
            REPUBLISHED.inc(len(requeued))
            log.warning(
                "reconciler: %d accepted messages not yet routed; publishing them again",
                len(requeued),
            )
            await self.runtime.ensure_topics()
            self._wake.set()
        return len(requeued)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = min(self.runtime.settings.delivery.reconcile_after_seconds / 2, 10.0)
        while True:
            self._wake.clear()
            try:
                await self.publish_pending()
                if loop.time() - self._last_reconcile >= interval:
                    self._last_reconcile = loop.time()
                    await self.reconcile()
            except Unavailable as e:
                log.warning("outbox relay: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
