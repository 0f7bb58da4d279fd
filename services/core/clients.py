"""Registering agencies as OAuth clients."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .crypto.keys import hash_secret, new_client_secret
from .errors import InvalidRequest, Unavailable
from .runtime import Runtime
from .scopes import ALL_SCOPES, default_scopes

log = logging.getLogger("isa_broker.clients")


async def create_client(
    runtime: Runtime,
    party: str,
    *,
    scopes: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
    external_subject: str | None = None,
) -> dict[str, Any]:
    """Register a client for ``party``. With ``jwks`` the client authenticates by
    private_key_jwt and gets no secret; with ``external_subject`` it never calls our token
    endpoint but presents tokens from the external OpenID Connect provider whose subject claim
    is that value; otherwise a client secret is generated and returned once (only its hash is
    stored)."""
    if jwks is not None and external_subject is not None:
        raise InvalidRequest("give jwks or external_subject, not both")
    if external_subject is not None:
        if runtime.settings.oidc.issuer is None:
            raise InvalidRequest(
                "external_subject needs an external provider (ISA_BROKER_OIDC_ISSUER)"
            )
        if not 0 < len(external_subject) <= 255:
            raise InvalidRequest("external_subject must be 1 to 255 characters")
    if party not in runtime.engine.policies.parties:
        raise InvalidRequest(f"party {party!r} is not in the register of parties")
    granted = scopes if scopes is not None else default_scopes(runtime.engine.policies, party)
    unknown = sorted(set(granted) - set(ALL_SCOPES))
    if unknown:
        raise InvalidRequest(f"unknown scope(s) {unknown}; known: {ALL_SCOPES}")
    if jwks is not None:
        try:
            KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as e:
            raise InvalidRequest(f"jwks is not a valid JWK set: {e}") from e
        if any("d" in k for k in jwks.get("keys", [])):
            raise InvalidRequest("jwks must hold public keys only")
    client_id = f"{party}.{secrets.token_hex(6)}"
    secret = None if jwks is not None or external_subject else new_client_secret()
    try:
        await runtime.store.add_client(
            client_id,
            party,
            granted,
            secret_hash=hash_secret(secret) if secret else None,
            jwks=jwks,
            external_subject=external_subject,
        )
    except ValueError as e:
        raise InvalidRequest(str(e)) from e
    out: dict[str, Any] = {"client_id": client_id, "party": party, "scopes": granted}
    out["token_endpoint_auth_method"] = auth_method(
        {"secret_hash": secret, "jwks": jwks, "external_subject": external_subject}
    )
    if secret:
        out["client_secret"] = secret
    if external_subject:
        out["external_subject"] = external_subject
        out["issuer"] = runtime.settings.oidc.issuer
    else:
        out["token_endpoint"] = runtime.settings.token_endpoint
    return out


def auth_method(client: dict[str, Any]) -> str:
    """How a registered client proves who it is."""
    if client.get("external_subject"):
        return "external_oidc"
    if client.get("jwks"):
        return "private_key_jwt"
    return "client_secret_basic"


async def set_client_disabled(
    runtime: Runtime, client_id: str, disabled: bool, actor: str
) -> dict[str, Any] | None:
    """Disable (or enable again) a client; None if there is no such client. An agency whose
    last enabled client is disabled loses its Kafka access too (and gets it back, without a
    new credential, when one is enabled again): services.core.kafka.agency_access."""
    if not await runtime.store.set_client_disabled(client_id, disabled, actor=actor):
        return None
    row = await runtime.store.get_client(client_id)
    if row is not None:
        try:
            await runtime.agency_access.sync(row["party"])
        except Unavailable as e:
            # the client is disabled (or enabled) already; the cluster catches up at the next
            # start-up's reconciliation
            log.error("Kafka access of %s not yet brought in line: %s", row["party"], e)
    return row
