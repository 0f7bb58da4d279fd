"""Subject access and IG queries on the disclosure log, for information governance officers
only (scope ``ig:audit``; ``audit:read`` is not enough).

``POST /v1/audit/subject-access`` takes the person's identifiers in the body - never in a URL,
which would end up in access logs - and answers every disclosure about them.
``GET /v1/audit/disclosures`` lists disclosures by agreement, party and period, a page at a
time. Both answer JSON, or CSV with ``format=csv`` or ``Accept: text/csv``. Every call is
itself logged (see :mod:`services.core.audit.subject_access`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field

from services.core.audit.subject_access import (
    Disclosure,
    disclosures,
    subject_access,
    to_csv,
)
from services.core.errors import ValidationFailed
from services.core.messages.models import PersonIdentifiers
from services.core.scopes import IG_AUDIT_SCOPE
from services.core.store.subject_access import DisclosureQuery

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["audit"])

CSV = "text/csv"
FormatQuery = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="json (default) or csv; or send Accept: text/csv"),
]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False, max_length=1000)]

_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV: {"schema": {"type": "string"}}},
        "description": "JSON, or CSV (a header row, one line per disclosure) as an attachment",
    },
    403: {"description": "The token lacks the scope ig:audit"},
    422: {"description": "A parameter or identifier is invalid; the problem names it"},
}


class SubjectAccessRequest(PersonIdentifiers):
    """The person, by one or more of their identifiers (give every one known: a message is
    found if it carried any of them)."""


class SubjectAccessReport(BaseModel):
    persons: list[str] = Field(description="Keyed pseudonyms of the identifiers searched")
    disclosures: list[Disclosure]


class DisclosurePage(BaseModel):
    disclosures: list[Disclosure]
    next_after: int = Field(description="Pass as `after` for the next page")


def _wants_csv(fmt: str | None, accept: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return accept is not None and CSV in accept and "application/json" not in accept


def _attachment(lines: list[Disclosure], name: str) -> Response:
    return Response(
        to_csv(lines),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.post(
    "/v1/audit/subject-access",
    response_model=SubjectAccessReport,
    responses=_CSV_RESPONSE,
    dependencies=[needs_scope(IG_AUDIT_SCOPE)],
    summary="Every disclosure about one person (subject access request)",
)
async def search_subject_access(
    body: SubjectAccessRequest,
    runtime: RuntimeDep,
    agency: CurrentAgency,
    fmt: FormatQuery = None,
    accept: AcceptHeader = None,
) -> Any:
    lines = await subject_access(
        runtime.store,
        runtime.keys.pseudonymise,
        runtime.engine.policies,
        body,
        actor=agency.party,
        client_id=agency.client_id,
    )
    if _wants_csv(fmt, accept):
        return _attachment(lines, "subject-access")
    persons = sorted({runtime.keys.pseudonymise(k) for k in body.identifiers()})
    return SubjectAccessReport(persons=persons, disclosures=lines)


@router.get(
    "/v1/audit/disclosures",
    response_model=DisclosurePage,
    responses=_CSV_RESPONSE,
    dependencies=[needs_scope(IG_AUDIT_SCOPE)],
    summary="Disclosures by agreement, party and period (IG query)",
)
async def list_disclosures(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    agreement: Annotated[
        str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Agreement id")
    ] = None,
    version: Annotated[
        str | None,
        Query(max_length=16, pattern=r"^[A-Za-z0-9._-]+$", description="Agreement version"),
    ] = None,
    party: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="As sender or recipient"),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this time")] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    fmt: FormatQuery = None,
    accept: AcceptHeader = None,
) -> Any:
    if version is not None and agreement is None:
        raise ValidationFailed(
            "invalid request: query/version needs query/agreement",
            [{"pointer": "/version", "in": "query", "message": "give agreement with version"}],
        )
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            "invalid request: query/until must be after query/since",
            [{"pointer": "/until", "in": "query", "message": "must be after since"}],
        )
    lines, next_after = await disclosures(
        runtime.store,
        runtime.engine.policies,
        DisclosureQuery(agreement, version, party, since, until),
        actor=agency.party,
        client_id=agency.client_id,
        after=after,
        limit=limit,
    )
    if _wants_csv(fmt, accept):
        response = _attachment(lines, "disclosures")
        response.headers["X-Next-After"] = str(next_after)
        return response
    return DisclosurePage(disclosures=lines, next_after=next_after)
