"""``GET /v1/retention/due``: delivered disclosures past their retention, notified or not,
and those for which no agreement declared a retention period, for information governance
officers only (scope ``ig:audit``). Ids, dates and agreement references, never personal
data (see :mod:`services.core.retention`). Every read is itself logged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from services.core.retention import disclosure_view
from services.core.scopes import IG_AUDIT_SCOPE

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["retention"])


class RetainedDisclosure(BaseModel):
    delivery_id: str
    recipient: str
    message_id: str
    message_type: str
    agreements: list[str] = Field(description="id@version of the agreements that granted it")
    delivered_at: AwareDatetime | None
    retention: str | None = Field(
        description="ISO 8601 period that holds longest among the granting agreements; "
        "null when none declares one for the recipient"
    )
    retain_until: AwareDatetime | None = Field(
        description="delivered_at plus that period (calendar years and months)"
    )
    deletion_notified_at: AwareDatetime | None = Field(
        description="When the recipient was sent a deletion notice; null if not yet"
    )


class RetentionDue(BaseModel):
    as_of: AwareDatetime
    due: list[RetainedDisclosure] = Field(
        description="Delivered disclosures whose retain_until is at or before as_of"
    )
    no_retention_declared: list[RetainedDisclosure] = Field(
        description="Delivered disclosures for which no granting agreement declares a "
        "retention period for the recipient: the agreements need correcting"
    )


@router.get(
    "/v1/retention/due",
    response_model=RetentionDue,
    dependencies=[needs_scope(IG_AUDIT_SCOPE)],
    responses={
        403: {"description": "The token lacks the scope ig:audit"},
        422: {"description": "A parameter is invalid; the problem names it"},
    },
)
async def retention_due(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    as_of: Annotated[
        AwareDatetime | None, Query(description="Date-time with offset; default: now")
    ] = None,
    party: Annotated[
        str | None, Query(max_length=64, description="Only deliveries to this recipient")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most this many of each")] = 1000,
) -> RetentionDue:
    when = as_of or runtime.clock()
    store = runtime.store
    due = await store.retention_due(when, party=party, limit=limit)
    undeclared = await store.retention_undeclared(party=party, limit=limit)
    await store.audit(
        "retention_read",
        actor=agency.party,
        detail={
            "client_id": agency.client_id,
            "as_of": when.isoformat(),
            "party": party,
            "due": len(due),
            "no_retention_declared": len(undeclared),
        },
    )

    def view(row: dict[str, Any]) -> RetainedDisclosure:
        return RetainedDisclosure(**disclosure_view(row))

    return RetentionDue(
        as_of=when,
        due=[view(r) for r in due],
        no_retention_declared=[view(r) for r in undeclared],
    )
