"""Registering agencies as OAuth clients."""

from __future__ import annotations

import secrets
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .crypto.keys import hash_secret, new_client_secret
from .errors import InvalidRequest
from .runtime import ALL_SCOPES, Runtime


async def create_client(
    runtime: Runtime,
    party: str,
    *,
    scopes: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register a client for ``party``. With ``jwks`` the client authenticates by
    private_key_jwt and gets no secret; otherwise a client secret is generated and returned
    once (only its hash is stored)."""
    if party not in runtime.engine.policies.parties:
        raise InvalidRequest(f"party {party!r} is not in the register of parties")
    granted = scopes if scopes is not None else runtime.default_scopes(party)
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
    secret = None if jwks is not None else new_client_secret()
    await runtime.store.add_client(
        client_id, party, granted, secret_hash=hash_secret(secret) if secret else None, jwks=jwks
    )
    out: dict[str, Any] = {"client_id": client_id, "party": party, "scopes": granted}
    if secret:
        out["client_secret"] = secret
        out["token_endpoint_auth_method"] = "client_secret_basic"  # noqa: S105
    else:
        out["token_endpoint_auth_method"] = "private_key_jwt"  # noqa: S105
    out["token_endpoint"] = runtime.settings.token_endpoint
    return out
