"""The lifecycle of a message over HTTP (domain rules in
:mod:`services.core.timeliness.lifecycle`):

* ``POST /v1/messages/{id}/amend``, ``/cancel``, ``/confirm-release`` (release notices) and
  ``/outcome`` (DIP breaches): the sender's updates, each a message of its own, stored,
  published and routed like any message, with Idempotency-Key as at intake;
* ``GET /v1/messages/{id}``: current state and history, to the sender (full payloads) and to
  each entitled recipient (its own projection of each version it was entitled to);
* ``GET /v1/messages``: the sender's own messages, for its dashboard.

Another agency's id answers 404, worded exactly as an id that does not exist."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core.errors import ConcurrentUpdate, NotFound, ValidationFailed
from services.core.messages import get_message_type
from services.core.messages.models import BreachOutcome
from services.core.messages.person import IDENTIFIERS
from services.core.runtime import Runtime
from services.core.timeliness.lifecycle import (
    AMEND,
    CANCEL,
    CONFIRM_RELEASE,
    ORIGINAL,
    OUTCOME,
    CancelReason,
    Transition,
    cancellation_decision,
    check_transition,
    own_version,
    recheck_shares,
    seen_by,
)

from .deps import CurrentAgency, RelayDep, RuntimeDep, needs_scope
from .messages import (
    IdempotencyHeader,
    MessageAccepted,
    Update,
    replay_if_seen,
    request_hash,
    store_message,
)

router = APIRouter(tags=["lifecycle"])

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
MessageId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]
#: how far ahead of the broker's clock a reported time of release may be (clock skew)
CLOCK_SKEW = dt.timedelta(minutes=5)
#: attempts when another update moves the root on between reading and storing
ATTEMPTS = 3

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


async def _resolve(runtime: Runtime, message_id: str) -> dict[str, Any] | None:
    """The root of the chain ``message_id`` belongs to (itself, or what it refers to)."""
    row = await runtime.store.get_message(message_id)
    if row is not None and row.get("refers_to"):
        row = await runtime.store.get_message(row["refers_to"])
    return row


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no message {message_id!r}")


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
    root = await _resolve(runtime, message_id)
    if root is None:
        raise _not_found(message_id)
    chain = await runtime.store.lifecycle_chain(root["id"])
    if root["sender"] == agency.party:
        role: Literal["sender", "recipient"] = "sender"
        history = [_version(v, v["timeliness"], v["payload"]) for v in chain]
    else:
        role = "recipient"
        history = await _recipient_history(runtime, agency.party, chain)
        if not history:
            raise _not_found(message_id)
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
        current, bases = await recheck_shares(runtime.engine, runtime.store, v, now, only=party)
        shown = {**v, **seen_by(v, bases.get(party))}
        permitted = current.get(party, f"no agreement in force now shares with {party}")
        if isinstance(permitted, str):
            # the notice period would tell the release date: withheld with the payload
            out.append(_version(v, None, None, withheld=permitted))
        else:
            out.append(_version(v, shown["timeliness"], permitted.project(shown["payload"])))
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


async def _update(
    runtime: Runtime,
    relay: Any,
    agency: Any,
    message_id: str,
    transition: Transition,
    request: dict[str, Any] | bytes,
    idempotency_key: str | None,
) -> JSONResponse:
    """The steps every update shares: replay a repeated Idempotency-Key; find the caller's
    root message (404 otherwise); check its type and state (409); build the new version's
    payload (422 when invalid); store it with the root's new state in one transaction,
    reading the chain again if another update won a race."""
    mt = get_message_type(transition.message_type)
    raw = request.decode(errors="replace") if isinstance(request, bytes) else request
    req_hash = request_hash(transition.lifecycle, message_id, raw)
    replayed = await replay_if_seen(runtime, agency, idempotency_key, req_hash)
    if replayed is not None:
        return replayed
    for _ in range(ATTEMPTS):
        root = await _resolve(runtime, message_id)
        if root is None or root["sender"] != agency.party:
            raise _not_found(message_id)
        check_transition(transition, root)
        chain = await runtime.store.lifecycle_chain(root["id"])
        update = _prepare(runtime, transition, root, chain, request)
        payload = _payload(mt, transition, chain, request)
        if transition is AMEND:
            _same_person(chain[-1]["payload"], payload)
        answer = await store_message(
            runtime,
            relay,
            agency,
            mt,
            payload,
            root.get("purposes"),
            idempotency_key,
            req_hash,
            update,
        )
        if answer is not None:
            return answer
    raise ConcurrentUpdate(
        f"message {message_id!r} was updated by other requests at the same time; try again"
    )


def _prepare(
    runtime: Runtime,
    transition: Transition,
    root: dict[str, Any],
    chain: list[dict[str, Any]],
    request: dict[str, Any] | bytes,
) -> Update:
    if transition is CANCEL:
        assert isinstance(request, dict)  # noqa: S101
        decision, basis = cancellation_decision(chain, runtime.clock())
        return Update(root, transition, decision, basis, {"reason": request["reason"]})
    if transition is CONFIRM_RELEASE:
        assert isinstance(request, dict)  # noqa: S101
        released_at = dt.datetime.fromisoformat(request["released_at"])
        if released_at > runtime.clock() + CLOCK_SKEW:
            raise ValidationFailed(
                "released_at is in the future",
                [{"pointer": "/released_at", "message": "must not be in the future"}],
            )
        return Update(root, transition, facts={"released_at": released_at.isoformat()})
    if transition is OUTCOME:
        assert isinstance(request, dict)  # noqa: S101
        when = dt.date.fromisoformat(request["date"])
        if when > runtime.clock().date():
            raise ValidationFailed(
                "date is in the future",
                [{"pointer": "/date", "message": "must not be in the future"}],
            )
        stl = dt.date.fromisoformat(str(chain[-1]["payload"]["breach"]["stl_expiry"]))
        facts = {
            "outcome": request["outcome"],
            "outcome_date": when.isoformat(),
            "within_stl": when <= stl,
        }
        return Update(root, transition, facts=facts)
    return Update(root, transition)


def _payload(
    mt: Any, transition: Transition, chain: list[dict[str, Any]], request: dict[str, Any] | bytes
) -> dict[str, Any]:
    """The new version's payload: an amendment's body (validated like intake); the latest
    state for a cancellation or a release confirmation; the breach with its outcome set."""
    if isinstance(request, bytes):
        payload: dict[str, Any] = mt.validate_json(request)
        return payload
    latest: dict[str, Any] = json.loads(json.dumps(chain[-1]["payload"]))
    if transition is OUTCOME:
        latest["breach"]["outcome"] = request["outcome"]
        checked: dict[str, Any] = mt.validate_json(json.dumps(latest).encode())
        return checked
    return latest


def _same_person(before: dict[str, Any], after: dict[str, Any]) -> None:
    """An amendment changes the notice, not whom it is about: every identifier given in both
    must be equal, and at least one must be given in both."""
    shared = [n for n in IDENTIFIERS if before["person"].get(n) and after["person"].get(n)]
    differing = [n for n in shared if before["person"][n] != after["person"][n]]
    if differing or not shared:
        names = differing or list(IDENTIFIERS)
        raise ValidationFailed(
            "an amendment must be about the same person as the notice it amends",
            [
                {"pointer": f"/person/{n}", "message": "must match the notice being amended"}
                for n in names
            ],
        )


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
    relay: RelayDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    """A new version of a release notice, decided afresh: each recipient the new state
    entitles receives its own projection of it."""
    body = await request.body()
    return await _update(runtime, relay, agency, message_id, AMEND, body, idempotency_key)


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
    relay: RelayDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    """Reaches every party any earlier version reached, each shown only the version it was
    entitled to, re-checked against the agreements in force (fail closed)."""
    return await _update(
        runtime, relay, agency, message_id, CANCEL, body.model_dump(mode="json"), idempotency_key
    )


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
    relay: RelayDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    return await _update(
        runtime,
        relay,
        agency,
        message_id,
        CONFIRM_RELEASE,
        body.model_dump(mode="json"),
        idempotency_key,
    )


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
    relay: RelayDep,
    agency: CurrentAgency,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    return await _update(
        runtime, relay, agency, message_id, OUTCOME, body.model_dump(mode="json"), idempotency_key
    )
