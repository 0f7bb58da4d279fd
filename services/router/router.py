"""The router's consumer loop and per-recipient delivery."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.core.errors import InvalidRequest, Unavailable
from services.core.isa.engine import Decision, RecipientDecision
from services.core.kafka.cloudevents import EventRecord, from_record, structured, to_record
from services.core.kafka.publisher import Publisher
from services.core.messages import MESSAGE_TYPES
from services.core.runtime import Runtime
from services.core.store.store import TERMINAL_DELIVERY

from .webhook import WebhookSender, next_delay

log = logging.getLogger("isa_broker.router")

GROUP_ID = "isa-broker-router"


def delivery_id(message_id: str, recipient: str, subscription_id: str | None) -> str:
    """Stable across redeliveries: receivers de-duplicate on it (``webhook-id``)."""
    digest = hashlib.sha256(f"{message_id}|{recipient}|{subscription_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


class Router:
    def __init__(self, runtime: Runtime, dead_letters: Publisher) -> None:
        self.runtime = runtime
        self.dead_letters = dead_letters
        self.sender = WebhookSender(runtime.settings.webhook_timeout_seconds)
        self._retries: set[asyncio.Task[None]] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    async def aclose(self) -> None:
        for task in list(self._retries):
            task.cancel()
        for task in list(self._retries):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sender.aclose()

    # -- consuming -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until cancelled. Offsets are committed after each batch is handled; a
        record seen twice is harmless because deliveries are keyed by a stable id."""
        profile = self.runtime.kafka
        topics = [profile.topic(name) for name in MESSAGE_TYPES]
        consumer = AIOKafkaConsumer(*topics, **profile.consumer_kwargs(GROUP_ID))
        try:
            await consumer.start()
        except KafkaError as e:
            await consumer.stop()
            raise Unavailable(f"router cannot reach Kafka: {e}") from e
        except BaseException:  # cancelled while joining the group: close its connections
            await asyncio.shield(consumer.stop())
            raise
        self._consumer = consumer
        try:
            await self.resume_pending()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batches.values():
                    for record in records:
                        await self.handle(list(record.headers), record.value or b"")
                if batches:
                    await consumer.commit()
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    async def handle(self, headers: list[tuple[str, bytes]], value: bytes) -> None:
        try:
            event = from_record(headers, value)
        except InvalidRequest as e:
            log.warning("skipping malformed record: %s", e)
            return
        message = await self.runtime.store.get_message(event.id)
        if message is None:
            log.warning("record for unknown message_id=%s skipped", event.id)
            return
        if message["status"] == "complete":
            return
        await self.route(event, message)

    async def route(self, event: EventRecord, message: dict[str, Any]) -> None:
        decision = Decision.from_dict(message["decision"])
        current = self.runtime.engine.recheck(decision, self.runtime.clock(), message["payload"])
        tasks = []
        for party, permitted in current.items():
            subs = await self.runtime.store.active_subscriptions(party, event.message_type)
            if isinstance(permitted, str):
                await self._settle_without_sending(message, party, subs, "withheld", permitted)
                continue
            if not subs:
                await self._settle_without_sending(
                    message, party, [], "no_channel", "recipient has no active subscription"
                )
                continue
            for sub in subs:
                tasks.append(self._deliver_first(event, message, permitted, sub))
        await asyncio.gather(*tasks)
        await self.runtime.store.complete_if_settled(message["id"])

    async def _settle_without_sending(
        self,
        message: dict[str, Any],
        party: str,
        subs: list[dict[str, Any]],
        status: str,
        reason: str,
    ) -> None:
        for sub_id in [s["id"] for s in subs] or [None]:
            now = self.runtime.clock()
            row = await self.runtime.store.ensure_delivery(
                {
                    "id": delivery_id(message["id"], party, sub_id),
                    "message_id": message["id"],
                    "recipient": party,
                    "subscription_id": sub_id,
                    "channel": "webhook" if sub_id else "none",
                    "status": "pending",
                    "fields": [],
                    "grants": [],
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if row["status"] not in TERMINAL_DELIVERY:
                await self.runtime.store.settle_delivery(
                    row,
                    status,
                    message_type=message["message_type"],
                    person=message["person"],
                    reason=reason,
                )

    async def _deliver_first(
        self,
        event: EventRecord,
        message: dict[str, Any],
        permitted: RecipientDecision,
        sub: dict[str, Any],
    ) -> None:
        projection = permitted.project(message["payload"])
        now = self.runtime.clock()
        row = await self.runtime.store.ensure_delivery(
            {
                "id": delivery_id(message["id"], permitted.party, sub["id"]),
                "message_id": message["id"],
                "recipient": permitted.party,
                "subscription_id": sub["id"],
                "channel": "webhook",
                "status": "pending",
                "fields": permitted.disclosed(message["payload"]),
                "grants": [g.to_dict() for g in permitted.grants],
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        if row["status"] in TERMINAL_DELIVERY:
            return
        refs = ",".join(
            sorted({f"{g.agreement_id}@{g.agreement_version}" for g in permitted.grants})
        )
        body = structured(
            event, projection, {"isarecipient": permitted.party, "isaagreements": refs}
        )
        if not await self._attempt(row, sub, body, message):
            task = asyncio.create_task(self._retry(row, sub, body, message))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _attempt(
        self, row: dict[str, Any], sub: dict[str, Any], body: bytes, message: dict[str, Any]
    ) -> bool:
        """One attempt; returns True when the delivery reached a terminal state."""
        store = self.runtime.store
        settings = self.runtime.settings
        ts = int(self.runtime.clock().timestamp())
        result = await self.sender.attempt(sub["url"], sub["secret"], row["id"], body, ts)
        attempts = int(row["attempts"]) + 1
        row["attempts"] = attempts
        status = "delivered" if result.ok else "retrying"
        await store.record_attempt(
            row["id"],
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            new_status=status,
        )
        if result.ok:
            await store.settle_delivery(
                row, "delivered", message_type=message["message_type"], person=message["person"]
            )
            log.info(
                "delivered delivery_id=%s recipient=%s attempts=%d",
                row["id"],
                row["recipient"],
                attempts,
            )
            return True
        delay = (
            next_delay(attempts, settings.webhook_retry_schedule, result.retry_after, self._rng)
            if result.retryable
            else None
        )
        if delay is None:
            if result.gone:
                await self._disable(sub, row)
            await self._dead_letter(row, message, result.error or "failed")
            return True
        row["next_delay"] = delay
        return False

    async def _retry(
        self, row: dict[str, Any], sub: dict[str, Any], body: bytes, message: dict[str, Any]
    ) -> None:
        while True:
            await asyncio.sleep(float(row.pop("next_delay", 0.0)))
            if await self._attempt(row, sub, body, message):
                await self.runtime.store.complete_if_settled(message["id"])
                return

    async def _disable(self, sub: dict[str, Any], row: dict[str, Any]) -> None:
        """The receiver answered 410 Gone: no further delivery goes to this subscription."""
        if await self.runtime.store.disable_subscription(sub["id"], "receiver answered 410 Gone"):
            log.warning("subscription_id=%s of %s disabled: HTTP 410", sub["id"], row["recipient"])

    async def _dead_letter(self, row: dict[str, Any], message: dict[str, Any], reason: str) -> None:
        await self.runtime.store.settle_delivery(
            row,
            "dead_lettered",
            message_type=message["message_type"],
            person=message["person"],
            reason=reason,
        )
        value = json.dumps(
            {
                "delivery_id": row["id"],
                "message_id": row["message_id"],
                "recipient": row["recipient"],
                "attempts": row["attempts"],
                "reason": reason,
            }
        ).encode()
        try:
            await self.dead_letters.publish(
                self.runtime.kafka.dead_letter_topic,
                message["person"].encode(),
                value,
                [
                    ("ce_specversion", b"1.0"),
                    ("ce_id", row["id"].encode()),
                    ("ce_source", b"urn:isa-broker:router"),
                    ("ce_type", b"org.isa-broker.dead-letter.v1"),
                    ("ce_time", self.runtime.clock().isoformat().encode()),
                    ("ce_subject", message["id"].encode()),
                    ("content-type", b"application/json"),
                ],
            )
        except Unavailable as e:
            log.warning("dead-letter record not published delivery_id=%s: %s", row["id"], e)
        log.warning(
            "dead-lettered delivery_id=%s recipient=%s reason=%s",
            row["id"],
            row["recipient"],
            reason,
        )

    async def resume_pending(self) -> None:
        """After a restart, route again every message that still has an unfinished webhook
        delivery (each message once; finished deliveries are skipped by their stable id)."""
        unfinished = {
            row["message_id"]
            for row in await self.runtime.store.list_deliveries()
            if row["status"] not in TERMINAL_DELIVERY and row["channel"] == "webhook"
        }
        for message_id in sorted(unfinished):
            message = await self.runtime.store.get_message(message_id)
            if message is not None:
                await self.handle(_headers_for(message), json.dumps(message["payload"]).encode())


def _headers_for(message: dict[str, Any]) -> list[tuple[str, bytes]]:
    _, _, headers = to_record(
        message["id"],
        message["sender"],
        message["message_type"],
        message["accepted_at"],
        message["person"],
        message["payload"],
    )
    return headers
