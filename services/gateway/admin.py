"""Operator endpoints (``/v1/admin``, scope ``admin``, never granted by default): register,
list, disable and enable OAuth clients; see and rotate the token-signing keys and the
delivery-signing keys. Each change is in the disclosure log with the operator's client id."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.core.clients import auth_method, create_client, set_client_disabled
from services.core.crypto.signing_keys import SigningKeys
from services.core.errors import NotFound
from services.core.scopes import ADMIN_SCOPE, ALL_SCOPES

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["admin"])

ClientId = Annotated[str, Path(max_length=64)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such client"}}


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    party: str = Field(max_length=64, description="A party of the register (parties.yaml)")
    scopes: list[str] | None = Field(
        default=None,
        max_length=len(ALL_SCOPES),
        description="Default: what the agreements let the party do (least privilege)",
    )
    jwks: dict[str, Any] | None = Field(
        default=None, description="Public JWK set: the client authenticates by private_key_jwt"
    )
    external_subject: str | None = Field(
        default=None,
        max_length=255,
        description="The client's id at the external OpenID Connect provider",
    )


class ClientPublic(BaseModel):
    client_id: str
    party: str
    scopes: list[str]
    token_endpoint_auth_method: Literal["client_secret_basic", "private_key_jwt", "external_oidc"]
    external_subject: str | None = None
    disabled: bool
    created_at: dt.datetime


class ClientCreated(BaseModel):
    client_id: str
    party: str
    scopes: list[str]
    token_endpoint_auth_method: str
    client_secret: str | None = Field(default=None, description="Shown once")
    token_endpoint: str | None = None
    external_subject: str | None = None
    issuer: str | None = None


class SigningKeyPublic(BaseModel):
    kid: str
    thumbprint: str = Field(
        description="RFC 7638 SHA-256 thumbprint of the public key, to compare out of band"
    )
    state: Literal["next", "active", "retired"]
    created_at: dt.datetime
    activates_at: dt.datetime
    retires_at: dt.datetime | None
    withdrawn_at: dt.datetime | None = Field(
        description="When the key leaves its JWKS: the tokens it signed have all expired, or "
        "(delivery-signing keys) the delivery grace is over"
    )


class RotateSigningKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    publish_ahead_seconds: int | None = Field(
        default=None,
        ge=0,
        le=7 * 86400,
        description="How long the next key is published before it signs. Default: "
        "ISA_BROKER_SIGNING_KEY_PUBLISH_AHEAD_SECONDS. 0 after a suspected key compromise.",
    )


def _public(row: dict[str, Any]) -> ClientPublic:
    return ClientPublic(
        client_id=row["client_id"],
        party=row["party"],
        scopes=list(row["scopes"]),
        token_endpoint_auth_method=auth_method(row),
        external_subject=row.get("external_subject"),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


@router.get(
    "/v1/admin/clients", response_model=list[ClientPublic], dependencies=[needs_scope(ADMIN_SCOPE)]
)
async def list_clients(runtime: RuntimeDep, agency: CurrentAgency) -> list[ClientPublic]:
    return [_public(r) for r in await runtime.store.list_clients()]


@router.post(
    "/v1/admin/clients",
    status_code=201,
    response_model=ClientCreated,
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def register_client(
    body: ClientCreate, runtime: RuntimeDep, agency: CurrentAgency
) -> ClientCreated:
    created = await create_client(
        runtime,
        body.party,
        scopes=body.scopes,
        jwks=body.jwks,
        external_subject=body.external_subject,
    )
    await runtime.store.audit(
        "admin_client_registered",
        actor=agency.party,
        detail={"by_client": agency.client_id, "client_id": created["client_id"]},
    )
    return ClientCreated(**created)


async def _set_disabled(
    runtime: RuntimeDep, agency: CurrentAgency, client_id: str, disabled: bool
) -> ClientPublic:
    row = await set_client_disabled(runtime, client_id, disabled, actor=agency.party)
    if row is None:
        raise NotFound(f"no client {client_id!r}")
    return _public(row)


@router.post(
    "/v1/admin/clients/{client_id}/disable",
    response_model=ClientPublic,
    responses=NOT_FOUND,
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def disable_client(
    client_id: ClientId, runtime: RuntimeDep, agency: CurrentAgency
) -> ClientPublic:
    """The client can get no new token at once; tokens it holds stop working within
    seconds (each gateway re-reads client status at most every 10 s)."""
    return await _set_disabled(runtime, agency, client_id, True)


@router.post(
    "/v1/admin/clients/{client_id}/enable",
    response_model=ClientPublic,
    responses=NOT_FOUND,
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def enable_client(
    client_id: ClientId, runtime: RuntimeDep, agency: CurrentAgency
) -> ClientPublic:
    return await _set_disabled(runtime, agency, client_id, False)


def _keys(runtime: RuntimeDep) -> list[SigningKeyPublic]:
    return [SigningKeyPublic(**k) for k in runtime.keys.signing.describe(runtime.clock())]


@router.get(
    "/v1/admin/signing-keys",
    response_model=list[SigningKeyPublic],
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def list_signing_keys(runtime: RuntimeDep, agency: CurrentAgency) -> list[SigningKeyPublic]:
    return _keys(runtime)


@router.post(
    "/v1/admin/signing-keys/rotate",
    response_model=list[SigningKeyPublic],
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def rotate_signing_key(
    runtime: RuntimeDep, agency: CurrentAgency, body: RotateSigningKey | None = None
) -> list[SigningKeyPublic]:
    """Publish a next token-signing key now; it signs from ``publish_ahead_seconds`` on, and
    the current key stays published until every token it signed has expired. A rotation
    already waiting is returned unchanged."""
    await _rotate(runtime, agency, runtime.keys.signing, body, "signing_key_rotated")
    return _keys(runtime)


async def _rotate(
    runtime: RuntimeDep,
    agency: CurrentAgency,
    keys: SigningKeys,
    body: RotateSigningKey | None,
    event: str,
) -> None:
    """Rotate ``keys`` (a waiting rotation is kept) and log it as ``event``."""
    ahead = body.publish_ahead_seconds if body else None
    now = runtime.clock()
    keys.active(now)  # a key to retire, rather than none
    key = keys.rotate(now, dt.timedelta(seconds=ahead) if ahead is not None else None)
    await runtime.store.audit(
        event, actor=agency.party, detail={"by_client": agency.client_id, "kid": key.kid}
    )


def _delivery_keys(runtime: RuntimeDep) -> list[SigningKeyPublic]:
    return [SigningKeyPublic(**k) for k in runtime.keys.delivery_signing.describe(runtime.clock())]


@router.get(
    "/v1/admin/delivery-signing-keys",
    response_model=list[SigningKeyPublic],
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def list_delivery_signing_keys(
    runtime: RuntimeDep, agency: CurrentAgency
) -> list[SigningKeyPublic]:
    """The keys published at ``/.well-known/delivery-signing-keys.json``, with their
    thumbprints (give these to agencies out of band, for them to pin)."""
    return _delivery_keys(runtime)


@router.post(
    "/v1/admin/delivery-signing-keys/rotate",
    response_model=list[SigningKeyPublic],
    dependencies=[needs_scope(ADMIN_SCOPE)],
)
async def rotate_delivery_signing_key(
    runtime: RuntimeDep, agency: CurrentAgency, body: RotateSigningKey | None = None
) -> list[SigningKeyPublic]:
    """Publish a next delivery-signing key now; the router signs with it from
    ``publish_ahead_seconds`` on, and the current key stays published for the delivery grace
    (``ISA_BROKER_DELIVERY_SIGNING_KEY_GRACE_DAYS``) after it retires, so that records it
    signed can still be verified. A rotation already waiting is returned unchanged."""
    await _rotate(
        runtime, agency, runtime.keys.delivery_signing, body, "delivery_signing_key_rotated"
    )
    return _delivery_keys(runtime)
