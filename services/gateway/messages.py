"""Message intake: ``POST /v1/messages/{message_type}``.

Size, media type, nesting depth and JSON well-formedness of the body are checked by the
request-limits middleware (:mod:`.limits`) before a route runs. The route only translates:
the request into one call of the intake use-case, :func:`services.core.intake.accept` (which
validates the body against its message type's model, decides under the agreements and stores
it; its steps are in :mod:`services.core.intake`), and its :class:`Accepted` into the 202
:class:`MessageAccepted` (``Idempotent-Replayed: true`` when it answers again a request made
under the same Idempotency-Key). Errors are core errors, rendered as problem+json by
:mod:`.problems`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StringConstraints

from services.core import intake
from services.core.errors import UnknownMessageType
from services.core.intake import Accepted
from services.core.messages import MESSAGE_TYPES, MessageType, get_message_type

from .deps import CurrentAgency, RuntimeDep, WakeDep, needs_scope


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


def accepted_body(accepted: Accepted) -> MessageAccepted:
    """The 202 answer's body for a message intake stored (or replayed)."""
    decision, payload = accepted.decision, accepted.payload
    return MessageAccepted(
        id=accepted.id,
        message_type=accepted.message_type,
        lifecycle=accepted.lifecycle,
        refers_to=accepted.refers_to,
        version=accepted.version,
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
        timeliness=dict(accepted.timeliness) if accepted.timeliness is not None else None,
    )


def accepted_response(accepted: Accepted) -> Response:
    """202 with :func:`accepted_body`; a replay for an Idempotency-Key says so in a header.
    Serialised by pydantic straight to JSON (not to a dict for ``json.dumps``): every
    accepted message is answered with it."""
    return Response(
        accepted_body(accepted).model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if accepted.replayed else None,
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
        wake: WakeDep,
        agency: CurrentAgency,
        purpose: PurposeQuery = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> Response:
        accepted = await intake.accept(
            runtime,
            agency.party,
            mt.name,
            await request.body(),
            client_id=agency.client_id,
            purposes=purpose,
            idempotency_key=idempotency_key,
            wake=wake,
        )
        return accepted_response(accepted)

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
