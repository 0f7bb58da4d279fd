"""An agency's public encryption keys (``/v1/encryption-keys``): the keys deliveries to the
agency are encrypted to, as compact JWE (``ECDH-ES+A256KW`` with ``A256GCM``; see
:mod:`services.core.crypto.recipient`). Records on the agency's Kafka topic always are;
webhook bodies are when the subscription asked (``encrypt: true``).

Keys belong to the party, not to one client: any client of the party with
``subscriptions:manage`` may register or retire them, and sees only its own party's. The
newest key not retired is used from the moment it is registered, so rotating is: register
the new key, keep the old private key until every record sealed to it has been consumed, then
retire the old one. Public keys only: a key with a private member is refused."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.core.crypto import recipient
from services.core.errors import EncryptionKeyInUse, InvalidEncryptionKey, NotFound
from services.core.store.party_keys import KeyInUse

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["encryption keys"])

Kid = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"description": "No such key of the caller's"}}
MAX_KEYS = 20


class EncryptionKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jwk: dict[str, Any] = Field(
        description="The public key as a JWK (RFC 7517): kty EC, crv P-256, P-384 or P-521, "
        "x and y; optional kid (default: its RFC 7638 thumbprint), use (enc) and alg "
        f"({recipient.ALG}).",
        examples=[{"kty": "EC", "crv": "P-256", "x": "...", "y": "...", "kid": "vawg-2026-12"}],
    )


class EncryptionKeyPublic(BaseModel):
    kid: str
    thumbprint: str = Field(description="RFC 7638 SHA-256 thumbprint, to check out of band")
    jwk: dict[str, Any] = Field(description="The public key as registered (normalised)")
    created_at: dt.datetime
    created_by: str = Field(description="The client id that registered it")
    retired_at: dt.datetime | None
    current: bool = Field(description="Deliveries are encrypted to this key now")


def _public(row: dict[str, Any], current_kid: str | None) -> EncryptionKeyPublic:
    return EncryptionKeyPublic(
        kid=row["kid"],
        thumbprint=row["thumbprint"],
        jwk=row["jwk"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        retired_at=row["retired_at"],
        current=row["kid"] == current_kid,
    )


def _current(rows: list[dict[str, Any]]) -> str | None:
    return next((r["kid"] for r in rows if r["retired_at"] is None), None)


@router.post(
    "/v1/encryption-keys",
    status_code=201,
    response_model=EncryptionKeyPublic,
    dependencies=[needs_scope("subscriptions:manage")],
)
async def register_key(
    body: EncryptionKeyCreate, runtime: RuntimeDep, agency: CurrentAgency
) -> EncryptionKeyPublic:
    """Register a public encryption key. From now on, deliveries to the party are
    encrypted to it (it becomes the current key)."""
    try:
        jwk = recipient.public_jwk(body.jwk)
    except ValueError as e:
        raise InvalidEncryptionKey(str(e), field="jwk") from e
    existing = await runtime.store.party_keys(agency.party)
    if sum(1 for r in existing if r["retired_at"] is None) >= MAX_KEYS:
        raise InvalidEncryptionKey(
            f"the party holds {MAX_KEYS} keys not retired; retire one first", field="jwk"
        )
    try:
        row = await runtime.store.add_party_key(
            agency.party, jwk, recipient.thumbprint(jwk), agency.client_id, runtime.clock()
        )
    except ValueError as e:
        raise InvalidEncryptionKey(str(e), field="jwk.kid") from e
    return _public(row, row["kid"])


@router.get(
    "/v1/encryption-keys",
    response_model=list[EncryptionKeyPublic],
    dependencies=[needs_scope("subscriptions:manage")],
)
async def list_keys(runtime: RuntimeDep, agency: CurrentAgency) -> list[EncryptionKeyPublic]:
    """The party's keys, newest first; `current` marks the one deliveries use."""
    rows = await runtime.store.party_keys(agency.party)
    current = _current(rows)
    return [_public(r, current) for r in rows]


@router.delete(
    "/v1/encryption-keys/{kid}",
    response_model=EncryptionKeyPublic,
    dependencies=[needs_scope("subscriptions:manage")],
    responses={
        **NOT_YOURS,
        409: {"description": "encryption_key_in_use: the last key a subscription needs"},
    },
)
async def retire_key(kid: Kid, runtime: RuntimeDep, agency: CurrentAgency) -> EncryptionKeyPublic:
    """Retire a key: nothing new is encrypted to it (the next newest becomes current).
    Records already sealed to it stay as they are: keep its private half until they are
    consumed. The last key cannot be retired while a Kafka or encrypted-webhook
    subscription needs it (409 encryption_key_in_use)."""
    try:
        row = await runtime.store.retire_party_key(
            agency.party, kid, agency.client_id, runtime.clock()
        )
    except KeyInUse as e:
        raise EncryptionKeyInUse(
            f"key {kid!r} is the party's last key and a subscription delivers encrypted to "
            "it: register another key first, or delete those subscriptions"
        ) from e
    if row is None:
        raise NotFound(f"no encryption key {kid!r}")
    return _public(row, _current(await runtime.store.party_keys(agency.party)))
