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
from services.core.runtime import Runtime

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
    recipients: list[RecipientPublic]
    agreements: list[AgreementRef]
    not_applied: list[NotApplied] = Field(
        description="Candidate flows that shared nothing, and the rule that failed"
    )
    warnings: list[str] = Field(description="e.g. an agreement whose review date has passed")


def person_identifier(payload: dict[str, Any]) -> str:
    """The identifier events about one person are keyed by: PNC id, else probation CRN, else
    prison number. Only its keyed pseudonym ever leaves the store."""
    person = payload["person"]
    for name in ("pnc_id", "crn", "prison_number"):
        if person.get(name):
            return f"{name}:{person[name]}"
    raise InvalidRequest("person has no identifier")  # the schema already requires one


def accepted_body(message_id: str, decision: Decision, payload: dict[str, Any]) -> MessageAccepted:
    return MessageAccepted(
        id=message_id,
        message_type=decision.message_type,
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
    )


async def accept(
    runtime: Runtime,
    relay: Any,
    agency: Any,
    mt: MessageType,
    body: bytes,
    purposes: list[str] | None,
    idempotency_key: str | None,
) -> JSONResponse:
    payload = mt.validate_json(body)
    request_hash = hashlib.sha256(
        json.dumps([mt.name, sorted(purposes or []), payload], sort_keys=True).encode()
    ).hexdigest()
    if idempotency_key is not None:
        ttl = dt.timedelta(hours=runtime.settings.idempotency_key_ttl_hours)
        await runtime.store.release_idempotency_key(
            agency.client_id, idempotency_key, runtime.clock() - ttl
        )
        existing = await runtime.store.find_idempotent(agency.client_id, idempotency_key)
        if existing is not None:
            return _replayed(existing, request_hash)
    now = runtime.clock()
    person = runtime.keys.pseudonymise(person_identifier(payload))
    try:
        decision = runtime.engine.decide(agency.party, mt.name, now, purposes, payload)
    except SharingRefused as e:
        await runtime.store.audit(
            "refused",
            message_type=mt.name,
            actor=agency.party,
            person=person,
            detail={"client_id": agency.client_id, "reason": e.reason, "purposes": purposes or []},
        )
        raise
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
        "request_hash": request_hash,
    }
    existing = await runtime.store.accept_message(row, runtime.kafka.topic(mt.name))
    if existing is not None:  # a concurrent request with the same key won the race
        return _replayed(existing, request_hash)
    if relay is not None:
        relay.notify()
    log.info(
        "accepted message_id=%s type=%s sender=%s recipients=%d",
        message_id,
        mt.name,
        agency.party,
        len(decision.recipients),
    )
    body_out = accepted_body(message_id, decision, payload)
    return JSONResponse(body_out.model_dump(), status_code=202)


def _replayed(existing: dict[str, Any], request_hash: str) -> JSONResponse:
    if existing["request_hash"] != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key"
        )
    decision = Decision.from_dict(existing["decision"])
    body = accepted_body(existing["id"], decision, existing["payload"])
    return JSONResponse(
        body.model_dump(),
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
