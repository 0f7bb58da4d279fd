"""``GET /v1/audit``: the disclosure log. Information governance officers (scope
``ig:audit``) read all of it; a client with ``audit:read`` reads the entries where its own
party acted or received, and nothing of any other agency's. Entries carry ids, pseudonyms and
field names, never personal data. Every read is itself logged."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.core.scopes import IG_AUDIT_SCOPE

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    seq: int = Field(description="Position in the log; pass as `after` to page on")
    at: dt.datetime
    event: str
    message_id: str | None
    message_type: str | None
    actor: str | None
    recipient: str | None
    person: str | None = Field(description="Keyed pseudonym of the person, never an identifier")
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after: int


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    dependencies=[needs_scope("audit:read", IG_AUDIT_SCOPE)],
)
async def read_audit(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    message_id: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    party = None if IG_AUDIT_SCOPE in agency.scopes else agency.party
    rows = await runtime.store.audit_entries(message_id, party=party, after=after, limit=limit)
    entries = [AuditEntry(**r) for r in rows]
    await runtime.store.audit(
        "audit_read",
        actor=agency.party,
        detail={
            "client_id": agency.client_id,
            "scope": "all" if party is None else "own",
            "after": after,
            "entries": len(entries),
        },
    )
    return AuditPage(entries=entries, next_after=entries[-1].seq if entries else after)
