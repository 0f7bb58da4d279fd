"""FastAPI dependencies and their ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.core.errors import InsufficientScope
from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime

from .oauth import Principal, TokenService


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


def get_relay(request: Request) -> OutboxRelay | None:
    relay: OutboxRelay | None = request.app.state.relay
    return relay


def get_principal(
    tokens: Annotated[TokenService, Depends(get_tokens)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return tokens.verify(authorization)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]
RelayDep = Annotated[OutboxRelay | None, Depends(get_relay)]
CurrentAgency = Annotated[Principal, Depends(get_principal)]


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise InsufficientScope(f"this operation needs the scope {scope!r}", required_scope=scope)
