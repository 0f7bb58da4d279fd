"""Message intake: ``POST /v1/messages/{message_type}``.

Size, media type, nesting depth and JSON well-formedness of the body are checked by the
request-limits middleware (:mod:`.limits`) before a route runs; here the body is validated
against its message type's model."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from services.core.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    SharingRefused,
    UnknownMessageType,
)
from services.core.isa.engine import Decision
from services.core.messages import MESSAGE_TYPES, MessageType, get_message_type
from services.core.messages.person import identifier_keys, person_key
from services.core.runtime import Runtime
from services.core.timeliness.lifecycle import ORIGINAL, Transition, initial_state, own_version
from services.core.timeliness.notice import timeliness_of
from services.core.timeliness.priority import priority_of

from .deps import CurrentAgency, RelayDep, RuntimeDep, needs_scope

log = logging.getLogger("isa_broker.gateway")


class AgreementRef(BaseModel):
    id: str
    version: str


class Withheld(BaseModel):
    agreement: str
    version: str
    rule: str = Field(description="The flow (prohibition) or hard block that removed the fields")
    kind: str = Field(description="prohibited | hard_block")
    fields: list[str]
    reason: str


class RecipientPublic(BaseModel):
    party: str
    fields: list[str] = Field(description="Dotted paths of the fields this recipient receives")
    agreements: list[AgreementRef]
    purposes: list[str]
    grants: list[dict[str, Any]] = Field(
        description="Each agreement, version and flow that permits fields, with those fields"
    )
    withheld: list[Withheld] = Field(description="Prohibitions and hard blocks that applied")


class NotApplied(BaseModel):
    agreement: str
    version: str
    flow: str
    recipient: str | None
    outcome: str = Field(
        description="not_in_force | condition_false | condition_error | all_fields_blocked"
    )
    detail: str


class MessageAccepted(BaseModel):
    id: str
    status: str = "accepted"
    message_type: str
    lifecycle: str = Field(
        "original", description="original | amended | cancelled | released | outcome"
    )
    refers_to: str | None = Field(None, description="An update's original (root) message id")
    version: int = Field(1, description="1 for an original; each update the next number")
    recipients: list[RecipientPublic]
    agreements: list[AgreementRef]
    not_applied: list[NotApplied] = Field(
        description="Candidate flows that shared nothing, and the rule that failed"
    )
    warnings: list[str] = Field(description="e.g. an agreement whose review date has passed")
    timeliness: dict[str, Any] | None = Field(
        None,
        description="Release notices: notice_days, days_early, short_notice, "
        "short_notice_threshold_days (see the notice period in the integrators' guide)",
    )


def person_identifier(payload: dict[str, Any]) -> str:
    """The identifier events about one person are keyed by: PNC id, else probation CRN, else
    prison number. Only its keyed pseudonym ever leaves the store."""
    key = person_key(payload["person"])
    if key is None:
        raise InvalidRequest("person has no identifier")  # the schema already requires one
    return key


def accepted_body(message: dict[str, Any]) -> MessageAccepted:
    """The 202 answer for a stored message row (fresh, or replayed for an Idempotency-Key)."""
    decision = Decision.from_dict(message["decision"])
    payload = message["payload"]
    return MessageAccepted(
        id=message["id"],
        message_type=decision.message_type,
        lifecycle=message.get("lifecycle") or ORIGINAL,
        refers_to=message.get("refers_to"),
        version=own_version(message),
        recipients=[
            RecipientPublic(
                party=r.party,
                fields=r.disclosed(payload),
                agreements=[
                    AgreementRef(id=a, version=v)
                    for a, v in sorted({(g.agreement_id, g.agreement_version) for g in r.grants})
                ],
                purposes=sorted({g.purpose for g in r.grants}),
                grants=[g.to_dict() for g in r.grants],
                withheld=[Withheld(**b.to_dict()) for b in r.blocks],
            )
            for r in decision.recipients
        ],
        agreements=[AgreementRef(**a) for a in decision.agreements],
        not_applied=[NotApplied(**c.to_dict()) for c in decision.considered],
        warnings=list(decision.warnings),
        timeliness=message.get("timeliness"),
    )


@dataclass(frozen=True)
class Update:
    """What makes a message an update (see :mod:`services.core.timeliness.lifecycle`): the
    root as it was read, the transition, a decision when it is built rather than decided (a
    cancellation's, with each party's basis version), and lifecycle facts for its timeliness
    (a cancellation's reason, the time of release, an outcome's date)."""

    root: dict[str, Any]
    transition: Transition
    decision: Decision | None = None
    basis: dict[str, str] | None = None
    facts: dict[str, Any] = dc_field(default_factory=dict)


def request_hash(*parts: Any) -> str:
    """What an Idempotency-Key stands for: the same key with another request is a 409."""
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()


async def replay_if_seen(
    runtime: Runtime, agency: Any, idempotency_key: str | None, request: str
) -> JSONResponse | None:
    """The original 202 when this client already used ``idempotency_key`` (and it has not
    expired); a 409 when it used it for another request; None when it is new."""
    if idempotency_key is None:
        return None
    ttl = dt.timedelta(hours=runtime.settings.idempotency_key_ttl_hours)
    await runtime.store.release_idempotency_key(
        agency.client_id, idempotency_key, runtime.clock() - ttl
    )
    existing = await runtime.store.find_idempotent(agency.client_id, idempotency_key)
    return None if existing is None else _replayed(existing, request)


async def accept(
    runtime: Runtime,
    relay: Any,
    agency: Any,
    mt: MessageType,
    body: bytes,
    purposes: list[str] | None,
    idempotency_key: str | None,
) -> JSONResponse:
    """Intake of an original message."""
    payload = mt.validate_json(body)
    request = request_hash(mt.name, sorted(purposes or []), payload)
    replayed = await replay_if_seen(runtime, agency, idempotency_key, request)
    if replayed is not None:
        return replayed
    accepted = await store_message(
        runtime, relay, agency, mt, payload, purposes, idempotency_key, request
    )
    assert accepted is not None  # noqa: S101 - only an update can find its root moved on
    return accepted


async def store_message(
    runtime: Runtime,
    relay: Any,
    agency: Any,
    mt: MessageType,
    payload: dict[str, Any],
    purposes: list[str] | None,
    idempotency_key: str | None,
    request: str,
    update: Update | None = None,
) -> JSONResponse | None:
    """Decide, store (with its outbox row, so that it is published and routed like any
    message) and answer 202: an original, or an ``update`` to a root message. An update
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
            decision = runtime.engine.decide(agency.party, mt.name, now, purposes, payload)
        except SharingRefused as e:
            await runtime.store.audit(
                "refused",
                message_type=mt.name,
                actor=agency.party,
                person=person,
                message_id=update.root["id"] if update is not None else None,
                detail={
                    "client_id": agency.client_id,
                    "reason": e.reason,
                    "purposes": purposes or [],
                },
            )
            raise
    # every identifier of the person, so that subject access finds the message by any of them
    pseudonyms = [runtime.keys.pseudonymise(k) for k in identifier_keys(payload.get("person", {}))]
    timeliness = timeliness_of(mt.name, payload, now, runtime.settings.short_notice_days)
    if update is not None and update.facts:
        timeliness = {**(timeliness or {}), **update.facts}
    message_id = str(uuid.uuid4())
    row = {
        "id": message_id,
        "message_type": mt.name,
        "sender": agency.party,
        "client_id": agency.client_id,
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
        return _replayed(existing, request)
    if relay is not None:
        relay.notify()
    log.info(
        "accepted message_id=%s type=%s lifecycle=%s sender=%s recipients=%d",
        message_id,
        mt.name,
        row.get("lifecycle") or ORIGINAL,
        agency.party,
        len(decision.recipients),
    )
    return JSONResponse(accepted_body(row).model_dump(mode="json"), status_code=202)


#: lifecycle facts that are enumerations or dates, fit for the disclosure log
AUDITED_FACTS = frozenset({"reason", "outcome", "outcome_date"})


def _replayed(existing: dict[str, Any], request: str) -> JSONResponse:
    if existing["request_hash"] != request:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key"
        )
    return JSONResponse(
        accepted_body(existing).model_dump(mode="json"),
        status_code=202,
        headers={"Idempotent-Replayed": "true"},
    )


router = APIRouter(tags=["messages"])

#: As the agreements spell purpose ids (the ``slug`` of isa-agreement.schema.json).
PurposeId = Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z][a-z0-9-]{1,62}$")]
PurposeQuery = Annotated[
    list[PurposeId] | None,
    Query(
        alias="purpose",
        description="Purpose(s) of this share, repeatable. Omitted: every purpose the sender's "
        "agreements in force cover.",
        max_length=10,
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat a request safely: same key and body "
        "returns the original response; same key with another body is a 409. "
        "1 to 200 printable ASCII characters.",
        min_length=1,
        max_length=200,
        pattern=r"^[\x20-\x7e]+$",
    ),
]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "JSON nested deeper than the limit"},
    401: {"description": "No valid access token"},
    403: {"description": "Token lacks the scope, or no agreement permits the share"},
    409: {"description": "Idempotency-Key reused with a different body"},
    413: {"description": "Body too large"},
    415: {"description": "Content-Type is not application/json"},
    422: {"description": "Body is not valid JSON, or does not match the message type's schema"},
    429: {"description": "Too many requests from this client; see Retry-After"},
}


def _make_route(mt: MessageType) -> None:
    async def publish(
        request: Request,
        runtime: RuntimeDep,
        relay: RelayDep,
        agency: CurrentAgency,
        purpose: PurposeQuery = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        body = await request.body()
        return await accept(runtime, relay, agency, mt, body, purpose, idempotency_key)

    publish.__name__ = f"publish_{mt.name.replace('-', '_')}"
    router.add_api_route(
        f"/v1/messages/{mt.name}",
        publish,
        methods=["POST"],
        status_code=202,
        response_model=MessageAccepted,
        responses=_RESPONSES,
        dependencies=[needs_scope(f"publish:{mt.name}")],
        summary=f"Publish a {mt.model.model_config.get('title', mt.name)}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{mt.model.__name__}"}
                    }
                },
            }
        },
    )


for _mt in MESSAGE_TYPES.values():
    _make_route(_mt)


@router.post("/v1/messages/{message_type}", status_code=404, include_in_schema=False)
async def unknown_type(message_type: Annotated[str, Path(max_length=100)]) -> None:
    get_message_type(message_type)
    raise UnknownMessageType(f"unknown message type {message_type!r}")  # pragma: no cover
