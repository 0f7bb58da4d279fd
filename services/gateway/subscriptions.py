"""Subscriptions (``/v1/subscriptions``): how an agency receives what the agreements let it
receive, by signed webhook, by pulling its inbox, or from its own Kafka topic. An agency only
ever sees its own: another agency's ids answer 404.

Webhooks are signed per Standard Webhooks (:mod:`services.core.webhooks.signing`) with the
subscription's ``signature_scheme``: ``v1`` (HMAC-SHA256; the ``whsec_`` secret is shown once,
at creation or rotation) or ``v1a`` (ed25519; the broker keeps the ``whsk_`` secret key and
shows only the ``whpk_`` public key, readable at any time)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import Response

from services.core.errors import EncryptionKeyRequired, NotFound, Unavailable, ValidationFailed
from services.core.runtime import Runtime
from services.core.timeliness.filters import (
    MAX_COHORT,
    CohortChange,
    SubscriptionFilters,
    check_filters,
)
from services.core.webhooks import signing
from services.core.webhooks.signing import SignatureScheme
from services.core.webhooks.urls import UrlPolicy, check_webhook_url

from .deps import CurrentAgency, RuntimeDep, needs_scope
from .subscription_models import (
    CohortChanged,
    CohortPublic,
    KafkaCredential,
    SecretRotation,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    SubscriptionSecretRotated,
    SubscriptionUpdate,
    Webhook,
)

log = logging.getLogger("isa_broker.subscriptions")

router = APIRouter(tags=["subscriptions"])

SubscriptionId = Annotated[str, Path(max_length=64)]


def _public(row: dict[str, Any], runtime: Runtime) -> SubscriptionPublic:
    channel = row["channel"]
    scheme: SignatureScheme | None = None
    public_key = previous_until = None
    if channel == "webhook":
        scheme = "v1a" if row.get("signature_scheme") == "v1a" else "v1"
        at_rest = runtime.signing_keys_at_rest
        secret = at_rest.open_(str(row["id"]), row["secret"])
        assert secret is not None  # noqa: S101 - a webhook subscription has a key
        if scheme == "v1a":
            public_key = signing.public_key(secret)
        until = row.get("previous_secret_until")
        previous = at_rest.open_(str(row["id"]), row.get("previous_secret"))
        keys = signing.active_keys(secret, previous, until, runtime.clock())
        previous_until = until if len(keys) > 1 else None
    return SubscriptionPublic(
        id=str(row["id"]),
        message_types=list(row["message_types"]),
        channel=channel,
        webhook=Webhook(url=str(row["url"])) if channel == "webhook" else None,
        kafka_topic=runtime.kafka.agency_topic(row["party"]) if channel == "kafka" else None,
        status=row["status"],
        status_reason=row.get("status_reason"),
        created_at=row["created_at"],
        signature_scheme=scheme,
        public_key=public_key,
        previous_secret_until=previous_until,
        filters=SubscriptionFilters.model_validate(row["filters"]) if row.get("filters") else None,
        encrypt=channel == "kafka" or bool(row.get("encrypt")),
    )


def _shown_once(secret: str | None) -> str | None:
    """The v1 secret, for the one response that may show it; a v1a secret key never leaves."""
    return secret if secret and signing.scheme_of(secret) == "v1" else None


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    dependencies=[needs_scope("subscriptions:manage")],
)
async def create_subscription(
    body: SubscriptionCreate, runtime: RuntimeDep, agency: CurrentAgency
) -> SubscriptionCreated:
    """Subscribe. A v1 webhook subscription's response carries its `whsec_` secret, shown
    only here; a v1a one's carries its `whpk_` public key (the secret key stays with the
    broker)."""
    webhook = body.webhook
    if webhook is not None:
        # https only in production; never loopback, private, link-local or metadata addresses
        # unless an operator allow-lists the network (422 webhook_url_refused says why)
        await check_webhook_url(webhook.url, UrlPolicy.from_settings(runtime.settings))
    check_filters(
        body.filters,
        runtime.engine.policies,
        agency.party,
        body.message_types,
        runtime.clock().date(),
    )
    encrypt = body.channel == "kafka" or body.encrypt
    if encrypt and await runtime.store.current_party_key(agency.party) is None:
        raise EncryptionKeyRequired(
            f"channel {body.channel!r}"
            + (" with encrypt" if body.channel == "webhook" else "")
            + f" delivers encrypted to {agency.party}'s public key, and none is registered: "
            "register one with POST /v1/encryption-keys first"
        )
    # the cluster lets the agency read its topic before the subscription exists; one that
    # refuses (503) leaves nothing stored
    credential = None
    if body.channel == "kafka":
        credential = await runtime.agency_access.grant(agency.party)
    sub_id = str(uuid.uuid4())
    secret = signing.new_signing_key(body.signature_scheme) if webhook else None
    row: dict[str, Any] = {
        "id": sub_id,
        "party": agency.party,
        "message_types": sorted(set(body.message_types)),
        "channel": body.channel,
        "url": webhook.url if webhook else None,
        # stored sealed (services.core.crypto.at_rest); shown in clear once, below
        "secret": runtime.signing_keys_at_rest.seal(sub_id, secret) if secret else None,
        "signature_scheme": body.signature_scheme,
        "created_at": runtime.clock(),
        "status": "active",
        "filters": body.filters.stored() if body.filters else None,
        "encrypt": encrypt,
    }
    await runtime.store.add_subscription(row)
    return SubscriptionCreated(
        **_public(row, runtime).model_dump(),
        secret=_shown_once(secret),
        kafka_credential=KafkaCredential.of(credential, runtime) if credential else None,
    )


@router.get(
    "/v1/subscriptions",
    response_model=list[SubscriptionPublic],
    dependencies=[needs_scope("subscriptions:manage")],
)
async def list_subscriptions(
    runtime: RuntimeDep, agency: CurrentAgency
) -> list[SubscriptionPublic]:
    rows = await runtime.store.list_subscriptions(agency.party)
    return [_public(r, runtime) for r in rows if r["status"] != "deleted"]


@router.post(
    "/v1/subscriptions/{subscription_id}/enable",
    response_model=SubscriptionPublic,
    responses={404: {"description": "No such subscription of the caller's"}},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def enable_subscription(
    subscription_id: SubscriptionId, runtime: RuntimeDep, agency: CurrentAgency
) -> SubscriptionPublic:
    """Re-enable a subscription disabled after a 410 Gone or a long run of failures. What it
    missed meanwhile is in the dead letters: replay them with
    ``POST /v1/dead-letters/replay``."""
    row = await runtime.store.enable_subscription(agency.party, subscription_id)
    if row is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return _public(row, runtime)


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    status_code=204,
    responses={404: {"description": "No such subscription of the caller's"}},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def delete_subscription(
    subscription_id: SubscriptionId, runtime: RuntimeDep, agency: CurrentAgency
) -> Response:
    row = await runtime.store.get_subscription(subscription_id)
    if not await runtime.store.delete_subscription(agency.party, subscription_id):
        raise NotFound(f"no subscription {subscription_id!r}")
    if row is not None and row["channel"] == "kafka":
        # its last kafka subscription gone, the agency's principal and ACLs go too; if the
        # cluster cannot be reached now, the next start-up's reconciliation removes them
        try:
            await runtime.agency_access.sync(agency.party)
        except Unavailable as e:
            log.error("Kafka access of %s not yet revoked: %s", agency.party, e)
    return Response(status_code=204)


@router.post(
    "/v1/kafka-credential",
    response_model=KafkaCredential,
    responses={409: {"description": "The party has no kafka subscription"}},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def issue_kafka_credential(runtime: RuntimeDep, agency: CurrentAgency) -> KafkaCredential:
    """A new credential for the agency's Kafka principal, shown once; the previous password
    stops working at once (connections already open keep their session until they close)."""
    return KafkaCredential.of(await runtime.agency_access.issue(agency.party), runtime)


@router.post(
    "/v1/subscriptions/{subscription_id}/rotate-secret",
    response_model=SubscriptionSecretRotated,
    responses={404: {"description": "No such webhook subscription of the caller's"}},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def rotate_subscription_secret(
    subscription_id: SubscriptionId,
    runtime: RuntimeDep,
    agency: CurrentAgency,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> SubscriptionSecretRotated:
    """Give a webhook subscription a new signing key of its scheme: a v1 response carries the
    new `whsec_` secret (shown only here), a v1a one the new `whpk_` public key.

    The previous key is not dropped at once: for `overlap_seconds` (default the broker's
    `webhook_secret_overlap_seconds`, 24 h) every delivery carries two signatures in its
    `webhook-signature` header, one by the new key and one by the previous, so the receiver
    can switch to the new key at its own pace (Standard Webhooks, Webhook headers). Until then
    `previous_secret_until` says when the previous key stops signing. Rotating again during an
    overlap drops the oldest key at once. Inbox and Kafka subscriptions have no key: 404."""
    overlap = runtime.settings.webhooks.secret_overlap_seconds
    if body is not None and body.overlap_seconds is not None:
        overlap = body.overlap_seconds
    current = await runtime.store.get_subscription(subscription_id)
    scheme: SignatureScheme = (
        "v1a" if current is not None and current.get("signature_scheme") == "v1a" else "v1"
    )
    secret = signing.new_signing_key(scheme)
    row = await runtime.store.rotate_subscription_secret(
        agency.party,
        subscription_id,
        runtime.signing_keys_at_rest.seal(subscription_id, secret),
        runtime.clock() + dt.timedelta(seconds=overlap),
    )
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id!r}")
    return SubscriptionSecretRotated(
        **_public(row, runtime).model_dump(), secret=_shown_once(secret)
    )


NOT_YOURS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such subscription of the caller's"},
    422: {"description": "Invalid body, or a filter that could never match (with the reason)"},
}


@router.patch(
    "/v1/subscriptions/{subscription_id}",
    response_model=SubscriptionPublic,
    responses=NOT_YOURS,
    dependencies=[needs_scope("subscriptions:manage")],
)
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionUpdate,
    runtime: RuntimeDep,
    agency: CurrentAgency,
) -> SubscriptionPublic:
    """Set or remove a subscription's filters. Filters only narrow what the agreements
    allow: a message reaches the subscription only if the agreements permit it AND it
    matches every filter, judged on the fields the caller would receive. A filter that could
    never match for the caller (a field the message type lacks, a message type no agreement
    in force sends it, a field no flow discloses to it) is refused with the reason."""
    current = await runtime.store.get_subscription(subscription_id)
    if current is None or current["party"] != agency.party or current["status"] == "deleted":
        raise NotFound(f"no subscription {subscription_id!r}")
    check_filters(
        body.filters,
        runtime.engine.policies,
        agency.party,
        current["message_types"],
        runtime.clock().date(),
    )
    row = await runtime.store.set_subscription_filters(
        agency.party, subscription_id, body.filters.stored() if body.filters else None
    )
    if row is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return _public(row, runtime)


def _handle(runtime: Runtime, subscription_id: str, person: str) -> str:
    """A subscription's own handle for a cohort member: never the pseudonym messages carry."""
    return "cm_" + runtime.keys.pseudonymise(f"cohort|{subscription_id}|{person}")[4:]


@router.put(
    "/v1/subscriptions/{subscription_id}/cohort",
    response_model=CohortChanged,
    responses=NOT_YOURS,
    dependencies=[needs_scope("subscriptions:manage")],
)
async def change_cohort(
    subscription_id: SubscriptionId,
    body: CohortChange,
    runtime: RuntimeDep,
    agency: CurrentAgency,
) -> CohortChanged:
    """Add people to, or remove them from, the subscription's cohort watch-list (used by the
    `cohort` filter). Give every identifier you hold for a person: a message matches if it
    carries any identifier in the list that the caller may see. Identifiers are kept only as
    keyed pseudonyms, never in clear; removals apply first, then additions."""
    pseudonymise = runtime.keys.pseudonymise
    add = sorted({pseudonymise(k) for m in body.add for k in m.identifiers()})
    remove = sorted({pseudonymise(k) for m in body.remove for k in m.identifiers()})
    try:
        counts = await runtime.store.change_cohort(
            agency.party, subscription_id, add, remove, runtime.clock(), MAX_COHORT
        )
    except ValueError as e:
        raise ValidationFailed(
            f"cohort too large: {e}",
            [{"pointer": "/add", "code": "too_long", "message": str(e)}],
        ) from e
    if counts is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return CohortChanged(subscription_id=subscription_id, **counts)


@router.get(
    "/v1/subscriptions/{subscription_id}/cohort",
    response_model=CohortPublic,
    responses={404: NOT_YOURS[404]},
    dependencies=[needs_scope("subscriptions:manage")],
)
async def get_cohort(
    subscription_id: SubscriptionId, runtime: RuntimeDep, agency: CurrentAgency
) -> CohortPublic:
    """How many identifiers the cohort holds, each as an opaque handle."""
    members = await runtime.store.cohort_of(agency.party, subscription_id)
    if members is None:
        raise NotFound(f"no subscription {subscription_id!r}")
    return CohortPublic(
        subscription_id=subscription_id,
        total=len(members),
        members=sorted(_handle(runtime, subscription_id, p) for p in members),
    )
