"""What the dispatcher does when deliveries cannot be made: a record on the dead-letter topic
for operators' tooling (ids, the reason and the attempt history, never the payload), and,
when an endpoint has failed for too long or answered 410 Gone, its subscription disabled,
what it held dead-lettered, and its owner and the senders of those messages told, each on
its own inbox feed (ids only, no personal data)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from services.core.errors import Unavailable
from services.core.kafka.publisher import Publisher
from services.core.metrics import ENDPOINTS_DISABLED
from services.core.notices import notice_event
from services.core.runtime import Runtime
from services.core.store.values import DueDelivery

log = logging.getLogger("isa_broker.router")

NOTICE_SOURCE = "urn:isa-broker:router"


class DeadLetters:
    """Dead letters and disabled endpoints, for one router."""

    def __init__(self, runtime: Runtime, publisher: Publisher) -> None:
        self.runtime = runtime
        self.publisher = publisher

    async def disable(self, row: DueDelivery, reason: str) -> None:
        """Disable the subscription, dead-letter what it held, and tell its owner and the
        senders of those messages, each on its own feed (ids only, no personal data)."""
        store = self.runtime.store
        held = await store.disable_subscription(row["subscription_id"], reason)
        if held is None:
            return  # already disabled, by another attempt or another router
        ENDPOINTS_DISABLED.labels(recipient=row["recipient"]).inc()
        log.warning(
            "subscription_id=%s of %s disabled: %s; %d deliveries dead-lettered",
            row["subscription_id"],
            row["recipient"],
            reason,
            len(held),
        )
        for d in held:
            await self.publish(d, f"subscription disabled: {reason}")
        data = {
            "subscription_id": row["subscription_id"],
            "recipient": row["recipient"],
            "reason": reason,
            "dead_lettered": sorted(d["id"] for d in held),
        }
        await store.add_notice(row["recipient"], self.notice("subscription-disabled", data))
        by_sender: dict[str, list[str]] = {}
        for sender, message_id in [(row["sender"], row["message_id"])] + [
            (d["sender"], d["message_id"]) for d in held
        ]:
            by_sender.setdefault(sender, []).append(message_id)
        for sender, message_ids in sorted(by_sender.items()):
            if sender == row["recipient"]:
                continue
            await store.add_notice(
                sender,
                self.notice(
                    "recipient-endpoint-disabled",
                    {
                        "recipient": row["recipient"],
                        "reason": reason,
                        "message_ids": sorted(set(message_ids)),
                    },
                ),
            )

    def notice(self, kind: str, data: dict[str, Any]) -> str:
        return notice_event(kind, data, source=NOTICE_SOURCE, at=self.runtime.clock())

    async def publish(self, row: Mapping[str, Any], reason: str) -> None:
        """A record on the dead-letter topic for operators' tooling: ids, the reason and the
        attempt history (status codes and errors), never the payload."""
        history = await self.runtime.store.attempts(row["id"])
        value = json.dumps(
            {
                "delivery_id": row["id"],
                "message_id": row["message_id"],
                "recipient": row["recipient"],
                "subscription_id": row["subscription_id"],
                "reason": reason,
                "attempts": [
                    {
                        "at": a["at"].isoformat(),
                        "status_code": a["status_code"],
                        "error": a["error"],
                        "duration_ms": round(a["duration_ms"], 1),
                    }
                    for a in history
                ],
            }
        ).encode()
        topic = self.runtime.kafka.dead_letter_topic
        # a shared topic: the value is encrypted like the message topics' (the error texts
        # of the attempt history are the receivers' words)
        value, headers = self.runtime.topic_encryption.seal(
            topic,
            value,
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", row["id"].encode()),
                ("ce_source", NOTICE_SOURCE.encode()),
                ("ce_type", b"org.isa-broker.dead-letter.v1"),
                ("ce_time", self.runtime.clock().isoformat().encode()),
                ("ce_subject", row["message_id"].encode()),
                ("content-type", b"application/json"),
            ],
        )
        try:
            await self.publisher.publish(topic, row["person"].encode(), value, headers)
        except Unavailable as e:
            log.warning("dead-letter record not published delivery_id=%s: %s", row["id"], e)
        log.warning(
            "dead-lettered delivery_id=%s recipient=%s reason=%s",
            row["id"],
            row["recipient"],
            reason,
        )
