"""Acknowledgement duties and DIP breach deadlines:

* ``GET /v1/duties``: the caller's duties as recipient (default), as sender
  (``role=sender``) or as an escalation party (``role=escalation``), by status; the
  ``overdue`` list is the open or escalated duties past due and not acknowledged;
* ``GET /v1/duties/{id}`` and ``POST /v1/duties/{id}/acknowledge``: a recipient acknowledges
  its own duty, optionally with an action code the agreement's flow allows. Acknowledging
  again answers 200 with the first acknowledgement, unchanged (idempotent); a cleared duty
  answers 409 ``duty_cleared``;
* ``GET /v1/dip-breaches``: the DIP breaches the caller sent or was permitted to receive,
  with their state, STL expiry, reminders sent and outcome.

Ids, dates, party ids and codes only: no personal data. Another agency's duty answers 404,
like one that does not exist."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.core.errors import ActionNotAllowed, DutyCleared, NotFound
from services.core.isa.model import agreement_ref
from services.core.timeliness import dip
from services.core.timeliness.duties import flow_of

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["duties"])

DutyId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
DutyStatus = Literal["open", "acknowledged", "escalated", "cleared"]
StatusFilter = Literal["open", "overdue", "acknowledged", "escalated", "cleared"]
NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"description": "No such duty of the caller's"}}


class DutyPublic(BaseModel):
    id: str
    message_id: str = Field(description="The original message (root of its lifecycle)")
    message_type: str
    sender: str
    recipient: str = Field(description="The party that must acknowledge")
    agreement: str = Field(description="agreement id@version")
    flow: str
    rule: str = Field(description="e.g. within PT24H; at least P1D before release.date")
    escalate_to: list[str]
    due_at: dt.datetime
    status: DutyStatus
    overdue: bool = Field(description="Past due and not acknowledged")
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None = Field(description="The client id that acknowledged")
    action: str | None
    late: bool | None = Field(description="Acknowledged after the due time")
    escalated_at: dt.datetime | None
    allowed_actions: list[str] = Field(description="Action codes the flow allows")


class DutyPage(BaseModel):
    duties: list[DutyPublic]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null: none")


class Acknowledgement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
        | None
    ) = Field(default=None, description="An action code the flow allows, e.g. victim_contacted")


class Reminder(BaseModel):
    days_before: int
    due_at: dt.datetime
    status: str = Field(description="pending | done | cancelled")
    sent: bool


class DipBreachPublic(BaseModel):
    id: str = Field(description="The breach message id")
    sender: str
    state: str = Field(description="open | closed | expired")
    stl_expiry: dt.date | None
    expires_at: dt.datetime | None = Field(description="When an open breach becomes expired")
    accepted_at: dt.datetime
    reminders: list[Reminder]
    reminders_sent: int
    outcome: str | None = Field(description="The outcome code, once recorded")


class DipBreachPage(BaseModel):
    breaches: list[DipBreachPublic]
    next_offset: int | None


def _allowed(runtime: Any, row: dict[str, Any]) -> list[str]:
    flow = flow_of(runtime.engine.policies, row["agreement"], row["flow"])
    return list(flow.duty.actions) if flow is not None and flow.duty is not None else []


def _public(runtime: Any, row: dict[str, Any], now: dt.datetime) -> DutyPublic:
    return DutyPublic(
        **{
            k: row[k]
            for k in DutyPublic.model_fields
            if k not in ("agreement", "overdue", "allowed_actions")
        },
        agreement=agreement_ref(row["agreement"], row["agreement_version"]),
        overdue=row["status"] in ("open", "escalated") and row["due_at"] <= now,
        allowed_actions=_allowed(runtime, row),
    )


@router.get("/v1/duties", response_model=DutyPage, dependencies=[needs_scope("duties:read")])
async def list_duties(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    role: Annotated[
        Literal["recipient", "sender", "escalation"],
        Query(
            description="The caller as the party that must acknowledge, the sender, or an "
            "escalation party"
        ),
    ] = "recipient",
    status: Annotated[
        StatusFilter | None,
        Query(description="overdue: open or escalated, past due and not acknowledged"),
    ] = None,
    message_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DutyPage:
    """The caller's duties, earliest due first."""
    now = runtime.clock()
    rows = await runtime.store.list_duties(
        agency.party,
        role=role,
        status=status,
        now=now,
        message_id=message_id,
        limit=limit + 1,
        offset=offset,
    )
    more = len(rows) > limit
    return DutyPage(
        duties=[_public(runtime, r, now) for r in rows[:limit]],
        next_offset=offset + limit if more else None,
    )


async def _own(runtime: Any, agency: Any, duty_id: str) -> dict[str, Any]:
    """A duty the caller holds, set as sender, or is an escalation party of; else 404."""
    row: dict[str, Any] | None = await runtime.store.get_duty(duty_id)
    if row is None or agency.party not in (
        row["recipient"],
        row["sender"],
        *(row["escalate_to"] or []),
    ):
        raise NotFound(f"no duty {duty_id!r}")
    return row


@router.get(
    "/v1/duties/{duty_id}",
    response_model=DutyPublic,
    responses=NOT_YOURS,
    dependencies=[needs_scope("duties:read")],
)
async def get_duty(duty_id: DutyId, runtime: RuntimeDep, agency: CurrentAgency) -> DutyPublic:
    """One duty, to its recipient, its sender or an escalation party."""
    return _public(runtime, await _own(runtime, agency, duty_id), runtime.clock())


@router.post(
    "/v1/duties/{duty_id}/acknowledge",
    response_model=DutyPublic,
    responses={
        **NOT_YOURS,
        409: {
            "description": "duty_cleared: the notice was cancelled or the party is no "
            "longer entitled"
        },
        422: {"description": "action_not_allowed: names the flow's allowed action codes"},
    },
    dependencies=[needs_scope("duties:ack")],
)
async def acknowledge(
    duty_id: DutyId,
    runtime: RuntimeDep,
    agency: CurrentAgency,
    body: Acknowledgement | None = None,
) -> DutyPublic:
    """Acknowledge one of the caller's own duties (only its recipient may), optionally
    with the action taken. Recorded with the time, the client id and whether it was late.
    Acknowledging again returns the first acknowledgement unchanged."""
    action = body.action if body is not None else None
    row = await runtime.store.get_duty(duty_id)
    if row is None or row["recipient"] != agency.party:
        raise NotFound(f"no duty {duty_id!r}")
    allowed = _allowed(runtime, row)
    if action is not None and action not in allowed and row["status"] != "acknowledged":
        where = f"{agreement_ref(row['agreement'], row['agreement_version'])} flow {row['flow']}"
        raise ActionNotAllowed(
            f"action {action!r} is not allowed by {where}; allowed: {allowed or 'none'}",
            allowed_actions=allowed,
        )
    now = runtime.clock()
    result = await runtime.store.acknowledge_duty(
        duty_id, agency.party, agency.client_id, action, now
    )
    if result is None:
        raise NotFound(f"no duty {duty_id!r}")
    outcome, duty = result
    if outcome == "cleared":
        raise DutyCleared(f"duty {duty_id!r} was cleared; there is nothing to acknowledge")
    return _public(runtime, duty, now)


@router.get(
    "/v1/dip-breaches", response_model=DipBreachPage, dependencies=[needs_scope("duties:read")]
)
async def list_dip_breaches(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    state: Annotated[Literal["open", "closed", "expired"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DipBreachPage:
    """DIP breaches the caller sent or was permitted to receive, oldest first: state, STL
    expiry, the reminders (sent or to come) and the outcome. No personal data."""
    rows = await runtime.store.dip_breaches_of(
        agency.party, state=state, limit=limit + 1, offset=offset
    )
    out = []
    for r in rows[:limit]:
        expiry = dip.stl_expiry(r["payload"])
        reminders = []
        expires_at = None
        for tmr in r["timers"]:
            if tmr["kind"] == dip.EXPIRY:
                expires_at = tmr["due_at"]
                continue
            reminders.append(
                Reminder(
                    days_before=int(tmr["kind"].split(":", 1)[1]),
                    due_at=tmr["due_at"],
                    status=tmr["status"],
                    sent=bool((tmr["detail"] or {}).get("sent")),
                )
            )
        outcome = r["payload"].get("breach", {}).get("outcome")
        for u in r["updates"]:
            if u["lifecycle"] == "outcome":
                outcome = (u["payload"] or {}).get("breach", {}).get("outcome") or outcome
        out.append(
            DipBreachPublic(
                id=r["id"],
                sender=r["sender"],
                state=r["state"] or ("closed" if outcome else "open"),
                stl_expiry=expiry,
                expires_at=expires_at,
                accepted_at=r["accepted_at"],
                reminders=reminders,
                reminders_sent=sum(1 for x in reminders if x.sent),
                outcome=outcome,
            )
        )
    return DipBreachPage(breaches=out, next_offset=offset + limit if len(rows) > limit else None)
