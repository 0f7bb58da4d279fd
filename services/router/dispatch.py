"""The delivery dispatcher: attempts deliveries from the durable queue in the store.

The router's consumer only *records* deliveries (one row per recipient and channel); this
loop attempts whichever rows are due, so a retry waiting five hours is a row with a due time,
not a timer in memory, and a router that is killed loses nothing: another (or the same, once
restarted) takes the row when its lease runs out.

Rules kept here:

* per-person order per recipient: a delivery is not attempted while an earlier message
  about the same person is unfinished for the same subscription, or not yet routed at all
  (see :meth:`Store.due_deliveries`);
* at most ``webhook_max_in_flight`` attempts at once per subscription, so one slow receiver
  holds only its own slots;
* the agreements in force are checked again before every attempt, so a retry or a replay
  never discloses what is no longer permitted;
* an endpoint failing for ``endpoint_disable_after_seconds`` is disabled, and its owner and
  the senders of the messages it held are told on their own inbox feed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import random
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from services.core import tracing
from services.core.crypto import recipient
from services.core.crypto.envelope import EnvelopeError
from services.core.errors import Unavailable
from services.core.isa.engine import RecipientDecision
from services.core.isa.model import agreement_ref
from services.core.kafka.cloudevents import event_of, structured
from services.core.kafka.publisher import Publisher
from services.core.metrics import DELIVERIES
from services.core.retention import periods_for, retention_of
from services.core.runtime import Runtime
from services.core.store.timeliness import AwaitedDuty
from services.core.store.values import Attempt, DeliveryOutcome, DueDelivery
from services.core.timeliness.duty_attributes import awaited_duties, duty_extensions
from services.core.timeliness.events import event_body, is_system_event
from services.core.timeliness.lifecycle import Shown, event_extensions, shown_now
from services.core.webhooks import signing

from .dead_letters import DeadLetters
from .outcomes import OutcomeRecorder
from .webhook import AttemptResult, WebhookSender, next_delay

log = logging.getLogger("isa_broker.router")

#: attempts in flight at once in one router, all subscriptions together
MAX_IN_FLIGHT = 64


def agreement_refs(permitted: RecipientDecision) -> str:
    """The agreements (``id@version``, comma separated) that permitted a recipient's fields."""
    return ",".join(
        sorted({agreement_ref(g.agreement_id, g.agreement_version) for g in permitted.grants})
    )


@dataclass(frozen=True)
class Disclosure:
    """What one attempt discloses, decided just before it from the agreements in force: the
    version the recipient is shown, its share of it (``fields``, under ``grants`` of
    ``agreements``), and each granting agreement's retention period."""

    shown: Shown
    permitted: RecipientDecision
    fields: list[str]
    grants: list[dict[str, Any]]
    agreements: str
    periods: Mapping[str, str | None]

    def disclosed_in(self, outcome: DeliveryOutcome) -> DeliveryOutcome:
        """``outcome``, carrying what the attempt disclosed and, once delivered, how long
        the recipient may keep it (measured from when the attempt ended)."""
        attempt = outcome.attempt
        retention = (
            retention_of(self.periods, attempt.ended_at)
            if outcome.status == "delivered" and attempt is not None
            else None
        )
        return replace(outcome, fields=self.fields, grants=self.grants, retention=retention)


def outcome_of(
    disclosure: Disclosure | None,
    status: str,
    attempt: Attempt | None = None,
    *,
    next_attempt_at: dt.datetime | None = None,
    retry_index: int | None = None,
    reason: str | None = None,
    inbox_body: str | None = None,
    endpoint_ok: bool = False,
) -> DeliveryOutcome:
    """An attempt's outcome (the fields as :class:`DeliveryOutcome`'s), with what
    ``disclosure`` disclosed; a broker event's (no disclosure) carries only the attempt."""
    outcome = DeliveryOutcome(
        status,
        attempt=attempt,
        next_attempt_at=next_attempt_at,
        retry_index=retry_index,
        reason=reason,
        inbox_body=inbox_body,
        endpoint_ok=endpoint_ok,
    )
    return outcome if disclosure is None else disclosure.disclosed_in(outcome)


def trace_extension(row: Mapping[str, Any]) -> dict[str, str]:
    """The CloudEvents distributed tracing extension of a delivered event: ``traceparent``,
    the routing's W3C trace context, so that a receiver can continue the trace; none when the
    delivery was routed without traces."""
    value = row.get("trace_context")
    return {tracing.TRACEPARENT: value} if value else {}


def router_identity(data_dir: Path) -> str:
    """Stable across restarts of one router (same host, same data directory), different
    between routers, so that a restarted router can take back its own leases at once."""
    digest = hashlib.sha256(f"{socket.gethostname()}|{data_dir.resolve()}".encode()).hexdigest()
    return f"router-{digest[:16]}"


class Dispatcher:
    def __init__(self, runtime: Runtime, publisher: Publisher) -> None:
        self.runtime = runtime
        self.publisher = publisher
        self.owner = router_identity(runtime.settings.data_dir)
        self.sender = WebhookSender.from_settings(runtime.settings)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._per_subscription: Counter[str] = Counter()
        self._normal: set[str] = set()  # ids in flight in the ordinary lane
        self._wake = asyncio.Event()
        self._more = False
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self.dead_letters = DeadLetters(runtime, publisher)
        self.outcomes = OutcomeRecorder(runtime.store)

    def wake(self) -> None:
        """New deliveries were recorded: look for due rows now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def aclose(self) -> None:
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.outcomes.aclose()
        await self.sender.aclose()

    async def run(self) -> None:
        poll = self.runtime.settings.delivery.dispatch_poll_seconds
        # leases this router held before it was killed: take them back now rather than
        # waiting for them to run out
        with contextlib.suppress(Unavailable):
            released = await self.runtime.store.release_leases(self.owner)
            if released:
                log.warning("took back %d deliveries leased before a restart", released)
        while True:
            self._wake.clear()
            try:
                started = await self.dispatch_due()
            except Unavailable as e:
                log.warning("dispatcher: %s", e)
                started = 0
            if started and self._more and len(self._in_flight) < MAX_IN_FLIGHT:
                await asyncio.sleep(0)  # more were due than one look fetched: look again
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            await asyncio.sleep(0.005)  # let completions arriving together share one look

    async def dispatch_due(self) -> int:
        """Lease and start every due delivery that the limits allow; returns how many."""
        free = MAX_IN_FLIGHT - len(self._in_flight)
        if free <= 0:
            return 0
        now = self.runtime.clock()
        rows = await self.runtime.store.due_deliveries(now, free * 2, set(self._in_flight))
        self._more = len(rows) >= free * 2
        limit = self.runtime.settings.webhooks.max_in_flight
        # the priority lane (services.core.timeliness.priority): rows come priority first;
        # ordinary rows may fill at most MAX_IN_FLIGHT - reserve slots, and a priority row
        # may take one slot per subscription beyond ``limit``
        reserve = self.runtime.settings.delivery.priority_lane_reserved_slots
        normal_free = MAX_IN_FLIGHT - reserve - len(self._normal)
        per_sub = Counter(self._per_subscription)
        chosen: list[DueDelivery] = []
        for row in rows:
            urgent = bool(row.get("priority")) and reserve > 0
            if per_sub[row["subscription_id"]] >= limit + (1 if urgent else 0):
                continue
            if not row.get("priority"):
                if normal_free <= 0:
                    continue
                normal_free -= 1
            per_sub[row["subscription_id"]] += 1
            chosen.append(row)
            if len(chosen) >= free:
                break
        lease = dt.timedelta(seconds=self.runtime.settings.webhooks.timeout_seconds * 3 + 30)
        claimed = await self.runtime.store.claim(
            [r["id"] for r in chosen], self.owner, now, now + lease
        )
        for row in chosen:
            if row["id"] not in claimed:
                continue
            self._per_subscription[row["subscription_id"]] += 1
            if not row.get("priority"):
                self._normal.add(row["id"])
            task = asyncio.create_task(self._run_one(row), name=f"deliver-{row['id']}")
            self._in_flight[row["id"]] = task
        return len(claimed)

    async def _run_one(self, row: DueDelivery) -> None:
        try:
            with tracing.span(
                f"deliver {row['message_type']}",
                parent=tracing.context_of(row.get("trace_context")),
                kind=tracing.SpanKind.PRODUCER,
                attributes={
                    "isa.delivery.id": row["id"],
                    "isa.message.id": row["message_id"],
                    "isa.message.type": row["message_type"],
                    "isa.recipient": row["recipient"],
                    "isa.subscription.id": row["subscription_id"],
                    "isa.channel": row["channel"],
                    "isa.attempt": int(row["attempts"]) + 1,
                },
            ):
                await self.attempt(row)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.runtime.store.release(row["id"]))
            raise
        except Exception:  # a bug must not stop the loop; the row is tried again later
            log.exception("delivery_id=%s attempt failed unexpectedly", row["id"])
            with contextlib.suppress(Unavailable):
                retry_at = self.runtime.clock() + dt.timedelta(seconds=30)
                await self.record(row, DeliveryOutcome(row["status"], next_attempt_at=retry_at))
        finally:
            self._in_flight.pop(row["id"], None)
            self._normal.discard(row["id"])
            self._per_subscription[row["subscription_id"]] -= 1
            if self._per_subscription[row["subscription_id"]] <= 0:
                del self._per_subscription[row["subscription_id"]]
            self._wake.set()

    async def record(self, row: DueDelivery, outcome: DeliveryOutcome) -> None:
        """Record an outcome in the store, and count it (isa_broker_deliveries)."""
        await self.outcomes.record(row, outcome)
        DELIVERIES.labels(
            channel=row["channel"], outcome=outcome.status, recipient=row["recipient"]
        ).inc()
        attempt = outcome.attempt
        tracing.annotate(
            {
                "isa.delivery.outcome": outcome.status,
                "http.response.status_code": attempt.status_code if attempt else None,
            }
        )

    # -- one attempt ---------------------------------------------------------------------------

    async def attempt(self, row: DueDelivery) -> None:
        store = self.runtime.store
        now = self.runtime.clock()
        if row["subscription_status"] != "active":
            reason = f"subscription {row['subscription_status']}"
            await self.record(row, DeliveryOutcome("dead_lettered", reason=reason))
            return
        if is_system_event(row):
            # a broker event (duty escalation, DIP reminder or expiry): ids only, sent as
            # stored, with no projection and no re-check (services.core.timeliness.events)
            await self.send(row, event_body(row), now, None)
            return
        # a cancellation shows each party the version it was entitled to (see lifecycle)
        shown = await shown_now(self.runtime.engine, store, row, row["recipient"], now)
        permitted = shown.permitted
        if permitted is None:
            await self.record(row, DeliveryOutcome("withheld", reason=shown.withheld))
            log.info("withheld delivery_id=%s recipient=%s", row["id"], row["recipient"])
            return
        policies = self.runtime.engine.policies
        grants = [g.to_dict() for g in permitted.grants]
        disclosure = Disclosure(
            shown=shown,
            permitted=permitted,
            fields=shown.disclosed(),
            grants=grants,
            agreements=agreement_refs(permitted),
            # recorded with the delivery: how long the recipient may keep it
            periods=periods_for(policies, row["recipient"], grants),
        )
        # read now, not at routing: an amendment's deadline, an acknowledgement since
        duties = await awaited_duties(store, policies, row, permitted)
        await self.send(row, self.body(row, disclosure, duties), now, disclosure)

    async def send(
        self, row: DueDelivery, body: bytes, now: dt.datetime, disclosure: Disclosure | None
    ) -> None:
        """One attempt to send ``body`` on the delivery's channel, and its outcome. A Kafka
        record, and a webhook body whose subscription asked for it, is first encrypted to
        the recipient's current public key; with no key registered the attempt fails and is
        retried on the schedule (the agency is told on its inbox when the delivery is
        dead-lettered), never sent in clear."""
        content_type = "application/cloudevents+json"
        if row["channel"] == "kafka" or (row["channel"] == "webhook" and row.get("encrypt")):
            agreements = disclosure.agreements if disclosure is not None else ""
            sealed = await self.seal_for_recipient(row, body, agreements)
            if sealed is None:
                error = f"no encryption key registered for {row['recipient']}"
                failed = AttemptResult(False, None, error, 0.0, True)
                await self.settle(row, failed, now, disclosure)
                return
            body, content_type = sealed, recipient.CONTENT_TYPE
        if row["channel"] == "inbox":
            outcome = outcome_of(disclosure, "delivered", Attempt(at=now), inbox_body=body.decode())
            await self.record(row, outcome)
            return
        if row["channel"] == "kafka":
            result = await self._publish(row, body, content_type)
        else:
            ts = int(now.timestamp())
            # during a rotation's overlap the previous key signs too (two signatures)
            at_rest = self.runtime.signing_keys_at_rest
            try:
                secret = at_rest.open_(row["subscription_id"], row["secret"])
                previous = at_rest.open_(row["subscription_id"], row.get("previous_secret"))
            except EnvelopeError as e:  # never sent unsigned: retried, then dead-lettered
                error = f"the subscription's signing key cannot be opened: {e}"
                failed = AttemptResult(False, None, error, 0.0, True)
                await self.settle(row, failed, now, disclosure)
                return
            assert secret is not None  # noqa: S101 - a webhook subscription has a key
            keys = signing.active_keys(secret, previous, row.get("previous_secret_until"), now)
            url = row["url"]
            assert url is not None  # noqa: S101 - a webhook subscription has a URL
            result = await self.sender.attempt(url, keys, row["id"], body, ts, content_type)
        await self.settle(row, result, now, disclosure)

    async def seal_for_recipient(
        self, row: DueDelivery, body: bytes, agreements: str
    ) -> bytes | None:
        """``body`` signed with the broker's active delivery-signing key, then encrypted as a
        compact JWE to the recipient's current key, both bound to the message, the delivery,
        the recipient and the agreements (:mod:`services.core.crypto.recipient`); None when
        the recipient has no key."""
        key = await self.runtime.store.current_party_key(row["recipient"])
        if key is None:
            return None
        binding = recipient.Binding(
            message_id=row["message_id"],
            delivery_id=row["id"],
            recipient=row["recipient"],
            agreements=agreements,
        )
        signing_key = self.runtime.keys.delivery_signing_key(self.runtime.clock())
        return recipient.seal(body, key, binding, signing_key=signing_key)

    def body(
        self, row: DueDelivery, disclosure: Disclosure, duties: Sequence[AwaitedDuty] = ()
    ) -> bytes:
        """The structured CloudEvent a recipient receives: only its permitted fields of the
        version it is shown, the agreements (id@version) that permitted them, and the
        ``duties`` on the message that await its acknowledgement
        (:mod:`services.core.timeliness.duty_attributes`)."""
        shown = disclosure.shown
        event = event_of(
            {
                "id": row["message_id"],
                "sender": row["sender"],
                "message_type": row["message_type"],
                "accepted_at": row["accepted_at"],
                "person": row["person"],
                "payload": shown.payload,
            }
        )
        return structured(
            event,
            disclosure.permitted.project(shown.payload),
            {
                "isarecipient": disclosure.permitted.party,
                "isaagreements": disclosure.agreements,
                "isadeliveryid": row["id"],
                **event_extensions({**row, "timeliness": shown.timeliness}),
                **duty_extensions(duties),
                # CloudEvents distributed tracing extension: the routing's trace
                **trace_extension(row),
            },
        )

    async def _publish(self, row: DueDelivery, body: bytes, content_type: str) -> AttemptResult:
        topic = self.runtime.kafka.agency_topic(row["recipient"])
        # a message is keyed by its person, so that one person's records stay in order; a
        # broker event goes to parties that may never have received the message, so it is
        # keyed by its own id rather than by the person's pseudonym
        key = row["message_id"] if is_system_event(row) else row["person"]
        started = asyncio.get_running_loop().time()
        try:
            await self.publisher.publish(
                topic,
                key.encode(),
                body,
                tracing.headers_with_trace(
                    [
                        ("content-type", content_type.encode()),
                        (recipient.RECORD_DELIVERY_HEADER, row["id"].encode()),
                        (recipient.RECORD_MESSAGE_HEADER, row["message_id"].encode()),
                    ]
                ),
            )
        except Unavailable as e:
            elapsed = (asyncio.get_running_loop().time() - started) * 1000
            return AttemptResult(False, None, str(e), elapsed, True)
        elapsed = (asyncio.get_running_loop().time() - started) * 1000
        return AttemptResult(True, None, None, elapsed, False)

    async def settle(
        self,
        row: DueDelivery,
        result: AttemptResult,
        now: dt.datetime,
        disclosure: Disclosure | None,
    ) -> None:
        store = self.runtime.store
        settings = self.runtime.settings
        attempt = Attempt(
            at=now,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        if result.ok:
            outcome = outcome_of(disclosure, "delivered", attempt, endpoint_ok=True)
            await self.record(row, outcome)
            log.info(
                "delivered delivery_id=%s recipient=%s attempts=%d",
                row["id"],
                row["recipient"],
                int(row["attempts"]) + 1,
            )
            return
        failed = int(row["retry_index"]) + 1
        delay = (
            next_delay(failed, settings.webhooks.retry_schedule, result.retry_after, self._rng)
            if result.retryable
            else None
        )
        if delay is None:
            reason = (
                "receiver answered 410 Gone"
                if result.gone
                else f"retry schedule exhausted after {failed} attempts: {result.error}"
            )
            await self.record(row, outcome_of(disclosure, "dead_lettered", attempt, reason=reason))
            await self.dead_letters.publish(row, reason)
            if result.gone:
                await self.dead_letters.disable(row, "receiver answered 410 Gone")
            return
        retry = outcome_of(
            disclosure,
            "retrying",
            attempt,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            retry_index=failed,
        )
        await self.record(row, retry)
        if row["channel"] != "webhook":
            return
        since = await store.endpoint_failed(row["subscription_id"], now)
        failing_for = (now - since).total_seconds()
        if failing_for >= settings.webhooks.endpoint_disable_after_seconds:
            await self.dead_letters.disable(
                row, f"endpoint failed every attempt for {int(failing_for)} seconds"
            )
