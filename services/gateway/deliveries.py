"""What an agency has been sent, and its controls over it:

* ``GET /v1/deliveries`` and ``GET /v1/deliveries/{id}``: every delivery to the caller with
  its status and attempt history;
* ``GET /v1/dead-letters`` and the replay calls: deliveries that exhausted their retries (or
  whose subscription was disabled), queued again on request. A replay is a new disclosure:
  the agreements in force when it is attempted are checked again;
* ``GET /v1/inbox`` and ``POST /v1/inbox/ack``: the pull channel, for agencies that cannot
  receive webhooks, with long-polling and a per-client acknowledged cursor. Notices about
  the caller's subscriptions and messages (e.g. an endpoint disabled) arrive here too.

An agency only ever sees its own: another agency's ids answer 404."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.core.errors import Conflict, InvalidRequest, NotFound

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["deliveries"])

DeliveryStatus = Literal[
    "pending", "retrying", "delivered", "dead_lettered", "withheld", "no_channel"
]
#: Ids are uuid4 strings (messages, subscriptions) or ``msg_`` and hex (deliveries).
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
DeliveryId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)]
#: Cursors, like every integer the store keeps, fit a signed 64-bit column.
MAX_CURSOR = 2**63 - 1
NOT_YOURS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such delivery of the caller's"}
}


class Attempt(BaseModel):
    at: dt.datetime
    status_code: int | None = Field(description="HTTP status of the answer; null if none")
    error: str | None
    duration_ms: float


class DeliveryPublic(BaseModel):
    id: str = Field(description="Stable delivery id, sent as the webhook-id header")
    message_id: str
    message_type: str | None
    subscription_id: str | None
    channel: str
    status: DeliveryStatus
    fields: list[str] = Field(description="Names of the fields disclosed (or to be)")
    attempts: int
    last_status_code: int | None
    last_error: str | None = Field(description="Last failure, or why it was withheld")
    next_attempt_at: dt.datetime | None = Field(description="When pending or retrying")
    created_at: dt.datetime
    updated_at: dt.datetime


class DeliveryDetail(DeliveryPublic):
    history: list[Attempt] = Field(description="Every attempt, oldest first")


def _public(row: dict[str, Any]) -> DeliveryPublic:
    values = {k: row.get(k) for k in DeliveryPublic.model_fields}
    if row["status"] not in ("pending", "retrying"):
        values["next_attempt_at"] = None
    return DeliveryPublic(**values)


def _detail(row: dict[str, Any], attempts: list[dict[str, Any]]) -> DeliveryDetail:
    return DeliveryDetail(
        **_public(row).model_dump(),
        history=[Attempt(**{k: a[k] for k in Attempt.model_fields}) for a in attempts],
    )


@router.get(
    "/v1/deliveries",
    response_model=list[DeliveryPublic],
    dependencies=[needs_scope("deliveries:read")],
)
async def list_deliveries(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    status: DeliveryStatus | None = None,
    subscription_id: IdQuery = None,
    message_id: IdQuery = None,
    since: Annotated[AwareDatetime | None, Query(description="updated at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="updated before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryPublic]:
    """Deliveries of messages to the calling agency, oldest first."""
    rows = await runtime.store.list_deliveries(
        recipient=agency.party,
        status=status,
        subscription_id=subscription_id,
        message_id=message_id,
        since=since,
        until=until,
        limit=limit,
    )
    return [_public(r) for r in rows]


class LaneLatency(BaseModel):
    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


class DeliveryLatency(BaseModel):
    since: dt.datetime | None
    until: dt.datetime | None
    received: dict[str, LaneLatency] = Field(
        description="Deliveries to the caller, per lane: delivered_at - accepted_at"
    )
    sent: dict[str, LaneLatency] = Field(
        description="Deliveries of the caller's messages to any recipient, per lane"
    )


# declared before /v1/deliveries/{delivery_id}, which would otherwise take "latency" as an id
@router.get(
    "/v1/deliveries/latency",
    response_model=DeliveryLatency,
    dependencies=[needs_scope("deliveries:read")],
)
async def delivery_latency(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    since: Annotated[AwareDatetime | None, Query(description="delivered at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="delivered before")] = None,
) -> DeliveryLatency:
    """How long deliveries took, from acceptance at the gateway to the successful attempt,
    per lane: ``priority`` (licence recalls of people unlawfully at large) and ``normal``.
    Counts and milliseconds only."""
    store = runtime.store
    received = await store.delivery_latency_by_lane(since, until, recipient=agency.party)
    sent = await store.delivery_latency_by_lane(since, until, sender=agency.party)
    return DeliveryLatency(
        since=since,
        until=until,
        received={k: LaneLatency.model_validate(v) for k, v in received.items()},
        sent={k: LaneLatency.model_validate(v) for k, v in sent.items()},
    )


@router.get(
    "/v1/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses=NOT_YOURS,
    dependencies=[needs_scope("deliveries:read")],
)
async def get_delivery(
    delivery_id: DeliveryId, runtime: RuntimeDep, agency: CurrentAgency
) -> DeliveryDetail:
    """One delivery with its full attempt history."""
    row = await runtime.store.get_delivery(delivery_id)
    if row is None or row["recipient"] != agency.party:
        raise NotFound(f"no delivery {delivery_id!r}")
    return _detail(row, await runtime.store.attempts(delivery_id))


@router.get(
    "/v1/dead-letters",
    response_model=list[DeliveryDetail],
    dependencies=[needs_scope("deliveries:read")],
)
async def list_dead_letters(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    subscription_id: IdQuery = None,
    since: Annotated[AwareDatetime | None, Query(description="dead-lettered at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="dead-lettered before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryDetail]:
    """Deliveries to the caller that were dead-lettered, each with its attempt history and
    the reason (``last_error``)."""
    rows = await runtime.store.list_deliveries(
        recipient=agency.party,
        status="dead_lettered",
        subscription_id=subscription_id,
        since=since,
        until=until,
        limit=limit,
    )
    history = await runtime.store.attempts_of([r["id"] for r in rows])
    return [_detail(r, history.get(r["id"], [])) for r in rows]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)] | None
    ) = None
    since: AwareDatetime | None = Field(default=None, description="dead-lettered at or after")
    until: AwareDatetime | None = Field(default=None, description="dead-lettered before")

    @model_validator(mode="after")
    def _some_selection(self) -> ReplayRequest:
        if self.subscription_id is None and self.since is None and self.until is None:
            raise ValueError("name a subscription_id, a time range (since/until), or both")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class Replayed(BaseModel):
    replayed: list[str] = Field(description="Ids of the deliveries queued again")


@router.post(
    "/v1/dead-letters/{delivery_id}/replay",
    status_code=202,
    response_model=Replayed,
    responses={**NOT_YOURS, 409: {"description": "Not dead-lettered, or subscription disabled"}},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def replay_one(
    delivery_id: DeliveryId, runtime: RuntimeDep, agency: CurrentAgency
) -> Replayed:
    """Queue one dead-lettered delivery again with a fresh retry schedule."""
    row = await runtime.store.get_delivery(delivery_id)
    if row is None or row["recipient"] != agency.party:
        raise NotFound(f"no delivery {delivery_id!r}")
    if row["status"] != "dead_lettered":
        raise Conflict(f"delivery {delivery_id!r} is {row['status']}, not dead_lettered")
    ids = await runtime.store.replay(agency.party, runtime.clock(), delivery_id=delivery_id)
    if not ids:
        raise Conflict(
            f"the subscription of delivery {delivery_id!r} is not active: enable it first "
            "(POST /v1/subscriptions/{id}/enable)"
        )
    return Replayed(replayed=ids)


@router.post(
    "/v1/dead-letters/replay",
    status_code=202,
    response_model=Replayed,
    dependencies=[needs_scope("subscriptions:manage")],
)
async def replay_many(body: ReplayRequest, runtime: RuntimeDep, agency: CurrentAgency) -> Replayed:
    """Queue again the caller's dead letters of a subscription, of a time range, or both.
    Dead letters of subscriptions that are not active are left as they are."""
    if body.subscription_id is not None:
        subs = {s["id"] for s in await runtime.store.list_subscriptions(agency.party)}
        if body.subscription_id not in subs:
            raise NotFound(f"no subscription {body.subscription_id!r}")
    ids = await runtime.store.replay(
        agency.party,
        runtime.clock(),
        subscription_id=body.subscription_id,
        since=body.since,
        until=body.until,
    )
    return Replayed(replayed=ids)


# -- inbox ---------------------------------------------------------------------------------------


class InboxEntry(BaseModel):
    cursor: int = Field(description="Position in the caller's inbox; acknowledge up to it")
    kind: Literal["message", "notice"]
    delivery_id: str | None = Field(description="For a message: its stable delivery id")
    event: dict[str, Any] = Field(description="The structured CloudEvent, as a webhook body")


class InboxPage(BaseModel):
    entries: list[InboxEntry]
    next_cursor: int = Field(description="Pass as `after` to read on; acknowledge it when done")
    acknowledged: int = Field(description="This client's acknowledged cursor")


class InboxAck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cursor: int = Field(
        ge=0, le=MAX_CURSOR, description="Everything up to and including it is processed"
    )


class InboxAcked(BaseModel):
    previous: int
    acknowledged: int


@router.get(
    "/v1/inbox", response_model=InboxPage, tags=["inbox"], dependencies=[needs_scope("inbox:read")]
)
async def read_inbox(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_CURSOR, description="Entries after this cursor; default: acknowledged"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=120,
            allow_inf_nan=False,
            description="Seconds to wait for an entry when there is none (at most the "
            "configured maximum, 30 by default)",
        ),
    ] = 0,
) -> InboxPage:
    """Messages delivered to the caller's ``inbox`` subscriptions (the same projection and
    disclosure-log entry as a webhook) and notices for the caller, after a cursor. Needs the
    scope ``inbox:read``."""
    store = runtime.store
    kinds = ("message", "notice")
    acked = await store.inbox_cursor(agency.client_id)
    start = acked if after is None else after
    wait = min(wait, runtime.settings.http.inbox_max_wait_seconds)
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        rows = await store.inbox_after(agency.party, start, limit, kinds)
        if rows or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.2)
    entries = [
        InboxEntry(
            cursor=r["seq"],
            kind=r["kind"],
            delivery_id=r["delivery_id"],
            event=json.loads(r["body"]),
        )
        for r in rows
    ]
    return InboxPage(
        entries=entries,
        next_cursor=entries[-1].cursor if entries else start,
        acknowledged=acked,
    )


@router.post(
    "/v1/inbox/ack",
    response_model=InboxAcked,
    tags=["inbox"],
    dependencies=[needs_scope("inbox:ack")],
)
async def ack_inbox(body: InboxAck, runtime: RuntimeDep, agency: CurrentAgency) -> InboxAcked:
    """Acknowledge every entry up to ``cursor``: this client's next ``GET /v1/inbox`` without
    ``after`` starts after it. The cursor never moves back; acknowledging is recorded in the
    disclosure log. Needs the scope ``inbox:ack``."""
    moved = await runtime.store.ack_inbox(agency.party, agency.client_id, body.cursor)
    if moved is None:
        raise InvalidRequest(f"cursor {body.cursor} is beyond the newest entry of your inbox")
    return InboxAcked(previous=moved[0], acknowledged=moved[1])
