"""``GET /v1/reports/timeliness``: the partnership board's view of timeliness. A sender (scope
``reports:read``) sees the report of the messages it sent; an information governance officer
(``ig:audit``) sees the whole partnership's. Counts and durations only, no personal data."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from services.core.errors import InvalidRequest
from services.core.scopes import IG_AUDIT_SCOPE

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["reports"])


class Distribution(BaseModel):
    median: float | None
    min: float | None
    p10: float | None = Field(description="Tenth percentile")
    max: float | None


class ReleaseNotices(BaseModel):
    sent: int = Field(description="Original release notices accepted in the period")
    amended: int
    cancelled: int
    released: int = Field(description="Confirmed as released")
    short_notice: int = Field(description="Notice period under ISA_BROKER_SHORT_NOTICE_DAYS")
    notice_days: Distribution = Field(description="Days from notification to release date")
    early_releases: int = Field(description="Notices that carry a days-early figure")
    days_early: Distribution = Field(description="Days before the conditional release date")


class Duties(BaseModel):
    total: int
    acknowledged_on_time: int
    acknowledged_late: int
    missing: int = Field(description="Past due and never acknowledged")
    not_yet_due: int
    cleared: int = Field(description="Cleared because the notice was cancelled")
    escalations: int


class DipBreaches(BaseModel):
    total: int
    closed_before_stl: int = Field(description="An outcome was recorded before the STL")
    expired: int = Field(description="Reached the statutory time limit with no outcome")
    open: int
    reminders_sent: int


class LicenceRecalls(BaseModel):
    sent: int
    priority_lane: int = Field(description="Recalls of people unlawfully at large")


class Latency(BaseModel):
    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


class Lanes(BaseModel):
    priority: Latency
    normal: Latency


class TimelinessReport(BaseModel):
    as_at: dt.datetime
    since: dt.datetime | None
    until: dt.datetime | None
    scope: str = Field(description="all: the whole partnership; own: the caller's messages")
    release_notices: ReleaseNotices
    duties: Duties
    dip_breaches: DipBreaches
    licence_recalls: LicenceRecalls
    delivery_latency: Lanes = Field(
        description="Acceptance to delivery of delivered messages, priority lane and the rest"
    )


@router.get(
    "/v1/reports/timeliness",
    response_model=TimelinessReport,
    dependencies=[needs_scope("reports:read", IG_AUDIT_SCOPE)],
    summary="Timeliness report: notice periods, acknowledgements, escalations, DIP deadlines",
)
async def timeliness_report(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    since: Annotated[AwareDatetime | None, Query(description="Messages accepted from")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Messages accepted before")] = None,
) -> TimelinessReport:
    if since and until and since >= until:
        raise InvalidRequest("since must be before until")
    everything = IG_AUDIT_SCOPE in agency.scopes
    report = await runtime.store.timeliness_report(
        runtime.clock(), since=since, until=until, sender=None if everything else agency.party
    )
    return TimelinessReport(scope="all" if everything else "own", **report)
