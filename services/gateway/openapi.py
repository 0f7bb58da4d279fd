"""The gateway's OpenAPI document: the routes as FastAPI describes them, plus the message
schemas, the OAuth 2.0 security scheme with every scope, and the RFC 9457 problem responses
every ``/v1`` operation can give (FastAPI alone would document a 422 shaped like its own
validation error, which this gateway never sends)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from services.core.messages import MESSAGE_TYPES
from services.core.scopes import SCOPE_DESCRIPTIONS

PROBLEM = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details. `code` is the machine-readable reason.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "Names the field, limit or ISA clause"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Validation failures (422): one per field, by JSON pointer",
            "items": {"type": "object"},
        },
        "required_scope": {"type": "string", "description": "insufficient_scope (403)"},
        "retry_after": {"type": "integer", "description": "rate_limited (429), in seconds"},
    },
    "additionalProperties": True,
}

#: answers any authenticated ``/v1`` operation may give, whatever it does
COMMON: dict[str, str] = {
    "400": "Malformed request: a bad header, query or JSON nested too deep",
    "401": "No valid access token (every reason answers alike)",
    "403": "The token lacks the scope, or no agreement permits the share",
    "422": "The request does not match the schema; `errors` names each field",
    "429": "Over the client's rate limit; wait `Retry-After` seconds",
    "431": "A request header is too large",
}
#: and those that send a body
WITH_BODY: dict[str, str] = {
    "413": "The body is larger than the gateway accepts",
    "415": "The body is not application/json",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _required_scopes(routers: Iterable[APIRouter]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) -> the scopes its ``needs_scope`` dependency accepts."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        for dependency in route.dependant.dependencies:
            scopes = getattr(dependency.call, "required_scopes", None)
            if scopes:
                for method in route.methods or ():
                    found[(method, route.path_format)] = tuple(scopes)
    return found


def build(app: FastAPI, routers: Iterable[APIRouter]) -> dict[str, Any]:
    """The document for ``app``, whose ``/v1`` routes come from ``routers`` (included
    without a prefix)."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [(mt.model, "validation") for mt in MESSAGE_TYPES.values()],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "oauth2": {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": SCOPE_DESCRIPTIONS}
            },
        }
    }
    required = _required_scopes(routers)
    for path, ops in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            # alternatives: any one of the scopes will do
            scopes = required.get((method.upper(), path), ())
            op["security"] = [{"oauth2": [s]} for s in scopes] or [{"oauth2": []}]
            responses = op.setdefault("responses", {})
            answers = dict(COMMON)
            if "requestBody" in op:
                answers.update(WITH_BODY)
            if "{" in path:
                answers["404"] = "No such object of the caller's (another agency's ids too)"
            for status, description in answers.items():
                existing = responses.get(status, {})
                responses[status] = _problem_response(existing.get("description", description))
            for status, response in responses.items():
                # a documented error (404, 409 ...) is a problem too
                if status[0] in "45" and PROBLEM not in response.get("content", {}):
                    responses[status] = _problem_response(response.get("description", ""))
    return schema
