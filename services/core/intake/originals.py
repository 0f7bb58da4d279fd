"""Intake of an original message (:func:`accept`), and the step every message goes through,
an original or an update (:func:`decide_and_store`). The order of the steps is in the
package docstring (:mod:`services.core.intake`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import tracing
from ..errors import InvalidRequest, SharingRefused, ValidationFailed
from ..isa.engine import Decision
from ..messages import MessageType, get_message_type
from ..messages.person import identifier_keys, person_key
from ..metrics import DECISION_SECONDS, INTAKE
from ..runtime import Runtime
from ..timeliness.lifecycle import ORIGINAL, Transition, initial_state
from ..timeliness.notice import timeliness_of
from ..timeliness.priority import priority_of
from .accepted import Accepted, replay_if_seen, replayed, request_hash

log = logging.getLogger("isa_broker.intake")

#: Wakes the outbox relay, so that it publishes a stored message at once instead of at its
#: next poll (``OutboxRelay.notify``).
Wake = Callable[[], None]

#: lifecycle facts that are enumerations or dates, fit for the disclosure log
AUDITED_FACTS = frozenset({"reason", "outcome", "outcome_date"})


def person_identifier(payload: Mapping[str, Any]) -> str:
    """The identifier events about one person are keyed by: PNC id, else probation CRN, else
    prison number. Only its keyed pseudonym ever leaves the store."""
    key = person_key(payload["person"])
    if key is None:
        raise InvalidRequest("person has no identifier")  # the schema already requires one
    return key


@dataclass(frozen=True)
class Update:
    """What makes a message an update (see :mod:`services.core.timeliness.lifecycle`): the
    root as it was read, the transition, a decision when it is built rather than decided (a
    cancellation's, with each party's basis version), and lifecycle facts for its timeliness
    (a cancellation's reason, the time of release, an outcome's date)."""

    root: Mapping[str, Any]
    transition: Transition
    decision: Decision | None = None
    basis: dict[str, str] | None = None
    facts: dict[str, Any] = field(default_factory=dict)


async def accept(
    runtime: Runtime,
    sender: str,
    message_type: str,
    body: bytes,
    *,
    client_id: str,
    purposes: list[str] | None = None,
    idempotency_key: str | None = None,
    wake: Wake | None = None,
) -> Accepted:
    """Intake of an original message of ``message_type`` from ``sender`` (its client
    ``client_id``): validate ``body``, answer again a request already made under
    ``idempotency_key``, else decide and store it (:func:`decide_and_store`).

    Raises :class:`~services.core.errors.UnknownMessageType`,
    :class:`~services.core.errors.ValidationFailed`,
    :class:`~services.core.errors.IdempotencyKeyReused` and
    :class:`~services.core.errors.SharingRefused`."""
    mt = get_message_type(message_type)
    try:
        payload = mt.validate_json(body)
    except ValidationFailed:
        INTAKE.labels(message_type=mt.name, outcome="invalid").inc()
        raise
    request = request_hash(mt.name, sorted(purposes or []), payload)
    replay = await replay_if_seen(runtime, client_id, idempotency_key, request)
    if replay is not None:
        INTAKE.labels(message_type=mt.name, outcome="replayed").inc()
        return replay
    accepted = await decide_and_store(
        runtime,
        sender,
        mt,
        payload,
        client_id=client_id,
        purposes=purposes,
        idempotency_key=idempotency_key,
        request=request,
        wake=wake,
    )
    assert accepted is not None  # noqa: S101 - only an update can find its root moved on
    return accepted


async def decide_and_store(
    runtime: Runtime,
    sender: str,
    mt: MessageType,
    payload: dict[str, Any],
    *,
    client_id: str,
    purposes: list[str] | None,
    idempotency_key: str | None,
    request: str,
    update: Update | None = None,
    wake: Wake | None = None,
) -> Accepted | None:
    """Decide and store (with its outbox row, so that it is published and routed like any
    message) an original, or an ``update`` to a root message, and wake the relay. An update
    keeps its root's person pseudonym, so that it is published with the same Kafka key and
    reaches each recipient after what it updates. Returns None, storing nothing, when the
    update's root changed state or version since it was read (the caller reads it again)."""
    now = runtime.clock()
    person = (
        update.root["person"]
        if update is not None
        else runtime.keys.pseudonymise(person_identifier(payload))
    )
    if update is not None and update.decision is not None:
        decision = update.decision
    else:
        try:
            with DECISION_SECONDS.labels(message_type=mt.name).time():
                decision = runtime.engine.decide(sender, mt.name, now, purposes, payload)
        except SharingRefused as e:
            INTAKE.labels(message_type=mt.name, outcome="refused").inc()
            tracing.annotate({"isa.message.type": mt.name, "isa.intake.outcome": "refused"})
            await runtime.store.audit(
                "refused",
                message_type=mt.name,
                actor=sender,
                person=person,
                message_id=update.root["id"] if update is not None else None,
                detail={"client_id": client_id, "reason": e.reason, "purposes": purposes or []},
            )
            raise
    # every identifier of the person, so that subject access finds the message by any of them
    pseudonyms = [runtime.keys.pseudonymise(k) for k in identifier_keys(payload.get("person", {}))]
    timeliness = timeliness_of(mt.name, payload, now, runtime.settings.timeliness.short_notice_days)
    if update is not None and update.facts:
        timeliness = {**(timeliness or {}), **update.facts}
    message_id = str(uuid.uuid4())
    row: dict[str, Any] = {
        "id": message_id,
        "message_type": mt.name,
        "sender": sender,
        "client_id": client_id,
        "purposes": purposes,
        "person": person,
        "payload": payload,
        "decision": decision.to_dict(),
        "status": "pending",
        "accepted_at": now,
        "idempotency_key": idempotency_key,
        "request_hash": request,
        "timeliness": timeliness,
        "priority": priority_of(mt.name, payload),
        # the request's trace, continued by the relay, the router and each attempt
        "trace_context": tracing.traceparent(),
    }
    topic = runtime.kafka.topic(mt.name)
    if update is None:
        row["state"] = initial_state(mt.name, payload)
        existing = await runtime.store.accept_message(row, topic, pseudonyms)
    else:
        t = update.transition
        row["refers_to"] = update.root["id"]
        row["lifecycle"] = t.lifecycle
        if update.basis is not None:
            row["decision"]["basis"] = update.basis
        result = await runtime.store.accept_update(
            row,
            topic,
            expected_version=int(update.root["version"]),
            from_states=t.from_states,
            to_state=t.to_state,
            audit_event=t.audit_event,
            audit_detail={k: v for k, v in update.facts.items() if k in AUDITED_FACTS},
            pseudonyms=pseudonyms,
        )
        if not result.stored and result.existing is None:
            return None
        existing = result.existing
        row["version"] = int(update.root["version"]) + 1
    if existing is not None:  # a concurrent request with the same key won the race
        INTAKE.labels(message_type=mt.name, outcome="replayed").inc()
        return replayed(existing, request)
    INTAKE.labels(message_type=mt.name, outcome="accepted").inc()
    if wake is not None:
        wake()
    tracing.annotate(
        {
            "isa.message.id": message_id,
            "isa.message.type": mt.name,
            "isa.lifecycle": row.get("lifecycle") or ORIGINAL,
            "isa.sender": sender,
            "isa.recipients": len(decision.recipients),
            "isa.intake.outcome": "accepted",
        }
    )
    log.info(
        "accepted message_id=%s type=%s lifecycle=%s sender=%s recipients=%d",
        message_id,
        mt.name,
        row.get("lifecycle") or ORIGINAL,
        sender,
        len(decision.recipients),
    )
    return Accepted.from_row(row)
