"""The router: consumes accepted messages from Kafka and records, per recipient and channel,
the delivery to make; the :class:`~services.router.dispatch.Dispatcher` makes them.

Recording is idempotent (a delivery's id is derived from the message, the recipient and the
subscription), so a record seen twice, or published again by the reconciler after the broker
lost it, changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError, KafkaError

from services.core import tracing
from services.core.crypto.envelope import EnvelopeError
from services.core.errors import InvalidRequest, Unavailable
from services.core.kafka.cloudevents import from_record
from services.core.kafka.publisher import Publisher
from services.core.messages import MESSAGE_TYPES
from services.core.runtime import Runtime
from services.core.store.rows import new_delivery
from services.core.store.values import StoredMessage
from services.core.timeliness.duties import on_routed
from services.core.timeliness.filters import Narrowing
from services.core.timeliness.lifecycle import Shown, recheck_shares
from services.core.timeliness.priority import PRIORITY_TYPES

from .dispatch import Dispatcher

log = logging.getLogger("isa_broker.router")

GROUP_ID = "isa-broker-router"


def _ce_id(headers: list[tuple[str, bytes]]) -> str:
    """The record's CloudEvent id for a log line (an id, never personal data)."""
    for name, raw in headers:
        if name == "ce_id":
            text = raw.decode("ascii", "replace")[:64]
            return "".join(c if c.isprintable() else "?" for c in text)
    return "-"


class Router:
    def __init__(self, runtime: Runtime, publisher: Publisher) -> None:
        self.runtime = runtime
        self.dispatcher = Dispatcher(runtime, publisher)
        #: called after routing wrote timers (the scheduler's ``wake``)
        self.on_timers: Callable[[], None] | None = None
        #: the consumers running now (their lag is a metric)
        self._consumers: set[AIOKafkaConsumer] = set()

    async def aclose(self) -> None:
        await self.dispatcher.aclose()

    async def serve(self) -> None:
        """Consume and dispatch until cancelled (the system runs the two as separate tasks,
        so that it can restart the consumer alone)."""
        await asyncio.gather(self.run(), self.dispatcher.run())

    # -- consuming -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled: the priority lane's topics (recalls) with a consumer of
        their own, so that a backlog of release notices waiting to be routed never holds a
        recall back, and every other topic with another."""
        profile = self.runtime.kafka
        priority = [profile.topic(name) for name in PRIORITY_TYPES]
        others = [profile.topic(name) for name in MESSAGE_TYPES if name not in PRIORITY_TYPES]
        await asyncio.gather(
            self._run_lane(priority, f"{GROUP_ID}-priority"), self._run_lane(others, GROUP_ID)
        )

    async def _run_lane(self, topics: list[str], group: str) -> None:
        """Consume ``topics`` as ``group`` until cancelled, reconnecting when the broker goes
        away. Offsets are committed after each batch is recorded; a record lost with the
        broker is published again by the reconciler, so a gap here delays a message but
        never loses it."""
        while True:
            try:
                await self.consume(topics, group)
            except (KafkaError, Unavailable) as e:
                log.warning("router consumer %s stopped (%s); reconnecting in 1 s", group, e)
                await asyncio.sleep(1)
                with contextlib.suppress(Unavailable):
                    await self.runtime.ensure_topics()

    async def consume(self, topics: list[str], group: str) -> None:
        consumer = AIOKafkaConsumer(*topics, **self.runtime.kafka.consumer_kwargs(group))
        try:
            await consumer.start()
        except KafkaError as e:
            await consumer.stop()
            raise Unavailable(f"router cannot reach Kafka: {e}") from e
        except BaseException:  # cancelled while joining the group: close its connections
            await asyncio.shield(consumer.stop())
            raise
        self._consumers.add(consumer)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                for records in batches.values():
                    for record in records:
                        await self.handle(list(record.headers), record.value or b"", record.topic)
                if batches:
                    await consumer.commit()
        finally:
            self._consumers.discard(consumer)
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    async def consumer_lag(self) -> dict[str, int]:
        """Per topic, the records this router's consumers have yet to read from their
        partitions (the high watermark last fetched less the position); a partition whose
        position is not known yet counts nothing."""
        lag: dict[str, int] = {}
        for consumer in list(self._consumers):
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                try:
                    position = await asyncio.wait_for(consumer.position(tp), 1)
                except (KafkaError, TimeoutError, IllegalStateError):
                    continue
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
        return lag

    async def handle(self, headers: list[tuple[str, bytes]], value: bytes, topic: str) -> None:
        """Route the message a record announces. The record is decrypted first (the
        message-type topics are encrypted: services.core.kafka.encryption); one that does
        not decrypt, arrives in clear or lacks the envelope headers is logged by its id
        only and skipped. Nothing is lost by skipping: the message is in the store, and the
        reconciler publishes it again, sealed afresh, if it stays unrouted."""
        try:
            value, headers = self.runtime.topic_encryption.open_(topic, value, headers)
        except EnvelopeError as e:
            log.warning("skipping record ce_id=%s on %s: %s", _ce_id(headers), topic, e)
            return
        try:
            event = from_record(headers, value)
        except InvalidRequest as e:
            log.warning("skipping malformed record: %s", e)
            return
        with tracing.span(
            f"{topic} process",
            parent=tracing.from_headers(headers),
            kind=tracing.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "isa.message.id": event.id,
                "isa.message.type": event.message_type,
            },
        ):
            message = await self.runtime.store.get_message(event.id)
            if message is None:
                log.warning("record for unknown message_id=%s skipped", event.id)
                tracing.annotate({"isa.route.outcome": "unknown message"})
                return
            if message["routed_at"] is not None:
                # seen before (a repeat from the broker or the reconciler)
                tracing.annotate({"isa.route.outcome": "already routed"})
                return
            await self.route(message)

    async def route(self, message: StoredMessage) -> None:
        """Record one delivery per recipient and subscription (or the reason there is none)
        and mark the message routed, in one transaction. A disabled subscription gets its
        delivery as a dead letter, to be replayed once it is enabled again."""
        now = self.runtime.clock()
        trace_context = tracing.traceparent()
        # a cancellation is re-checked per party against the version it was entitled to
        current, bases = await recheck_shares(self.runtime.engine, self.runtime.store, message, now)
        rows: list[dict[str, Any]] = []
        by_party = await self.runtime.store.active_subscriptions_of(
            sorted(current), message["message_type"], ("active", "disabled")
        )
        # subscription filters (services.core.timeliness.filters): applied below only to the
        # subscriptions of a party the decision permits, on that party's own projection
        narrowing = await Narrowing.load(
            self.runtime.store,
            self.runtime.keys.pseudonymise,
            message,
            [s for subs in by_party.values() for s in subs],
        )
        for party in sorted(current):
            shown = Shown.of(message, party, current, bases)
            subs = by_party.get(party, [])
            new_row = partial(
                new_delivery,
                message_id=message["id"],
                recipient=party,
                person=message["person"],
                accepted_at=message["accepted_at"],
                message_type=message["message_type"],
                now=now,
                priority=message.get("priority") or 0,
                # each attempt's span continues this routing's trace
                trace_context=trace_context,
            )
            if shown.permitted is None or not subs:
                reason = shown.withheld if shown.withheld is not None else "no active subscription"
                status = "withheld" if shown.withheld is not None else "no_channel"
                targets: list[dict[str, Any] | None] = list(subs) or [None]
                for sub in targets:
                    rows.append(
                        new_row(
                            subscription_id=sub["id"] if sub else None,
                            channel=sub["channel"] if sub else "none",
                            status=status,
                            last_error=reason,
                        )
                    )
                continue
            fields = shown.disclosed()
            grants = [g.to_dict() for g in shown.permitted.grants]
            # only narrows: a subset of this permitted party's subscriptions; a subscription
            # filtered out gets no row (it is not a disclosure, nor a refusal)
            for sub in narrowing.keep(subs, shown.permitted, shown.payload):
                row = new_row(
                    subscription_id=sub["id"],
                    channel=sub["channel"],
                    status="pending",
                    fields=fields,
                    grants=grants,
                )
                if sub["status"] == "disabled":
                    # kept as a dead letter, so that it can be replayed once re-enabled
                    row["status"] = "dead_lettered"
                    row["last_error"] = f"subscription disabled: {sub['status_reason']}"
                rows.append(row)
        # acknowledgement duties and DIP deadlines, written in the same transaction
        # (services.core.timeliness.duties)
        also = on_routed(self.runtime, message, current, now)
        await self.runtime.store.mark_routed(message["id"], rows, also=also)
        tracing.annotate({"isa.route.outcome": "routed", "isa.deliveries": len(rows)})
        if also is not None and self.on_timers is not None:
            self.on_timers()
        self.dispatcher.wake()
