"""RFC 9457 problem details for every error the gateway returns."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.errors import IsaBrokerError, RateLimited
from services.core.metrics import API_REFUSALS

log = logging.getLogger("isa_broker.gateway")

PROBLEM_BASE = "https://isa-broker.example/problems/"
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    API_REFUSALS.labels(code=code).inc()
    body = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: Codes for the errors Starlette and FastAPI raise themselves (unknown route, wrong method,
#: a body their own parser refused).
_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


def render(exc: IsaBrokerError) -> JSONResponse:
    """The problem response for a domain error: the exception handler and the request-limits
    middleware (which answers before any route runs) both send this."""
    if exc.status >= 500:
        log.error("%s: %s", exc.code, exc.detail)
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="isa-broker"'
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(exc.status, exc.code, exc.title, exc.detail, headers or None, **exc.extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(IsaBrokerError)
    async def _domain(_: Request, exc: IsaBrokerError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "pointer": "/" + "/".join(str(p) for p in e["loc"][1:]),
                "in": str(e["loc"][0]) if e["loc"] else "body",
                "code": e["type"],
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        names = ", ".join(f"{e['in']}{e['pointer']}" for e in errors[:5])
        return problem(
            422,
            "validation_failed",
            "The request is invalid",
            f"invalid request: {names}",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        # exc.headers carries e.g. the Allow header of a 405
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", type(exc).__name__)
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
