"""Webhook subscriptions (``/v1/subscriptions``) and the caller's deliveries
(``/v1/deliveries``). An agency only ever sees its own: another agency's ids answer 404."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.core.crypto.keys import new_webhook_secret
from services.core.errors import InvalidRequest, NotFound
from services.core.messages import MESSAGE_TYPES

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


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_types: list[MessageTypeName] = Field(min_length=1, max_length=len(MESSAGE_TYPES))
    webhook: Webhook


class SubscriptionPublic(BaseModel):
    id: str
    message_types: list[str]
    webhook: Webhook
    status: str
    created_at: dt.datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="Standard Webhooks signing secret, shown only once")


class DeliveryPublic(BaseModel):
    id: str
    message_id: str
    subscription_id: str | None
    channel: str
    status: str
    fields: list[str]
    attempts: int
    last_status_code: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


router = APIRouter(tags=["subscriptions"])

SubscriptionId = Annotated[str, Path(max_length=64)]


def _public(row: dict[str, object]) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=str(row["id"]),
        message_types=list(row["message_types"]),  # type: ignore[call-overload]
        webhook=Webhook(url=str(row["url"])),
        status=str(row["status"]),
        created_at=row["created_at"],
    )


@router.post("/v1/subscriptions", status_code=201, response_model=SubscriptionCreated)
async def create_subscription(
    body: SubscriptionCreate, runtime: RuntimeDep, agency: CurrentAgency
) -> SubscriptionCreated:
    require_scope(agency, "subscriptions:manage")
    if urlsplit(body.webhook.url).scheme != "https" and not runtime.settings.webhook_allow_http:
        raise InvalidRequest("webhook.url must use https (plain http is allowed in dev mode only)")
    row = {
        "id": str(uuid.uuid4()),
        "party": agency.party,
        "message_types": sorted(set(body.message_types)),
        "url": body.webhook.url,
        "secret": new_webhook_secret(),
        "created_at": runtime.clock(),
        "status": "active",
    }
    await runtime.store.add_subscription(row)
    return SubscriptionCreated(**_public(row).model_dump(), secret=str(row["secret"]))


@router.get("/v1/subscriptions", response_model=list[SubscriptionPublic])
async def list_subscriptions(
    runtime: RuntimeDep, agency: CurrentAgency
) -> list[SubscriptionPublic]:
    require_scope(agency, "subscriptions:manage")
    rows = await runtime.store.list_subscriptions(agency.party)
    return [_public(r) for r in rows if r["status"] != "deleted"]


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


@router.get("/v1/deliveries", response_model=list[DeliveryPublic], tags=["deliveries"])
async def list_deliveries(runtime: RuntimeDep, agency: CurrentAgency) -> list[DeliveryPublic]:
    """Deliveries of messages to the calling agency, oldest first."""
    require_scope(agency, "deliveries:read")
    rows = await runtime.store.list_deliveries(recipient=agency.party)
    return [DeliveryPublic(**{k: r[k] for k in DeliveryPublic.model_fields}) for r in rows]
