"""Subscriptions (``/v1/subscriptions``): how an agency receives what the agreements let it
receive, by signed webhook, by pulling its inbox, or from its own Kafka topic. An agency only
ever sees its own: another agency's ids answer 404."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.core.crypto.keys import new_webhook_secret
from services.core.errors import InvalidRequest, NotFound
from services.core.messages import MESSAGE_TYPES
from services.core.runtime import Runtime

from .deps import CurrentAgency, RuntimeDep, require_scope

MessageTypeName = Literal["release-notice", "licence-recall", "dip-breach"]
assert set(MessageTypeName.__args__) == set(MESSAGE_TYPES)  # type: ignore[attr-defined]  # noqa: S101


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, examples=["https://vawg.example/isa-webhook"])

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        if parts.fragment:
            raise ValueError("must not have a fragment")
        return v


Channel = Literal["webhook", "inbox", "kafka"]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_types: list[MessageTypeName] = Field(min_length=1, max_length=len(MESSAGE_TYPES))
    channel: Channel = Field(
        default="webhook",
        description="webhook: signed POSTs to `webhook.url`; inbox: pulled with "
        "GET /v1/inbox; kafka: published to the agency's own topic (`kafka_topic`).",
    )
    webhook: Webhook | None = Field(default=None, validate_default=True)

    @field_validator("webhook")
    @classmethod
    def _webhook_iff_channel(cls, v: Webhook | None, info: ValidationInfo) -> Webhook | None:
        channel = info.data.get("channel", "webhook")
        if channel == "webhook" and v is None:
            raise ValueError("is required when channel is 'webhook'")
        if channel != "webhook" and v is not None:
            raise ValueError(f"must be absent when channel is {channel!r}")
        return v


class SubscriptionPublic(BaseModel):
    id: str
    message_types: list[str]
    channel: Channel
    webhook: Webhook | None = None
    kafka_topic: str | None = Field(
        default=None, description="For channel kafka: the topic the agency consumes."
    )
    status: Literal["active", "disabled"]
    status_reason: str | None = Field(
        default=None, description="Why the subscription was disabled (410 Gone, failing too long)."
    )
    created_at: dt.datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str | None = Field(
        default=None, description="Standard Webhooks signing secret (webhook only), shown once"
    )


router = APIRouter(tags=["subscriptions"])

SubscriptionId = Annotated[str, Path(max_length=64)]


def _public(row: dict[str, Any], runtime: Runtime) -> SubscriptionPublic:
    channel = row["channel"]
    return SubscriptionPublic(
        id=str(row["id"]),
        message_types=list(row["message_types"]),
        channel=channel,
        webhook=Webhook(url=str(row["url"])) if channel == "webhook" else None,
        kafka_topic=runtime.kafka.agency_topic(row["party"]) if channel == "kafka" else None,
        status=row["status"],
        status_reason=row.get("status_reason"),
        created_at=row["created_at"],
    )


@router.post("/v1/subscriptions", status_code=201, response_model=SubscriptionCreated)
async def create_subscription(
    body: SubscriptionCreate, runtime: RuntimeDep, agency: CurrentAgency
) -> SubscriptionCreated:
    require_scope(agency, "subscriptions:manage")
    webhook = body.webhook
    if (
        webhook is not None
        and urlsplit(webhook.url).scheme != "https"
        and not runtime.settings.webhook_allow_http
    ):
        raise InvalidRequest("webhook.url must use https (plain http is allowed in dev mode only)")
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "party": agency.party,
        "message_types": sorted(set(body.message_types)),
        "channel": body.channel,
        "url": webhook.url if webhook else None,
        "secret": new_webhook_secret() if webhook else None,
        "created_at": runtime.clock(),
        "status": "active",
    }
    await runtime.store.add_subscription(row)
    return SubscriptionCreated(**_public(row, runtime).model_dump(), secret=row["secret"])


@router.get("/v1/subscriptions", response_model=list[SubscriptionPublic])
async def list_subscriptions(
    runtime: RuntimeDep, agency: CurrentAgency
) -> list[SubscriptionPublic]:
    require_scope(agency, "subscriptions:manage")
    rows = await runtime.store.list_subscriptions(agency.party)
    return [_public(r, runtime) for r in rows if r["status"] != "deleted"]


@router.post(
    "/v1/subscriptions/{subscription_id}/enable",
    response_model=SubscriptionPublic,
    responses={404: {"description": "No such subscription of the caller's"}},
)
async def enable_subscription(
    subscription_id: SubscriptionId, runtime: RuntimeDep, agency: CurrentAgency
) -> SubscriptionPublic:
    """Re-enable a subscription disabled after a 410 Gone or a long run of failures. What it
    missed meanwhile is in the dead letters: replay them with
    ``POST /v1/dead-letters/replay``."""
    require_scope(agency, "subscriptions:manage")
    row = await runtime.store.enable_subscription(agency.party, subscription_id)
    if row is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return _public(row, runtime)


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    status_code=204,
    responses={404: {"description": "No such subscription of the caller's"}},
)
async def delete_subscription(
    subscription_id: SubscriptionId, runtime: RuntimeDep, agency: CurrentAgency
) -> Response:
    require_scope(agency, "subscriptions:manage")
    if not await runtime.store.delete_subscription(agency.party, subscription_id):
        raise NotFound(f"no subscription {subscription_id!r}")
    return Response(status_code=204)
