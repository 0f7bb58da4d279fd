"""FastAPI dependencies and their ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from services.core.errors import InsufficientScope
from services.core.intake import Wake
from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime

from .limits import RateLimits
from .oauth import Principal, TokenService


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


def get_wake(request: Request) -> Wake | None:
    """Wakes the app's outbox relay after intake (None when the app runs no relay)."""
    relay: OutboxRelay | None = request.app.state.relay
    return relay.notify if relay is not None else None


def get_rate_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


async def get_principal(
    tokens: Annotated[TokenService, Depends(get_tokens)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return await tokens.verify(authorization)


async def get_limited_principal(
    principal: Annotated[Principal, Depends(get_principal)],
    limits: Annotated[RateLimits, Depends(get_rate_limits)],
) -> Principal:
    """The authenticated caller, within its rate limit (else 429 with Retry-After). Async so
    that it runs on the event loop, where the in-memory buckets need no lock."""
    limits.clients.check(principal.client_id, "from this client")
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
#: Passed to the intake use-cases (services.core.intake), which wake the relay once stored.
WakeDep = Annotated[Wake | None, Depends(get_wake)]
RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]
#: The authenticated, rate-limited caller: every ``/v1`` route depends on it.
CurrentAgency = Annotated[Principal, Depends(get_limited_principal)]


def needs_scope(*any_of: str) -> Any:
    """A route dependency: the caller's token holds one of ``any_of`` (else 403
    ``insufficient_scope``). Checked before the body is looked at; the OpenAPI document
    lists the scopes as the operation's security requirement (see :mod:`.openapi`)."""

    async def check_scope(agency: CurrentAgency) -> None:
        if not any(scope in agency.scopes for scope in any_of):
            wanted = " or ".join(repr(scope) for scope in any_of)
            raise InsufficientScope(
                f"this operation needs the scope {wanted}", required_scope=any_of[0]
            )

    check_scope.required_scopes = any_of  # type: ignore[attr-defined]
    return Depends(check_scope)
