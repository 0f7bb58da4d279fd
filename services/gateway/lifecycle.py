"""The lifecycle of a message over HTTP (domain rules in
:mod:`services.core.timeliness.lifecycle`):

* ``POST /v1/messages/{id}/amend``, ``/cancel``, ``/confirm-release`` (release notices) and
  ``/outcome`` (DIP breaches): the sender's updates, each a message of its own, stored,
  published and routed like any message, with Idempotency-Key as at intake;
* ``GET /v1/messages/{id}``: current state and history, to the sender (full payloads) and to
  each entitled recipient (its own projection of each version it was entitled to);
* ``GET /v1/messages``: the sender's own messages, for its dashboard.

Another agency's id answers 404, worded exactly as an id that does not exist. The update
routes only translate: the request into one call of its use-case in
:mod:`services.core.intake.updates` (which states the steps every update takes), and its
:class:`~services.core.intake.Accepted` into the 202 :class:`MessageAccepted`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core import intake
from services.core.intake import not_found, resolve_root
from services.core.messages.models import BreachOutcome
from services.core.runtime import Runtime
from services.core.timeliness.lifecycle import (
    ORIGINAL,
    CancelReason,
    own_version,
    shown_now,
)

from .deps import CurrentAgency, RuntimeDep, WakeDep, needs_scope
from .messages import IdempotencyHeader, MessageAccepted, accepted_response

router = APIRouter(tags=["lifecycle"])

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
MessageId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]

_UPDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid access token"},
    403: {"description": "Token lacks the scope, or no agreement permits the new state"},
    404: {"description": "No such message of the caller's"},
    409: {
        "description": "The message's type or state does not allow this update "
        "(not_a_release_notice, not_a_dip_breach, notice_cancelled, notice_released, "
        "breach_closed, breach_expired, concurrent_update), or the Idempotency-Key was used "
        "for another request"
    },
    422: {"description": "Body is not valid, or does not match its schema"},
    429: {"description": "Too many requests from this client; see Retry-After"},
}


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: CancelReason = Field(description="Why the release will not happen (no free text)")


class ConfirmReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    released_at: AwareDatetime = Field(description="When the person was released")


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: BreachOutcome
    date: dt.date = Field(description="The date of the outcome")


class VersionPublic(BaseModel):
    id: str
    lifecycle: str = Field(description="original | amended | cancelled | released | outcome")
    version: int
    accepted_at: dt.datetime
    timeliness: dict[str, Any] | None = Field(
        description="Notice period of this version; null when its payload is withheld"
    )
    payload: dict[str, Any] | None = Field(
        description="The sender: the full payload. A recipient: its own projection; null "
        "when the agreements now in force withhold it (see withheld)"
    )
    withheld: str | None = Field(None, description="Why a recipient's payload is withheld now")


class MessageStatePublic(BaseModel):
    id: str = Field(description="The original (root) message id")
    message_type: str
    role: Literal["sender", "recipient"]
    state: str | None = Field(
        description="release notice: notified | amended | cancelled | released; "
        "DIP breach: open | closed | expired; other types: null"
    )
    version: int = Field(description="The latest version")
    accepted_at: dt.datetime = Field(
        description="The sender: of the original. A recipient: of the first version shown to it"
    )
    timeliness: dict[str, Any] | None = Field(
        description="Notice period of that notification (null for a recipient when withheld)"
    )
    history: list[VersionPublic] = Field(
        description="Each version, oldest first (a recipient: those it was entitled to)"
    )


class MessageSummary(BaseModel):
    id: str
    message_type: str
    state: str | None
    version: int
    accepted_at: dt.datetime
    timeliness: dict[str, Any] | None


# -- reading -------------------------------------------------------------------------------


@router.get(
    "/v1/messages",
    response_model=list[MessageSummary],
    dependencies=[needs_scope("messages:read")],
)
async def list_messages(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    message_type: Annotated[
        Literal["release-notice", "licence-recall", "dip-breach"] | None, Query()
    ] = None,
    state: Annotated[
        Literal["notified", "amended", "cancelled", "released", "open", "closed", "expired"] | None,
        Query(),
    ] = None,
    short_notice: Annotated[
        bool | None, Query(description="Only release notices flagged (or not) short notice")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="accepted at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="accepted before")] = None,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=ID_PATTERN,
            description="The id of the last item of the previous page",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[MessageSummary]:
    """The caller's own original messages, oldest first, with their current state (the
    sender's dashboard). Updates appear in each message's history, not here."""
    rows = await runtime.store.list_root_messages(
        agency.party,
        message_type=message_type,
        state=state,
        short_notice=short_notice,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    return [MessageSummary(**{k: r[k] for k in MessageSummary.model_fields}) for r in rows]


@router.get(
    "/v1/messages/{message_id}",
    response_model=MessageStatePublic,
    responses={404: {"description": "No such message visible to the caller"}},
    dependencies=[needs_scope("messages:read")],
)
async def get_message_state(
    message_id: MessageId, runtime: RuntimeDep, agency: CurrentAgency
) -> MessageStatePublic:
    """The current state, version and history of a message (the original's id or any
    update's). The sender sees every version in full; a recipient sees the versions it was
    entitled to, each as its own projection, re-checked against the agreements now in force.
    Anyone else: 404."""
    root = await resolve_root(runtime, message_id)
    if root is None:
        raise not_found(message_id)
    chain = await runtime.store.lifecycle_chain(root["id"])
    if root["sender"] == agency.party:
        role: Literal["sender", "recipient"] = "sender"
        history = [_version(v, v["timeliness"], v["payload"]) for v in chain]
    else:
        role = "recipient"
        history = await _recipient_history(runtime, agency.party, chain)
        if not history:
            raise not_found(message_id)
    await runtime.store.audit(
        "message_read",
        message_id=root["id"],
        message_type=root["message_type"],
        actor=agency.party,
        detail={"client_id": agency.client_id, "role": role, "versions": [h.id for h in history]},
    )
    # a recipient is told the notification it was entitled to, not the original's (which
    # it may never have been shown, and whose notice period would tell the release date)
    accepted_at, timeliness = root["accepted_at"], root.get("timeliness")
    if role == "recipient":
        shown = next((h for h in history if h.withheld is None), None)
        accepted_at = shown.accepted_at if shown else history[0].accepted_at
        timeliness = shown.timeliness if shown else None
    return MessageStatePublic(
        id=root["id"],
        message_type=root["message_type"],
        role=role,
        state=root.get("state"),
        version=int(root.get("version") or 1),
        accepted_at=accepted_at,
        timeliness=timeliness,
        history=history,
    )


async def _recipient_history(
    runtime: Runtime, party: str, chain: list[dict[str, Any]]
) -> list[VersionPublic]:
    """The versions ``party`` has a delivery of (not withheld at routing), each projected
    for it as the dispatcher would now (a cancellation: from its basis version)."""
    statuses = await runtime.store.recipients_of([v["id"] for v in chain], party)
    now = runtime.clock()
    out: list[VersionPublic] = []
    for v in chain:
        if not any(s != "withheld" for s in statuses.get(v["id"], [])):
            continue
        shown = await shown_now(runtime.engine, runtime.store, v, party, now)
        if shown.withheld is not None:
            # the notice period would tell the release date: withheld with the payload
            out.append(_version(v, None, None, withheld=shown.withheld))
        else:
            out.append(_version(v, shown.timeliness, shown.projection()))
    return out


def _version(
    row: dict[str, Any],
    timeliness: dict[str, Any] | None,
    payload: dict[str, Any] | None,
    withheld: str | None = None,
) -> VersionPublic:
    return VersionPublic(
        id=row["id"],
        lifecycle=row.get("lifecycle") or ORIGINAL,
        version=own_version(row),
        accepted_at=row["accepted_at"],
        timeliness=timeliness,
        payload=payload,
        withheld=withheld,
    )


# -- updates -------------------------------------------------------------------------------


@router.post(
    "/v1/messages/{message_id}/amend",
    status_code=202,
    response_model=MessageAccepted,
    responses=_UPDATE_RESPONSES,
    dependencies=[needs_scope("publish:release-notice")],
    summary="Amend a release notice (the body is the complete new state)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ReleaseNotice"}}
            },
        }
    },
)
async def amend(
    message_id: MessageId,
    request: Request,
    runtime: RuntimeDep,
    wake: WakeDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """A new version of a release notice, decided afresh: each recipient the new state
    entitles receives its own projection of it."""
    accepted = await intake.amend(
        runtime,
        agency.party,
        message_id,
        await request.body(),
        client_id=agency.client_id,
        idempotency_key=idempotency_key,
        wake=wake,
    )
    return accepted_response(accepted)


@router.post(
    "/v1/messages/{message_id}/cancel",
    status_code=202,
    response_model=MessageAccepted,
    responses=_UPDATE_RESPONSES,
    dependencies=[needs_scope("publish:release-notice")],
    summary="Cancel a release notice",
)
async def cancel(
    message_id: MessageId,
    body: CancelRequest,
    runtime: RuntimeDep,
    wake: WakeDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Reaches every party any earlier version reached, each shown only the version it was
    entitled to, re-checked against the agreements in force (fail closed)."""
    accepted = await intake.cancel(
        runtime,
        agency.party,
        message_id,
        body.reason,
        client_id=agency.client_id,
        idempotency_key=idempotency_key,
        wake=wake,
    )
    return accepted_response(accepted)


@router.post(
    "/v1/messages/{message_id}/confirm-release",
    status_code=202,
    response_model=MessageAccepted,
    responses=_UPDATE_RESPONSES,
    dependencies=[needs_scope("publish:release-notice")],
    summary="Confirm that the person was released",
)
async def confirm_release(
    message_id: MessageId,
    body: ConfirmReleaseRequest,
    runtime: RuntimeDep,
    wake: WakeDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    accepted = await intake.confirm_release(
        runtime,
        agency.party,
        message_id,
        body.released_at,
        client_id=agency.client_id,
        idempotency_key=idempotency_key,
        wake=wake,
    )
    return accepted_response(accepted)


@router.post(
    "/v1/messages/{message_id}/outcome",
    status_code=202,
    response_model=MessageAccepted,
    responses={
        **_UPDATE_RESPONSES,
        409: {"description": "Not a DIP breach, or the breach is closed or expired"},
    },
    dependencies=[needs_scope("publish:dip-breach")],
    summary="Record the outcome of a DIP breach (closes it)",
)
async def outcome(
    message_id: MessageId,
    body: OutcomeRequest,
    runtime: RuntimeDep,
    wake: WakeDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    accepted = await intake.record_outcome(
        runtime,
        agency.party,
        message_id,
        body.outcome,
        body.date,
        client_id=agency.client_id,
        idempotency_key=idempotency_key,
        wake=wake,
    )
    return accepted_response(accepted)
